"""Functional losses: hand cases, finite differences for every loss and reduction, torch oracle
(value and autograd gradient), extreme logits, layouts, errors."""
import warnings

import numpy as np
import pytest

import dlcore.functional as F
from helpers import assert_close, numeric_grad, requires_torch, torch

REDUCTIONS = ["mean", "sum", "none"]
LOSSES = ["mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
          "nll_loss", "multi_margin_loss"]


def _inputs(loss, rng, dtype, N=5, C=4):
    """(input, target) typical of each loss."""
    if loss in ("mse_loss", "l1_loss"):
        return rng.standard_normal((N, 3)).astype(dtype), rng.standard_normal((N, 3)).astype(dtype)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, (N, 3)).astype(dtype), rng.uniform(0, 1, (N, 3)).astype(dtype)
    if loss == "binary_cross_entropy_with_logits":
        return (rng.standard_normal((N, 3)) * 3).astype(dtype), rng.integers(0, 2, (N, 3)).astype(dtype)
    x = (rng.standard_normal((N, C)) * 2).astype(dtype)
    if loss == "nll_loss":
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x, rng.integers(0, C, N)


def _call(loss, x, t, reduction, **kw):
    return getattr(F, loss + "_forward")(x, t, reduction=reduction, **kw)


def _upstream(loss_value, rng, dtype):
    return 0.7 if np.ndim(loss_value) == 0 else rng.standard_normal(np.shape(loss_value)).astype(dtype)


# extra torch arguments worth covering, per loss
EXTRAS = {
    "binary_cross_entropy": [{"weight": "elementwise"}],
    "binary_cross_entropy_with_logits": [{"weight": "elementwise"}, {"pos_weight": "per_class"}],
    "cross_entropy": [{"weight": "per_class"}, {"ignore_index": 2}, {"label_smoothing": 0.2},
                      {"weight": "per_class", "label_smoothing": 0.3, "ignore_index": 1}],
    "nll_loss": [{"weight": "per_class"}, {"ignore_index": 0}],
    "multi_margin_loss": [{"p": 2}, {"margin": 0.5, "weight": "per_class"}, {"p": 2, "margin": 2.0}],
}
CASES = [(loss, {}) for loss in LOSSES] + [(loss, kw) for loss, kws in EXTRAS.items() for kw in kws]
CASE_IDS = [f"{loss}-{'-'.join(kw) or 'plain'}" for loss, kw in CASES]


def _materialize(kw, x, rng, dtype):
    out = {}
    for k, v in kw.items():
        if v == "elementwise":
            out[k] = rng.uniform(0.5, 2.0, x.shape[-1]).astype(dtype)  # broadcast over rows
        elif v == "per_class":
            out[k] = rng.uniform(0.5, 2.0, x.shape[1]).astype(dtype)
        else:
            out[k] = v
    return out


# ---- hand-computed ---------------------------------------------------------------------------

def test_hand_computed(backend, dtype):
    x, y = np.array([1.0, 2.0], dtype), np.zeros(2, dtype)
    assert F.mse_loss(x, y) == pytest.approx(2.5)
    assert F.mse_loss(x, y, reduction="sum") == pytest.approx(5.0)
    assert_close(F.mse_loss(x, y, reduction="none"), [1, 4], dtype)
    assert F.l1_loss(x, y) == pytest.approx(1.5)
    _, ctx = F.mse_loss_forward(x, y)
    assert_close(F.mse_loss_backward(1.0, ctx), [1.0, 2.0], dtype)  # 2 (x - y) / 2
    _, ctx = F.l1_loss_forward(np.array([1.0, -2.0, 0.0], dtype), np.zeros(3, dtype), reduction="sum")
    assert_close(F.l1_loss_backward(1.0, ctx), [1, -1, 0], dtype)
    half = np.full(2, 0.5, dtype)
    assert F.binary_cross_entropy(half, np.array([0.0, 1.0], dtype)) == pytest.approx(np.log(2), rel=1e-6)
    assert F.binary_cross_entropy_with_logits(np.zeros(2, dtype), np.array([0.0, 1.0], dtype)) == pytest.approx(
        np.log(2), rel=1e-6)
    # uniform logits: cross-entropy log C, gradient (1/C - onehot)/N
    logits, target = np.zeros((2, 4), dtype), np.array([1, 3])
    loss, ctx = F.cross_entropy_forward(logits, target)
    assert loss == pytest.approx(np.log(4), rel=1e-6)
    assert_close(F.cross_entropy_backward(1.0, ctx), [[0.125, -0.375, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]],
                 dtype)
    logp = np.log(np.array([[0.5, 0.25, 0.25]], dtype))
    assert F.nll_loss(logp, np.array([1])) == pytest.approx(np.log(4), rel=1e-6)
    # hinge: scores (1, 3, 2), target 1: max(0, 1-3+1) + max(0, 1-3+2) = 0 + 0 -> 0;
    # target 0: max(0, 1-1+3) + max(0, 1-1+2) = 5, / C = 5/3; p=2: (9 + 4)/3
    s = np.array([[1.0, 3.0, 2.0]], dtype)
    assert F.multi_margin_loss(s, np.array([1])) == 0.0
    assert F.multi_margin_loss(s, np.array([0])) == pytest.approx(5 / 3, rel=1e-6)
    assert F.multi_margin_loss(s, np.array([0]), p=2) == pytest.approx(13 / 3, rel=1e-6)
    _, ctx = F.multi_margin_loss_forward(s, np.array([0]))
    assert_close(F.multi_margin_loss_backward(1.0, ctx), [[-2 / 3, 1 / 3, 1 / 3]], dtype)


def test_functional_equals_forward(backend, rng):
    for loss in LOSSES:
        x, t = _inputs(loss, rng, np.float64)
        for reduction in REDUCTIONS:
            direct = getattr(F, loss)(x, t, reduction=reduction)
            paired = _call(loss, x, t, reduction)[0]
            assert type(direct) is type(paired)
            np.testing.assert_array_equal(direct, paired)
            if reduction != "none":
                assert isinstance(direct, float)
            else:
                assert isinstance(direct, np.ndarray) and direct.dtype == np.float64


# ---- finite differences (float64) ---------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss,kw", CASES, ids=CASE_IDS)
def test_finite_differences(loss, kw, reduction, backend, rng):
    x, t = _inputs(loss, rng, np.float64)
    if loss == "multi_margin_loss":  # keep every hinge away from its kink
        x = np.round(x * 4) / 4 + 0.1 * rng.uniform(-0.4, 0.4, x.shape)
    kw = _materialize(kw, x, rng, np.float64)
    value, ctx = _call(loss, x, t, reduction, **kw)
    g = _upstream(value, rng, np.float64)
    analytic = getattr(F, loss + "_backward")(g, ctx)
    assert analytic.shape == x.shape and analytic.dtype == np.float64

    def scalar(v):
        out = _call(loss, v, t, reduction, **kw)[0]
        return float(np.sum(np.asarray(out) * g))

    np.testing.assert_allclose(analytic, numeric_grad(scalar, x.copy()), rtol=1e-6, atol=1e-8)


# ---- torch oracle ---------------------------------------------------------------------------------

def _torch_loss(loss, tx, t, reduction, kw):
    tf = torch.nn.functional
    tkw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    tt = torch.from_numpy(np.asarray(t))
    return getattr(tf, loss)(tx, tt, reduction=reduction, **tkw)


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss,kw", CASES, ids=CASE_IDS)
def test_torch_oracle(loss, kw, reduction, backend, dtype, rng):
    x, t = _inputs(loss, rng, dtype, N=37, C=11)
    kw = _materialize(kw, x, rng, dtype)
    value, ctx = _call(loss, x, t, reduction, **kw)
    g = _upstream(value, rng, dtype)
    grad = getattr(F, loss + "_backward")(g, ctx)
    assert grad.dtype == dtype
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tl = _torch_loss(loss, tx, t, reduction, kw)
    tl.backward(torch.from_numpy(np.asarray(g, dtype=dtype)))
    assert_close(value, tl.detach().numpy(), dtype, scale=5, err_msg=f"{loss} {reduction} value")
    assert_close(grad, tx.grad.numpy(), dtype, scale=5, err_msg=f"{loss} {reduction} grad")


@requires_torch
def test_torch_oracle_bce_clamp_at_zero_and_one(backend, dtype):
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3], dtype)
    for reduction in REDUCTIONS:
        value, ctx = F.binary_cross_entropy_forward(x, t, reduction=reduction)
        grad = F.binary_cross_entropy_backward(1.0 if reduction != "none" else np.ones(5, dtype), ctx)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tl = torch.nn.functional.binary_cross_entropy(tx, torch.from_numpy(t), reduction=reduction)
        tl.backward(torch.ones_like(tl))
        assert_close(value, tl.detach().numpy(), dtype)
        assert_close(grad, tx.grad.numpy(), dtype, scale=10)
    assert F.binary_cross_entropy(np.array([0.0], dtype), np.array([1.0], dtype)) == 100.0


# ---- extreme logits --------------------------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy_with_logits", "multi_margin_loss"])
def test_extreme_logits_finite(loss, backend, dtype):
    if loss == "binary_cross_entropy_with_logits":
        x = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 50.0]], dtype)
        t = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.5]], dtype)
    else:
        x = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, 1e30], [3.0, 1e30, -1e30]], dtype)
        t = np.array([0, 1, 2])
    for reduction in REDUCTIONS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                value, ctx = _call(loss, x, t, reduction)
                grad = getattr(F, loss + "_backward")(1.0 if reduction != "none" else np.ones(np.shape(value)), ctx)
        assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tl = _torch_loss(loss, tx, t, reduction, {})
        tl.backward(torch.ones_like(tl))
        assert_close(value, tl.detach().numpy(), dtype)
        assert_close(grad, tx.grad.numpy(), dtype)


# ---- layouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_odd_layouts_equal_contiguous(loss, backend, dtype, rng):
    x, t = _inputs(loss, rng, dtype, N=6, C=5)
    ref_value, ref_ctx = _call(loss, x, t, "none")
    g = rng.standard_normal(ref_value.shape).astype(dtype)
    ref_grad = getattr(F, loss + "_backward")(g, ref_ctx)
    xf, tf_ = np.asfortranarray(x), (np.asfortranarray(t) if t.ndim == 2 else t[::-1].copy()[::-1])
    ro_x, ro_t = x.copy(), t.copy()
    ro_x.flags.writeable = False
    ro_t.flags.writeable = False
    for xv, tv in [(xf, tf_), (ro_x, ro_t), (np.repeat(x, 2, axis=0)[::2], t)]:
        xv_before = xv.copy()
        value, ctx = _call(loss, xv, tv, "none")
        assert np.array_equal(value, ref_value)
        assert np.array_equal(getattr(F, loss + "_backward")(g, ctx), ref_grad)
        assert np.array_equal(xv, xv_before)


# ---- errors -------------------------------------------------------------------------------------

def test_errors_regression_and_binary(backend):
    x = np.full((2, 3), 0.5)
    for loss in ("mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"):
        with pytest.raises(ValueError, match=r"target must have the shape of input \(2, 3\), got \(3, 2\)"):
            getattr(F, loss)(x, np.zeros((3, 2)))
        with pytest.raises(TypeError, match="input must have a floating dtype"):
            getattr(F, loss)(np.ones((2, 3), dtype=int), np.zeros((2, 3)))
        with pytest.raises(ValueError, match="reduction must be one of"):
            getattr(F, loss)(x, np.zeros((2, 3)), reduction="avg")
        with pytest.raises(TypeError, match="target must hold real numbers"):
            getattr(F, loss)(x, np.zeros((2, 3), dtype=complex))
        value, ctx = getattr(F, loss + "_forward")(x, np.zeros((2, 3)), reduction="none")
        with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(2, 3\)"):
            getattr(F, loss + "_backward")(np.ones(3), ctx)
        _, ctx = getattr(F, loss + "_forward")(x, np.zeros((2, 3)))
        with pytest.raises(TypeError, match="grad_output must be a real number"):
            getattr(F, loss + "_backward")("1", ctx)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\], got values in \[-0.5, 1.5\]"):
        F.binary_cross_entropy(np.array([-0.5, 1.5]), np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        F.binary_cross_entropy(np.array([np.nan, 0.5]), np.zeros(2))
    with pytest.raises(ValueError, match=r"weight must broadcast to input's shape \(2, 3\), got shape \(2,\)"):
        F.binary_cross_entropy(x, np.zeros((2, 3)), weight=np.ones(2))
    with pytest.raises(ValueError, match="pos_weight must broadcast"):
        F.binary_cross_entropy_with_logits(x, np.zeros((2, 3)), pos_weight=np.ones(4))
    with pytest.raises(TypeError, match="ctx must be the context returned by mse_loss_forward"):
        F.mse_loss_backward(1.0, F.l1_loss_forward(x, x)[1])


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss", "multi_margin_loss"])
def test_errors_classification(loss, backend):
    f = getattr(F, loss)
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"target must hold class indices in \[0, 4\) .* got 4"):
        f(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"in \[0, 4\) .* got -1"):
        f(x, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="target must hold integer class indices, got dtype float64"):
        f(x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"target must have shape \(N,\) = \(3,\) .* got \(2,\)"):
        f(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"input must be 2-D \(N, C\) scores, got shape \(4,\)"):
        f(np.zeros(4), np.array([1]))
    with pytest.raises(TypeError, match="input must have a floating dtype"):
        f(np.zeros((3, 4), dtype=np.int32), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        f(x, np.array([0, 1, 2]), reduction="mean ")
    with pytest.raises(ValueError, match=r"weight must have shape \(C,\) = \(4,\)"):
        f(x, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match="at least one class"):
        f(np.zeros((2, 0)), np.array([0, 0]))
    _, ctx = getattr(F, loss + "_forward")(x, np.array([0, 1, 2]), reduction="none")
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(3,\)"):
        getattr(F, loss + "_backward")(np.ones((3, 1)), ctx)
    if loss == "multi_margin_loss":
        with pytest.raises(ValueError, match="p must be 1 or 2, got 3"):
            f(x, np.array([0, 1, 2]), p=3)
    if loss == "cross_entropy":
        with pytest.raises(ValueError, match=r"label_smoothing must be <= 1.0"):
            f(x, np.array([0, 1, 2]), label_smoothing=1.5)


def test_empty_batch_is_nan_mean_zero_sum(backend):
    x, t = np.zeros((0, 3)), np.zeros(0, dtype=int)
    assert np.isnan(F.cross_entropy(x, t)) and F.cross_entropy(x, t, reduction="sum") == 0.0
    assert F.cross_entropy(x, t, reduction="none").shape == (0,)
    loss, ctx = F.cross_entropy_forward(x, t, reduction="sum")
    assert F.cross_entropy_backward(1.0, ctx).shape == (0, 3)
    assert np.isnan(F.mse_loss(np.zeros(0), np.zeros(0)))
