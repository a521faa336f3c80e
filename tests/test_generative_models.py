"""VAE (reparameterization and KL gradients, ELBO), DCGAN (shapes, one alternating step) and
the digits FID (Fréchet distance against closed forms and between its two sqrt routes)."""
import numpy as np
import pytest

import dlcore
from dlcore import gradcheck, nn, optim
from dlcore.metrics import frechet_distance
from dlcore.metrics_fid import pixel_gaussian_samples, trace_sqrt_product
from dlcore.models import VAE, DCGANDiscriminator, DCGANGenerator, GaussianKL, Reparameterize, gan_train_step

from helpers import assert_close, requires_torch, torch


# ------------------------------------------------------------------------------------ VAE
def test_reparameterization_gradcheck(backend, rng):
    assert gradcheck(Reparameterize(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))


def test_kl_gradcheck_and_closed_form(backend, rng):
    mu, logvar = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert gradcheck(GaussianKL(), mu, logvar)
    kl = GaussianKL()(mu, logvar)
    # KL(N(m, s²) || N(0, 1)) = log(1/s) + (s² + m²)/2 - 1/2, per dimension
    s = np.exp(logvar / 2)
    np.testing.assert_allclose(kl, np.sum(np.log(1 / s) + (s ** 2 + mu ** 2) / 2 - 0.5, axis=1), rtol=1e-12)
    assert GaussianKL()(np.zeros((2, 3)), np.zeros((2, 3))).tolist() == [0.0, 0.0]


def test_reparameterization_draws_from_q(rng):
    mu, logvar = np.full((200_000, 1), 1.5), np.full((200_000, 1), np.log(0.25))
    z = Reparameterize()(mu, logvar)
    assert z.mean() == pytest.approx(1.5, abs=0.01) and z.std() == pytest.approx(0.5, abs=0.01)


@requires_torch
def test_reparameterize_and_kl_match_torch(backend, dtype, rng):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    mu, logvar = rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)
    g = rng.standard_normal((4, 3)).astype(dtype)
    dlcore.manual_seed(11)
    layer = Reparameterize()
    z = layer(mu, logvar)
    gmu, glogvar = layer.backward(g)
    dlcore.manual_seed(11)
    eps = dlcore._random.generator().standard_normal((4, 3)).astype(dtype)   # the ε the forward drew
    tm, tl = torch.tensor(mu, requires_grad=True), torch.tensor(logvar, requires_grad=True)
    tz = tm + torch.exp(0.5 * tl) * torch.tensor(eps, dtype=tdt)
    tz.backward(torch.tensor(g))
    assert z.dtype == gmu.dtype == glogvar.dtype == dtype
    assert_close(z, tz.detach().numpy(), dtype)
    assert_close(gmu, tm.grad.numpy(), dtype)
    assert_close(glogvar, tl.grad.numpy(), dtype)

    kl_layer, gk = GaussianKL(), rng.standard_normal(4).astype(dtype)
    kl = kl_layer(mu, logvar)
    gmu, glogvar = kl_layer.backward(gk)
    tm, tl = torch.tensor(mu, requires_grad=True), torch.tensor(logvar, requires_grad=True)
    # torch's own KL between the two distributions, not the closed form the layer uses
    q = torch.distributions.Normal(tm, torch.exp(0.5 * tl))
    p = torch.distributions.Normal(torch.zeros_like(tm), torch.ones_like(tm))
    tkl = torch.distributions.kl_divergence(q, p).sum(1)
    tkl.backward(torch.tensor(gk))
    assert kl.dtype == gmu.dtype == glogvar.dtype == dtype
    assert_close(kl, tkl.detach().numpy(), dtype, scale=10)
    assert_close(gmu, tm.grad.numpy(), dtype, scale=10)
    assert_close(glogvar, tl.grad.numpy(), dtype, scale=10)


def test_vae_whole_chain_gradcheck(backend, rng):
    vae = VAE((1, 3, 3), hidden=5, latent_dim=2)
    assert gradcheck(vae, rng.random((3, 1, 3, 3)))


@requires_torch
def test_vae_loss_and_gradients_match_torch(rng):
    dlcore.manual_seed(3)
    vae = VAE((1, 4, 4), hidden=6, latent_dim=3, dtype=np.float64)
    x = rng.random((5, 1, 4, 4))
    dlcore.manual_seed(7)
    loss = vae(x)
    vae.zero_grad()
    vae.backward(np.full(5, 0.2))
    dlcore.manual_seed(7)
    eps = dlcore._random.generator().standard_normal((5, 3))    # the ε the forward drew
    P = {k: torch.tensor(v, requires_grad=True) for k, v in vae.state_dict().items()}
    xt = torch.tensor(x.reshape(5, -1))
    h = torch.relu(xt @ P["encoder.1.weight"].T + P["encoder.1.bias"])
    mu = h @ P["fc_mu.weight"].T + P["fc_mu.bias"]
    logvar = h @ P["fc_logvar.weight"].T + P["fc_logvar.bias"]
    z = mu + torch.exp(0.5 * logvar) * torch.tensor(eps)
    d = torch.relu(z @ P["decoder.0.weight"].T + P["decoder.0.bias"]) @ P["decoder.2.weight"].T + P["decoder.2.bias"]
    rec = torch.nn.functional.binary_cross_entropy_with_logits(d, xt, reduction="none").sum(1)
    kl = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1)
    np.testing.assert_allclose(loss, (rec + kl).detach().numpy(), rtol=1e-10)
    (rec + kl).mean().backward()
    for name, p in vae.named_parameters():
        np.testing.assert_allclose(p.grad, P[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_vae_shapes_sample_reconstruct_and_errors():
    vae = VAE((1, 8, 8), hidden=16, latent_dim=4)
    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    assert vae(x).shape == (3,) and vae.sample(5).shape == (5, 1, 8, 8)
    r = vae.reconstruct(x)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
    assert set(vae.last_terms) == {"reconstruction", "kl"}
    with pytest.raises(ValueError, match="shape"):
        vae(np.zeros((2, 1, 7, 7), np.float32))
    with pytest.raises(ValueError, match="image_shape"):
        VAE((8, 8))


def test_vae_smoke_train_improves_held_out_elbo(backend):
    X, _ = dlcore.data.load_digits(size=8)
    X_tr, X_te = X[:1200], X[1200:]
    dlcore.manual_seed(0)
    vae = VAE((1, 8, 8), hidden=64, latent_dim=4)
    opt = optim.Adam(vae.parameters(), lr=3e-3)

    def held_out():
        dlcore.manual_seed(1)
        return float(np.mean(vae.elbo(X_te)))

    before = held_out()
    for epoch in range(3):
        for xb in dlcore.data.DataLoader(X_tr, batch_size=64, shuffle=True, seed=epoch):
            opt.zero_grad()
            vae(xb)
            vae.backward(np.full(len(xb), 1 / len(xb), np.float32))
            opt.step()
    after = held_out()
    assert after > before + 5       # nats per 8x8 image


# ---------------------------------------------------------------------------------- DCGAN
def test_dcgan_shapes_and_one_step(backend):
    dlcore.manual_seed(0)
    G, D = DCGANGenerator(latent_dim=8, channels=4), DCGANDiscriminator(channels=4)
    z = np.random.default_rng(0).standard_normal((3, 8, 1, 1)).astype(np.float32)
    img = G(z)
    assert img.shape == (3, 1, 28, 28) and np.all(np.abs(img) <= 1)
    assert D(img).shape == (3, 1)
    g_opt = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = np.random.default_rng(1).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    before_g = [p.data.copy() for p in G.parameters()]
    before_d = [p.data.copy() for p in D.parameters()]
    d_loss, g_loss, d_real, d_fake = gan_train_step(G, D, g_opt, d_opt, real, 8, rng=np.random.default_rng(2))
    assert np.isfinite(d_loss) and np.isfinite(g_loss) and 0 < d_real < 1 and 0 < d_fake < 1
    assert d_loss == pytest.approx(2 * np.log(2), abs=0.2)   # D starts near chance
    assert all(not np.array_equal(a, p.data) for a, p in zip(before_g, G.parameters()))
    assert all(not np.array_equal(a, p.data) for a, p in zip(before_d, D.parameters()))


@requires_torch
def test_gan_generator_gradient_matches_torch(rng):
    # The G step's gradient: BCE(D(G(z)), 1) backpropagated through D into G.
    dlcore.manual_seed(0)
    G, D = DCGANGenerator(latent_dim=4, channels=2).double(), DCGANDiscriminator(channels=2).double()
    tG, tD = _torch_dcgan(G, D)
    z = rng.standard_normal((5, 4, 1, 1))
    crit = nn.BCEWithLogitsLoss()
    G.zero_grad()
    loss = crit(D(G(z)), np.ones((5, 1)))
    G.backward(D.backward(crit.backward()))
    tloss = torch.nn.functional.binary_cross_entropy_with_logits(tD(tG(torch.from_numpy(z))), torch.ones(5, 1,
                                                                 dtype=torch.float64))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-10)
    for (name, p), tp in zip(G.named_parameters(), tG.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)


@requires_torch
def test_gan_train_step_matches_torch(backend, rng):
    # Two whole rounds (D step, then G step through the updated D) against the same algorithm
    # in torch. Plain SGD, so each parameter's change is -lr x its gradient (Adam's first step
    # is about lr x sign(grad) and would hide a wrong gradient's size); BatchNorm's running
    # statistics are compared too.
    dlcore.manual_seed(0)
    G, D = DCGANGenerator(latent_dim=4, channels=2).double(), DCGANDiscriminator(channels=2).double()
    tG, tD = _torch_dcgan(G, D)
    g_opt, d_opt = optim.SGD(G.parameters(), lr=0.05), optim.SGD(D.parameters(), lr=0.05)
    tg_opt, td_opt = torch.optim.SGD(tG.parameters(), lr=0.05), torch.optim.SGD(tD.parameters(), lr=0.05)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for round_ in range(2):
        real = rng.uniform(-1, 1, (3, 1, 28, 28))
        got = gan_train_step(G, D, g_opt, d_opt, real, 4, rng=np.random.default_rng(round_))
        z = torch.from_numpy(np.random.default_rng(round_).standard_normal((3, 4, 1, 1)))
        ones, zeros = torch.ones(3, 1, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
        fake = tG(z)
        td_opt.zero_grad()
        d_loss = bce(tD(torch.from_numpy(real)), ones) + bce(tD(fake.detach()), zeros)
        d_loss.backward()
        td_opt.step()
        tg_opt.zero_grad()
        g_loss = bce(tD(fake), ones)
        g_loss.backward()
        tg_opt.step()
        assert got[0] == pytest.approx(d_loss.item(), rel=1e-10) and got[1] == pytest.approx(g_loss.item(), rel=1e-10)
        for model, tmodel in ((G, tG), (D, tD)):
            theirs = tmodel.state_dict()
            for name, value in model.state_dict().items():
                np.testing.assert_allclose(value, theirs[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def _torch_dcgan(G, D):
    """torch copies of a (latent_dim=4, channels=2) DCGAN pair, with the same weights."""
    tG = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(4, 4, 7, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(4, 2, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(2, 1, 4, 2, 1), torch.nn.Tanh()).double()
    tD = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 4, 2, 1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(2, 4, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(4, 1, 7), torch.nn.Flatten()).double()
    tG.load_state_dict({k: torch.from_numpy(v) for k, v in G.state_dict().items()})
    tD.load_state_dict({k: torch.from_numpy(v) for k, v in D.state_dict().items()})
    return tG, tD


# ------------------------------------------------------------------------------------ FID
def test_frechet_distance_closed_forms(rng):
    d = 6
    A = rng.standard_normal((d, d))
    S = A @ A.T + np.eye(d)
    mu = rng.standard_normal(d)
    assert frechet_distance(mu, S, mu, S) == pytest.approx(0, abs=1e-8)
    # isotropic covariances commute: d² = |Δμ|² + d (s1 - s2)²
    assert frechet_distance(mu, 4 * np.eye(d), mu + 1, 9 * np.eye(d)) == pytest.approx(d + d * 1.0)
    # diagonal covariances: Σ (√a - √b)²
    a, b = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
    assert frechet_distance(mu, np.diag(a), mu, np.diag(b)) == pytest.approx(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def test_trace_sqrt_routes_agree(rng):
    A, B = rng.standard_normal((8, 20)), rng.standard_normal((8, 20))
    S1, S2 = A @ A.T / 20, B @ B.T / 20
    eig = trace_sqrt_product(S1, S2, "eigh")
    pytest.importorskip("scipy")
    assert eig == pytest.approx(trace_sqrt_product(S1, S2, "sqrtm"), rel=1e-8)
    # singular covariances (dead features): both finite, still equal
    S1[0, :] = S1[:, 0] = 0
    assert trace_sqrt_product(S1, S2, "eigh") == pytest.approx(trace_sqrt_product(S1, S2, "auto"), rel=1e-6)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma1"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


def test_pixel_gaussian_baseline_moments(rng):
    X = rng.uniform(0.2, 0.8, (500, 1, 2, 2)).astype(np.float32)
    s = pixel_gaussian_samples(X, 20000, np.random.default_rng(0))
    assert s.shape == (20000, 1, 2, 2) and s.min() >= 0 and s.max() <= 1
    np.testing.assert_allclose(s.mean(0), X.mean(0), atol=0.01)


def test_digits_fid_end_to_end(tmp_path):
    from dlcore.metrics_fid import DigitsFID

    cache = str(tmp_path / "judge.npz")
    judge = DigitsFID(size=8, epochs=1, cache=cache)
    assert judge.accuracy > 0.5
    again = DigitsFID(size=8, epochs=1, cache=cache)          # loaded, not retrained: same numbers
    np.testing.assert_array_equal(again.mu_real, judge.mu_real)
    real = judge.evaluate(judge.X_train[:450])
    assert real["ratio"] < 0.2 and real["classes_covered"] == 10
    line = judge.summary(pixel_gaussian_samples(judge.X_train, 300))
    import re
    assert re.fullmatch(r"digits FID [\d.]+ \(per-pixel Gaussian baseline [\d.]+, ratio [\d.]+\); "
                        r"classes covered \d+/10, min share [\d.]+%, mean confidence [\d.]+", line), line
