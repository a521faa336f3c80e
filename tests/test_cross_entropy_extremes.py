"""Softmax cross-entropy with tied extreme logits, against PyTorch (issue 9, item 4).

The log-sum-exp m + log(s) of a row whose maximum m is huge rounds log(s) away
(1e30 + log 2 == 1e30), so probabilities built from it were exp(0) = 1 for each tied
maximum (a gradient row summing to 2) and the label-smoothing loss lost its log(s) terms.
The kernels now keep m and log(s) apart; both backends are checked.
"""
import numpy as np
import pytest

import dlcore.functional as F
from dlcore import backends

torch = pytest.importorskip("torch")

CASES = [  # (logits, target, dtype)
    ([[1e30, 1e30, -1e30]], [0], np.float64),
    ([[1e30, 1e30, -1e30], [-1e30, 3e29, 3e29]], [1, 0], np.float64),
    ([[1e17, 1e17, 1e17, -5.0]], [3], np.float64),
    ([[1e7, 1e7, -1e7]], [0], np.float32),
    ([[3e7, 3e7, 3e7, 2.9999998e7], [-2e7, 1e7, 1e7, 0.0]], [3, 0], np.float32),
    ([[1e30, 1e30, -1e30]], [2], np.float32),
    ([[1.5e8, 1.5e8 + 16, 1.5e8 - 16]], [1], np.float32),
]


def _torch(x, t, **kwargs):
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(xt, torch.tensor(t), **kwargs)
    loss.backward()
    return loss.item(), xt.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("logits, target, dtype", CASES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_tied_extreme_logits_match_torch(backend, logits, target, dtype, label_smoothing, weighted):
    x = np.array(logits, dtype)
    t = np.array(target)
    C = x.shape[1]
    kwargs = {"label_smoothing": label_smoothing}
    if weighted:
        kwargs["weight"] = np.linspace(0.5, 2.0, C).astype(dtype)
    loss, ctx = F.cross_entropy_forward(x, t, **kwargs)
    grad = F.cross_entropy_backward(1.0, ctx)
    tkw = dict(kwargs)
    if weighted:
        tkw["weight"] = torch.from_numpy(kwargs["weight"])
    want_loss, want_grad = _torch(x, t, **tkw)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    # (float32: a loss of 1e-7 is rounding noise next to 1 in either library)
    assert np.isclose(loss, want_loss, rtol=rtol, atol=1e-6 if dtype == np.float32 else 0), (loss, want_loss)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-14)
    # the probabilities of a row sum to 1, so each gradient row (without weights) sums to 0
    if not weighted:
        np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-6)


def test_issue_reproducer_gradient(backend):
    loss, ctx = F.cross_entropy_forward(np.array([[1e30, 1e30, -1e30]]), np.array([0]))
    assert loss == pytest.approx(np.log(2))
    np.testing.assert_allclose(F.cross_entropy_backward(1.0, ctx), [[-0.5, 0.5, 0.0]], atol=1e-15)


@pytest.mark.parametrize("be", backends.available_backends())
def test_kernel_keeps_max_and_log_sum_apart(be):
    x = np.array([[1e30, 1e30, -1e30]])
    loss, m, ls = np.empty(1), np.empty(1), np.empty(1)
    k = backends.backend(be)
    k.softmax_cross_entropy_forward(x, np.array([0]), loss, m, ls, 1)
    assert (m[0], ls[0], loss[0]) == (1e30, pytest.approx(np.log(2)), pytest.approx(np.log(2)))
    grad = np.empty_like(x)
    k.softmax_cross_entropy_backward(np.ones(1), x, np.array([0]), m, ls, grad, 1)
    np.testing.assert_allclose(grad, [[-0.5, 0.5, 0.0]], atol=1e-15)
