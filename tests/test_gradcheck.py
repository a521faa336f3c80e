"""dlcore.gradcheck: passes correct backwards, names the worst entry of wrong ones, restores state."""
import numpy as np
import pytest

import dlcore
from dlcore import nn


class Scale(nn.Module):
    """y = x * w (w broadcast over the batch); ``bug`` breaks one part of backward."""

    def __init__(self, n, bug=None):
        super().__init__()
        self.weight = nn.Parameter(np.linspace(0.5, 1.5, n))
        self.bug = bug

    def forward(self, x):
        x = self._as_input(x)
        out = x * self.weight.data
        self._save_for_backward(out, x)
        return out

    def backward(self, grad_output):
        g, x = self._saved_for_backward(grad_output)
        gw = (g * x).sum(axis=0)
        gx = g * self.weight.data
        if self.bug == "param":
            gw = gw.copy()
            gw[2] += 0.5
        if self.bug == "input":
            gx = gx.copy()
            gx[1, 0] *= 1.01
        self.weight.accumulate_grad(gw)
        return gx


class TwoInputs(nn.Module):
    """y = a * b: checks every floating input; the int input is passed through."""

    def forward(self, a, b, k):
        self._save_for_backward(a * b, (a, b))
        return a * b + k.sum()

    def backward(self, g):
        g, (a, b) = self._saved_for_backward(g)
        return g * b, g * a


class Squared(nn.Loss):
    """A tiny loss for the loss path: sum or mean of (p - t)^2, or per element."""

    def forward(self, pred, target):
        d = pred - target
        object.__setattr__(self, "_saved", (d.shape, d))
        if self.reduction == "none":
            return d**2
        return float((d**2).sum() if self.reduction == "sum" else (d**2).mean())

    def backward(self, grad_output=None):
        d = self.__dict__["_saved"][1]
        if grad_output is None:
            grad_output = 1.0 if self.reduction != "none" else np.ones(d.shape)
        scale = 1.0 / d.size if self.reduction == "mean" else 1.0
        return 2 * d * scale * grad_output


def test_passes_a_correct_backward(rng):
    assert dlcore.gradcheck(Scale(4), rng.standard_normal((3, 4))) is True


def test_names_the_worst_parameter_entry(rng):
    with pytest.raises(AssertionError, match=r"parameter 'weight' at index \(2,\).*analytic.*numeric"):
        dlcore.gradcheck(Scale(4, bug="param"), rng.standard_normal((3, 4)))


def test_names_the_worst_input_entry(rng):
    with pytest.raises(AssertionError, match=r"input 0 at index \(1, 0\)"):
        dlcore.gradcheck(Scale(4, bug="input"), rng.standard_normal((3, 4)) + 3)


def test_tolerances_are_used(rng):
    x = rng.standard_normal((3, 4)) + 3
    # a 1% error on one entry passes with rtol=5e-2, not with the default 1e-3
    assert dlcore.gradcheck(Scale(4, bug="input"), x, rtol=5e-2)
    with pytest.raises(AssertionError):
        dlcore.gradcheck(Scale(4, bug="input"), x)


def test_several_inputs_and_non_floating_ones(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    assert dlcore.gradcheck(TwoInputs(), a, b, np.arange(3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_path(rng, reduction):
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert dlcore.gradcheck(Squared(reduction), pred, target)

    class Wrong(Squared):
        def backward(self, grad_output=None):
            return 1.1 * super().backward(grad_output)

    with pytest.raises(AssertionError, match="input 0"):
        dlcore.gradcheck(Wrong(reduction), pred, target)
    with pytest.raises(ValueError, match="pred, target"):
        dlcore.gradcheck(Squared(), pred)


def test_restores_module_and_random_state(rng):
    layer = nn.Linear(3, 2)  # float32: checked in float64, restored as float32
    weight_data = layer.weight.data
    before = weight_data.copy()
    layer.weight.grad = np.full((2, 3), 7.0, np.float32)
    dlcore.manual_seed(123)
    expected_next = dlcore._random.generator().random()
    dlcore.manual_seed(123)
    assert dlcore.gradcheck(layer, rng.standard_normal((4, 3)))
    assert layer.weight.data is weight_data and layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, before)
    np.testing.assert_array_equal(layer.weight.grad, np.full((2, 3), 7.0))
    assert layer.bias.grad is None
    assert dlcore._random.generator().random() == expected_next


def test_inputs_not_modified(rng):
    x = rng.standard_normal((3, 4))
    copy = x.copy()
    dlcore.gradcheck(Scale(4), x)
    np.testing.assert_array_equal(x, copy)


def test_validation(rng):
    with pytest.raises(TypeError, match="Module"):
        dlcore.gradcheck(lambda x: x, np.ones(3))
    with pytest.raises(ValueError, match="eps"):
        dlcore.gradcheck(Scale(2), np.ones((1, 2)), eps=0)
    with pytest.raises(ValueError, match="at least one input"):
        dlcore.gradcheck(Scale(2))


def test_dropout_checked_with_a_fixed_mask(rng):
    # without reseeding, each forward would draw a new mask and the check would fail
    model = nn.Sequential(nn.Linear(5, 6, dtype=np.float64), nn.Dropout(0.5), nn.Linear(6, 2, dtype=np.float64))
    assert dlcore.gradcheck(model, rng.standard_normal((4, 5)))


def test_catches_a_broken_linear_backward(rng, monkeypatch):
    original = dlcore.functional.linear_backward

    def broken(grad_output, ctx):
        gi, gw, gb = original(grad_output, ctx)
        return gi, gw.T.reshape(gw.shape), gb  # a layout bug

    monkeypatch.setattr(dlcore.functional, "linear_backward", broken)
    with pytest.raises(AssertionError, match="parameter 'weight'"):
        dlcore.gradcheck(nn.Linear(3, 4, dtype=np.float64), rng.standard_normal((5, 3)))
