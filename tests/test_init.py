"""dlcore.nn.init: torch's laws (bounds and moments on large samples), gains, in-place, seeding."""
import math

import numpy as np
import pytest

import dlcore
from dlcore import nn
from dlcore.nn import init
from helpers import requires_torch, torch

SHAPE = (256, 128, 3, 3)  # fan_in = 1152, fan_out = 2304; 294,912 draws
FAN_IN, FAN_OUT = 128 * 9, 256 * 9


def check_uniform(a, bound):
    assert np.abs(a).max() <= bound * (1 + 1e-6)
    assert np.abs(a).max() > 0.99 * bound
    assert abs(a.mean()) < 0.01 * bound
    assert abs(a.var() / (bound**2 / 3) - 1) < 0.02


def check_normal(a, std):
    assert abs(a.mean()) < 0.01 * std
    assert abs(a.std() / std - 1) < 0.01
    # a normal, not a uniform: about 4.6% of draws beyond 2σ
    assert abs((np.abs(a) > 2 * std).mean() - 0.0455) < 0.005


@pytest.mark.parametrize(
    "gain_args,expected",
    [
        (("linear",), 1.0),
        (("conv2d",), 1.0),
        (("sigmoid",), 1.0),
        (("tanh",), 5 / 3),
        (("relu",), math.sqrt(2)),
        (("leaky_relu",), math.sqrt(2 / (1 + 0.01**2))),
        (("leaky_relu", 0.2), math.sqrt(2 / 1.04)),
        (("leaky_relu", math.sqrt(5)), math.sqrt(1 / 3)),
        (("selu",), 0.75),
    ],
)
def test_calculate_gain(gain_args, expected):
    assert init.calculate_gain(*gain_args) == pytest.approx(expected, rel=1e-15)
    if torch is not None:
        assert init.calculate_gain(*gain_args) == pytest.approx(torch.nn.init.calculate_gain(*gain_args), rel=1e-15)


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("softplus")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "x")


def test_xavier_uniform():
    w = np.empty(SHAPE, np.float32)
    assert init.xavier_uniform_(w, gain=2.0) is w
    check_uniform(w, 2.0 * math.sqrt(6 / (FAN_IN + FAN_OUT)))


def test_xavier_normal():
    w = np.empty(SHAPE)
    init.xavier_normal_(w)
    check_normal(w, math.sqrt(2 / (FAN_IN + FAN_OUT)))


@pytest.mark.parametrize("mode,fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT)])
@pytest.mark.parametrize("nonlinearity,a", [("relu", 0), ("leaky_relu", 0.1), ("tanh", 0)])
def test_kaiming(mode, fan, nonlinearity, a):
    gain = init.calculate_gain(nonlinearity, a)
    w = np.empty(SHAPE)
    init.kaiming_uniform_(w, a=a, mode=mode, nonlinearity=nonlinearity)
    check_uniform(w, gain * math.sqrt(3 / fan))
    init.kaiming_normal_(w, a=a, mode=mode, nonlinearity=nonlinearity)
    check_normal(w, gain / math.sqrt(fan))


def test_kaiming_defaults_match_torch_default_linear_bound():
    w = np.empty((300, 400))
    init.kaiming_uniform_(w, a=math.sqrt(5))
    check_uniform(w, 1 / math.sqrt(400))


def test_simple_fills_and_parameters():
    p = nn.Parameter(np.empty((3, 4), np.float32))
    assert init.zeros_(p) is p and np.all(p.data == 0)
    init.ones_(p)
    assert np.all(p.data == 1) and p.dtype == np.float32
    init.constant_(p, 0.25)
    assert np.all(p.data == 0.25)
    w = np.empty((400, 500))
    init.uniform_(w, -2.0, 3.0)
    assert w.min() >= -2 and w.max() < 3 and abs(w.mean() - 0.5) < 0.02
    init.normal_(w, 1.0, 0.5)
    check_normal(w - 1.0, 0.5)
    # a view is filled in place, the rest untouched
    big = np.zeros((4, 6))
    init.ones_(big[:, ::2])
    assert big.sum() == 12 and np.all(big[:, 1::2] == 0)


def test_seeded():
    dlcore.manual_seed(5)
    a = init.xavier_uniform_(np.empty((5, 6)))
    dlcore.manual_seed(5)
    b = init.xavier_uniform_(np.empty((5, 6)))
    c = init.xavier_uniform_(np.empty((5, 6)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(np.empty(5))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(np.empty((3, 3)), mode="fan_avg")
    with pytest.raises(TypeError, match="floating"):
        init.zeros_(np.empty((3, 3), np.int32))
    with pytest.raises(TypeError, match="ndarray or a Parameter"):
        init.ones_([1.0, 2.0])
    ro = np.empty((3, 3))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        init.normal_(ro)
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(np.empty(3), 1.0, 0.0)
    with pytest.raises(ValueError, match="std"):
        init.normal_(np.empty(3), 0.0, -1.0)
    # zero-element tensors are a no-op, as torch
    init.kaiming_uniform_(np.empty((0, 3)))


@requires_torch
def test_fans_agree_with_torch():
    for shape in [(7, 3), (5, 4, 3, 2), (2, 3, 1, 1)]:
        w = np.empty(shape)
        t = torch.empty(shape)
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(t)
        init.xavier_uniform_(w)
        assert np.abs(w).max() <= math.sqrt(6 / (fan_in + fan_out))
        init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
        assert np.abs(w).max() <= math.sqrt(2) * math.sqrt(3 / fan_out)
