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


# ---- ResBlock and UNet against torch: forward, the input gradients, every parameter's gradient ----
def _torch_resblock(P, prefix, x, e):
    """ResBlock's docstring formula, written with torch's functional ops."""
    tF = torch.nn.functional
    p = lambda name: P[prefix + name]  # noqa: E731
    h = tF.conv2d(tF.silu(x), p("conv1.weight"), p("conv1.bias"), padding=1)
    h = h + tF.linear(tF.silu(e), p("emb_proj.weight"), p("emb_proj.bias"))[:, :, None, None]
    skip = tF.conv2d(x, p("skip.weight"), p("skip.bias")) if prefix + "skip.weight" in P else x
    return tF.conv2d(tF.silu(h), p("conv2.weight"), p("conv2.bias"), padding=1) + skip


def _torch_unet(P, x, t, emb_dim):
    tF = torch.nn.functional
    emb = torch.tensor(timestep_embedding(t, emb_dim), dtype=x.dtype)
    e = tF.linear(tF.silu(tF.linear(emb, P["time_mlp.0.weight"], P["time_mlp.0.bias"])),
                  P["time_mlp.2.weight"], P["time_mlp.2.bias"])
    h1 = _torch_resblock(P, "down_block.", tF.conv2d(x, P["conv_in.weight"], P["conv_in.bias"], padding=1), e)
    h2 = _torch_resblock(P, "mid_block.", tF.conv2d(h1, P["downsample.weight"], P["downsample.bias"],
                                                    stride=2, padding=1), e)
    h3 = _torch_resblock(P, "up_block.", torch.cat([tF.interpolate(h2, scale_factor=2, mode="nearest"), h1], 1), e)
    return tF.conv2d(tF.silu(h3), P["conv_out.weight"], P["conv_out.bias"], padding=1)


def _compare_with_torch(module, torch_fn, inputs, dtype, scale):
    """Forward, ∂L/∂(each float input) and ∂L/∂(each parameter), L = <g, out> for a random g."""
    xs = [np.asarray(a, dtype) if np.asarray(a).dtype.kind == "f" else a for a in inputs]
    out = module(*xs)
    g = np.random.default_rng(9).standard_normal(out.shape).astype(dtype)
    module.zero_grad()
    grads = module.backward(g)
    grads = grads if isinstance(grads, tuple) else (grads,)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in module.state_dict().items()}
    ts = [torch.tensor(a, requires_grad=True) if a.dtype.kind == "f" else a for a in xs]
    out_t = torch_fn(P, *ts)
    assert_close(out, out_t.detach().numpy(), dtype, scale=scale)
    out_t.backward(torch.from_numpy(g))
    floats = [t for t in ts if isinstance(t, torch.Tensor)]
    assert len(grads) == len(floats)
    for a, t in zip(grads, floats):
        assert a.dtype == dtype
        assert_close(a, t.grad.numpy(), dtype, scale=scale)
    for name, p in module.named_parameters():
        assert_close(p.grad, P[name].grad.numpy(), dtype, scale=scale, err_msg=name)


@requires_torch
@pytest.mark.parametrize("cin,cout", [(3, 3), (2, 5)])
def test_resblock_matches_torch(backend, dtype, rng, one_thread, cin, cout):
    block = ResBlock(cin, cout, 6, dtype=dtype)
    _compare_with_torch(block, lambda P, x, e: _torch_resblock(P, "", x, e),
                        [rng.standard_normal((2, cin, 5, 4)), rng.standard_normal((2, 6))], dtype, scale=30)


@requires_torch
def test_unet_matches_torch(backend, dtype, rng, one_thread):
    model = UNet(1, channels=3, emb_dim=8, dtype=dtype)
    for p in model.parameters():   # the output conv starts at zero; give every path a signal
        p.data[...] = rng.standard_normal(p.shape) * 0.3
    _compare_with_torch(model, lambda P, x, t: _torch_unet(P, x, t, 8),
                        [rng.standard_normal((2, 1, 6, 4)), np.array([0, 517])], dtype, scale=100)
