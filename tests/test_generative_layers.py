"""Upsample and Concat (the U-Net's extra layers) and the diffusion U-Net: gradcheck on every
backend, the torch oracle for forward and gradients, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dlcore
from dlcore import functional as F
from dlcore import gradcheck, nn
from dlcore.diffusion import ResBlock, UNet, timestep_embedding

from helpers import assert_close, requires_torch, torch


@pytest.mark.parametrize("scale", [1, 2, 3, (2, 1), (1, 3)])
def test_upsample_gradcheck(backend, rng, scale):
    assert gradcheck(nn.Upsample(scale_factor=scale), rng.standard_normal((2, 3, 3, 4)))


def test_concat_gradcheck(backend, rng):
    a, b, c = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 1, 4, 4)), rng.standard_normal((2, 2, 4, 4))
    assert gradcheck(nn.Concat(dim=1), a, b, c)
    assert gradcheck(nn.Concat(dim=-1), a, rng.standard_normal((2, 3, 4, 2)))


@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_upsample_nearest_is_block_repeat(n, c, h, w, sh, sw):
    x = np.random.default_rng(n * 100 + h).standard_normal((n, c, h, w)).astype(np.float32)
    out = F.upsample_nearest2d(x, (sh, sw))
    np.testing.assert_array_equal(out, np.repeat(np.repeat(x, sh, axis=2), sw, axis=3))
    g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    _, ctx = F.upsample_nearest2d_forward(x, (sh, sw))
    gx = F.upsample_nearest2d_backward(g, ctx)
    # <g, up(x)> = <up^T g, x>: the backward is the adjoint of the forward
    assert_close(np.sum(g.astype(np.float64) * out), np.sum(gx.astype(np.float64) * x), np.float32, scale=100)


def _torch_check(layer, torch_fn, inputs, dtype):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    xs = [x.astype(dtype) for x in inputs]
    out = layer(*xs)
    ts = [torch.tensor(x, dtype=tdtype, requires_grad=True) for x in xs]
    out_t = torch_fn(*ts)
    assert_close(out, out_t.detach().numpy(), dtype)
    g = np.random.default_rng(5).standard_normal(out.shape).astype(dtype)
    grads = layer.backward(g)
    grads = grads if isinstance(grads, tuple) else (grads,)
    out_t.backward(torch.from_numpy(g))
    assert len(grads) == len(ts)
    for a, t in zip(grads, ts):
        assert a.dtype == dtype
        assert_close(a, t.grad.numpy(), dtype, scale=10)


@requires_torch
@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
def test_upsample_matches_torch(backend, dtype, rng, scale):
    up = torch.nn.Upsample(scale_factor=scale, mode="nearest")
    _torch_check(nn.Upsample(scale_factor=scale), up, [rng.standard_normal((2, 3, 5, 4))], dtype)


@requires_torch
@pytest.mark.parametrize("dim", [1, 0, -1])
def test_concat_matches_torch(backend, dtype, rng, dim):
    a = rng.standard_normal((2, 3, 4, 5))
    b_shape = list(a.shape)
    b_shape[dim] = 2
    b = rng.standard_normal(b_shape)
    _torch_check(nn.Concat(dim=dim), lambda x, y: torch.cat([x, y], dim=dim), [a, b], dtype)


def test_upsample_and_concat_errors():
    with pytest.raises(ValueError, match="mode"):
        nn.Upsample(2, mode="bilinear")
    with pytest.raises(TypeError, match="scale_factor"):
        nn.Upsample(1.5)
    with pytest.raises(ValueError, match="scale_factor"):
        nn.Upsample(0)
    with pytest.raises(ValueError, match="4-D"):
        nn.Upsample(2)(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="except along dim=1"):
        nn.Concat(1)(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 5, 4)))
    with pytest.raises(TypeError, match="floating"):
        nn.Concat(1)(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int64))
    with pytest.raises(RuntimeError):
        nn.Concat(1).backward(np.zeros((2, 3)))
    layer = nn.Upsample(2)
    layer(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 1, 2, 2), np.float32))
    assert nn.Upsample(2.0).scale_factor == (2, 2)


def test_timestep_embedding():
    e = timestep_embedding(np.array([0, 1, 999]), 8)
    assert e.shape == (3, 8)
    np.testing.assert_allclose(e[0], [0, 0, 0, 0, 1, 1, 1, 1])
    freqs = 10000.0 ** (-np.arange(4) / 4)
    np.testing.assert_allclose(e[2], np.concatenate([np.sin(999 * freqs), np.cos(999 * freqs)]))
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(np.array([1]), 5)


def test_resblock_and_unet_gradcheck(backend, rng):
    block = ResBlock(2, 3, 4)
    assert gradcheck(block, rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 4)))
    assert gradcheck(ResBlock(2, 2, 4), rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 4)))
    dlcore.manual_seed(1)
    model = UNet(1, channels=2, emb_dim=4)
    for p in model.parameters():  # the output conv starts at zero; make every path carry signal
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    assert gradcheck(model, rng.standard_normal((2, 1, 4, 4)), np.array([3, 700]))


def test_unet_shapes_and_errors():
    model = UNet(1, channels=4, emb_dim=8)
    x = np.zeros((3, 1, 8, 8), np.float32)
    out = model(x, np.array([0, 5, 999]))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, 0)  # zero-initialized output conv
    assert model.backward(np.ones_like(out)).shape == x.shape
    with pytest.raises(ValueError, match="even"):
        model(np.zeros((1, 1, 7, 7), np.float32), np.array([1]))
    with pytest.raises(TypeError, match="int array"):
        model(x, np.array([0.5, 1, 2]))
