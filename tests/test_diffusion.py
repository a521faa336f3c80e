"""The diffusion maths, checked without any training: schedules, the closed-form forward
process, the posterior (Ho et al. eq. 6-7, derived independently here), and samplers driven
by an oracle denoiser that knows the true noise."""
import math

import numpy as np
import pytest

import dlcore
from dlcore import optim
from dlcore.diffusion import GaussianDiffusion, UNet, cosine_schedule, linear_schedule


def test_linear_schedule_and_terminal_noise():
    betas = linear_schedule(1000)
    assert betas.shape == (1000,) and betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    d = GaussianDiffusion(betas)
    assert d.alphas_cumprod[-1] < 1e-4          # ᾱ_T ≈ 4e-5: x_T is almost pure noise
    assert d.alphas_cumprod[0] == pytest.approx(1 - 1e-4)
    np.testing.assert_allclose(d.alphas_cumprod, np.exp(np.cumsum(np.log1p(-betas))), rtol=1e-12)


def test_cosine_schedule():
    T, s = 1000, 0.008
    betas = cosine_schedule(T, s)
    ab = np.cumprod(1 - betas)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 500, 900):
        assert ab[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert ab[-1] < 1e-6 and np.all(betas <= 0.999) and np.all(np.diff(ab) < 0)


@pytest.mark.parametrize("schedule", [linear_schedule, cosine_schedule])
def test_q_sample_moments_match_closed_form(schedule):
    d = GaussianDiffusion(schedule(1000))
    rng = np.random.default_rng(0)
    x0 = np.array([[-0.8, 0.0, 0.5, 1.0]])
    n = 200_000
    for t in (0, 100, 500, 999):
        xt = d.q_sample(np.repeat(x0, n, axis=0), np.full(n, t), rng=rng)
        ab = d.alphas_cumprod[t]
        se = math.sqrt((1 - ab) / n)   # standard error of the mean
        np.testing.assert_allclose(xt.mean(axis=0), math.sqrt(ab) * x0[0], atol=5 * se)
        np.testing.assert_allclose(xt.var(axis=0), 1 - ab, rtol=0.02, atol=1e-6)
    mean, var = d.q_mean_variance(x0, 999)
    assert np.all(np.abs(mean) < 0.01) and var.item() == pytest.approx(1, abs=1e-4)  # x_T ~ N(0, I)


def test_q_sample_with_given_noise():
    d = GaussianDiffusion()
    x0, eps = np.ones((2, 3)), np.full((2, 3), 2.0)
    xt = d.q_sample(x0, np.array([0, 999]), eps)
    for i, t in enumerate((0, 999)):
        ab = np.prod(1 - linear_schedule()[:t + 1])
        np.testing.assert_allclose(xt[i], math.sqrt(ab) + math.sqrt(1 - ab) * 2.0)


@pytest.mark.parametrize("schedule", [linear_schedule, cosine_schedule])
def test_posterior_equals_bayes_rule(schedule):
    # q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): a product of two Gaussians in x_{t-1},
    # precision α_t/β_t + 1/(1-ᾱ_{t-1}), mean = var (√α_t x_t/β_t + √ᾱ_{t-1} x_0/(1-ᾱ_{t-1})).
    betas = schedule(1000)
    d = GaussianDiffusion(betas)
    rng = np.random.default_rng(1)
    for t in (1, 2, 50, 400, 999):
        x0, xt = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
        beta, alpha = betas[t], 1 - betas[t]
        ab_prev = np.prod(1 - betas[:t])
        var = 1.0 / (alpha / beta + 1.0 / (1 - ab_prev))
        mean = var * (math.sqrt(alpha) * xt / beta + math.sqrt(ab_prev) * x0 / (1 - ab_prev))
        got_mean, got_var = d.q_posterior(x0, xt, t)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got_var[:, 0], var, rtol=1e-9)
    mean0, var0 = d.q_posterior(x0, xt, 0)   # the last step lands on x_0 exactly
    np.testing.assert_allclose(mean0, x0, atol=1e-12)
    assert np.all(var0 == 0)


class _Oracle:
    """A 'denoiser' that knows x_0: returns the exact ε with x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε."""

    def __init__(self, diffusion, x0):
        self.d, self.x0 = diffusion, x0

    def __call__(self, xt, t):
        ab = self.d.alphas_cumprod[t].reshape(-1, *([1] * (xt.ndim - 1)))
        return (xt - np.sqrt(ab) * self.x0) / np.sqrt(1 - ab)


def test_one_reverse_step_with_true_noise_is_the_posterior_mean():
    d = GaussianDiffusion()
    rng = np.random.default_rng(2)
    x0 = rng.uniform(-1, 1, (4, 1, 3, 3))
    for t in (1, 10, 500, 999):
        eps = rng.standard_normal(x0.shape)
        xt = d.q_sample(x0, t, eps)
        mean, var = d.p_mean_variance(eps, xt, np.full(4, t), clip=None)
        post_mean, post_var = d.q_posterior(x0, xt, t)
        np.testing.assert_allclose(mean, post_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(var, post_var)
        # eq. 11's form of the same mean: (x_t - β_t/√(1-ᾱ_t) ε) / √α_t
        b, ab = d.betas[t], d.alphas_cumprod[t]
        np.testing.assert_allclose(mean, (xt - b / math.sqrt(1 - ab) * eps) / math.sqrt(1 - b), rtol=1e-9, atol=1e-9)
        # p_sample = that mean + √β̃_t z
        z = np.random.default_rng(t).standard_normal(x0.shape)
        step = d.p_sample(_Oracle(d, x0), xt, t, rng=np.random.default_rng(t), clip=None)
        np.testing.assert_allclose(step, post_mean + np.sqrt(post_var) * z, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("steps", [1000, 50, 7, 1])
def test_ddim_with_oracle_recovers_x0(steps):
    d = GaussianDiffusion(cosine_schedule(1000))
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, (3, 1, 4, 4))
    out = d.ddim_sample(_Oracle(d, x0), x0.shape, steps=steps, x_T=rng.standard_normal(x0.shape), clip=None)
    np.testing.assert_allclose(out, x0, atol=1e-7)


@pytest.mark.parametrize("steps", [1, 2, 7, 100])
def test_ddim_starts_from_pure_noise_at_t_minus_1(steps):
    """The first step is t = T-1 (x_T is noise) and the last t = 0, whatever the step count."""
    d = GaussianDiffusion(linear_schedule(100))
    seen = []

    def model(xt, t):
        seen.append(int(t[0]))
        return np.zeros_like(xt)
    d.ddim_sample(model, (1, 1, 2, 2), steps=steps, rng=np.random.default_rng(0), clip=None)
    assert seen[0] == 99 and len(seen) == steps and seen == sorted(seen, reverse=True)
    assert steps == 1 or seen[-1] == 0


@pytest.mark.parametrize("make", [lambda: linear_schedule(10, 1e-4, 1.0), lambda: cosine_schedule(10, max_beta=1.0)])
def test_schedules_refuse_beta_one(make):
    with pytest.raises(ValueError, match="< 1.0"):
        make()


def test_ddpm_with_oracle_recovers_x0_and_ddim_is_deterministic():
    d = GaussianDiffusion(linear_schedule(100, 1e-3, 0.2))
    x0 = np.random.default_rng(4).uniform(-1, 1, (2, 1, 2, 2))
    out, record = d.ddpm_sample(_Oracle(d, x0), x0.shape, rng=np.random.default_rng(0), keep=(100, 50, 0))
    np.testing.assert_allclose(out, x0, atol=1e-7)
    assert sorted(record) == [0, 50, 100]
    model = lambda x, t: np.tanh(x)  # noqa: E731  any fixed function
    xT = np.random.default_rng(5).standard_normal((2, 1, 2, 2)).astype(np.float32)
    a = d.ddim_sample(model, xT.shape, steps=20, x_T=xT, rng=np.random.default_rng(1))
    b = d.ddim_sample(model, xT.shape, steps=20, x_T=xT, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)   # eta = 0: no randomness after x_T
    c = d.ddim_sample(model, xT.shape, steps=20, eta=1.0, x_T=xT, rng=np.random.default_rng(2))
    assert not np.allclose(a, c)


def test_errors():
    d = GaussianDiffusion()
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(np.array([0.1, 1.5]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, T=1000\)"):
        d.q_sample(np.zeros((2, 3)), np.array([0, 1000]))
    with pytest.raises(TypeError, match="integer time steps"):
        d.q_sample(np.zeros((2, 3)), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        d.q_sample(np.zeros((2, 3)), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="steps"):
        d.ddim_sample(lambda x, t: x, (1, 2), steps=1001)
    with pytest.raises(TypeError, match="rng"):
        d.q_sample(np.zeros((2, 3)), 1, rng=42)


def test_unet_smoke_train_lowers_the_loss(backend):
    dlcore.manual_seed(0)
    d = GaussianDiffusion(linear_schedule(100, 1e-3, 0.2))
    model = UNet(1, channels=4, emb_dim=8)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    x0 = np.where(np.random.default_rng(0).random((16, 1, 4, 4)) > 0.5, 1.0, -1.0).astype(np.float32)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        losses.append(d.training_loss(model, x0, rng=rng))
        opt.step()
    assert losses[0] == pytest.approx(1.0, abs=0.3)   # ε̂ = 0 at the start: loss ≈ E[ε²] = 1
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    sample = d.ddim_sample(model, (2, 1, 4, 4), steps=5, rng=np.random.default_rng(0))
    assert sample.shape == (2, 1, 4, 4) and np.all(np.abs(sample) <= 1)
