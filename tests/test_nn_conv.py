"""Conv2d and ConvTranspose2d: finite differences, the torch oracle, init law, errors, odd inputs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from helpers import assert_close, layer_gradcheck, requires_torch, tdtype, torch, torch_state

import dlcore
from dlcore import nn


# One thread for layer tests (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


# ---- finite differences ------------------------------------------------------------------------
CONV_CASES = [  # (kernel_size, stride, padding)
    (3, 1, 0),
    ((3, 2), (2, 1), (1, 0)),
    (1, 2, 0),
    (2, 3, 1),
]


@pytest.mark.parametrize("kernel_size,stride,padding", CONV_CASES)
def test_conv2d_gradcheck(backend, kernel_size, stride, padding, rng):
    conv = nn.Conv2d(2, 3, kernel_size, stride, padding, dtype=np.float64)
    layer_gradcheck(conv, rng.standard_normal((2, 2, 5, 4)))


def test_conv2d_gradcheck_no_bias(backend, rng):
    conv = nn.Conv2d(2, 2, 2, stride=2, padding=1, bias=False, dtype=np.float64)
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    layer_gradcheck(conv, rng.standard_normal((1, 2, 4, 5)))


@pytest.mark.parametrize("kernel_size,stride,padding,output_padding", [
    (3, 1, 0, 0), ((2, 3), (2, 1), (0, 1), (1, 0)), (3, 2, 1, 1), (1, 1, 0, 0),
])
def test_conv_transpose2d_gradcheck(backend, kernel_size, stride, padding, output_padding, rng):
    conv = nn.ConvTranspose2d(2, 3, kernel_size, stride, padding, output_padding, dtype=np.float64)
    layer_gradcheck(conv, rng.standard_normal((2, 2, 3, 4)))


def test_gradcheck_catches_a_wrong_backward(rng):
    """The checker itself can fail: a backward off by a factor is reported."""
    conv = nn.Conv2d(1, 1, 2, dtype=np.float64)
    honest = conv.backward
    conv.backward = lambda g: 1.01 * honest(g)
    with pytest.raises(AssertionError):
        layer_gradcheck(conv, rng.standard_normal((1, 1, 3, 3)))


# ---- the torch oracle --------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("kernel_size,stride,padding", CONV_CASES + [((5, 5), 1, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_torch(backend, dtype, kernel_size, stride, padding, bias, rng):
    reference = torch.nn.Conv2d(3, 4, kernel_size, stride, padding, bias=bias).to(tdtype(dtype))
    conv = nn.Conv2d(3, 4, kernel_size, stride, padding, bias=bias, dtype=dtype)
    conv.load_state_dict(torch_state(reference))
    assert list(conv.state_dict()) == list(reference.state_dict())
    x = rng.standard_normal((3, 3, 8, 7)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    y = conv(x)
    assert y.dtype == dtype
    assert_close(y, ty.detach().numpy(), dtype, scale=5)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    conv.zero_grad()
    assert_close(conv.backward(g), tx.grad.numpy(), dtype, scale=5)
    assert_close(conv.weight.grad, reference.weight.grad.numpy(), dtype, scale=20)
    if bias:
        assert_close(conv.bias.grad, reference.bias.grad.numpy(), dtype, scale=20)


@requires_torch
@pytest.mark.parametrize("kernel_size,stride,padding,output_padding", [
    (3, 1, 0, 0), ((2, 3), (2, 1), (0, 1), (1, 0)), (4, 2, 1, 0), (3, 3, 1, 2),
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose2d_matches_torch(backend, dtype, kernel_size, stride, padding, output_padding,
                                        bias, rng):
    reference = torch.nn.ConvTranspose2d(3, 2, kernel_size, stride, padding, output_padding,
                                         bias=bias).to(tdtype(dtype))
    conv = nn.ConvTranspose2d(3, 2, kernel_size, stride, padding, output_padding, bias=bias, dtype=dtype)
    conv.load_state_dict(torch_state(reference))
    assert list(conv.state_dict()) == list(reference.state_dict())
    assert conv.weight.shape == (3, 2) + conv.kernel_size
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    y = conv(x)
    assert y.shape == tuple(ty.shape) == conv.output_shape(x.shape)
    assert_close(y, ty.detach().numpy(), dtype, scale=5)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    conv.zero_grad()
    assert_close(conv.backward(g), tx.grad.numpy(), dtype, scale=5)
    assert_close(conv.weight.grad, reference.weight.grad.numpy(), dtype, scale=20)
    if bias:
        assert_close(conv.bias.grad, reference.bias.grad.numpy(), dtype, scale=20)


def test_backward_accumulates_parameter_grads(backend, rng):
    conv = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64)
    x = rng.standard_normal((2, 2, 4, 4))
    g = rng.standard_normal((2, 3, 4, 4))
    conv(x)
    conv.backward(g)
    first = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv.backward(g)
    np.testing.assert_allclose(conv.weight.grad, 2 * first[0])
    np.testing.assert_allclose(conv.bias.grad, 2 * first[1])


# ---- init law ----------------------------------------------------------------------------------
def test_conv2d_init_law():
    conv = nn.Conv2d(20, 30, (3, 4))
    fan_in = 20 * 3 * 4
    bound = math.sqrt(1.0 / 3.0) * math.sqrt(3.0 / fan_in)  # torch: gain(leaky_relu, a=sqrt 5) * sqrt(3/fan_in)
    w = conv.weight.data
    assert w.shape == (30, 20, 3, 4) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound  # uniform: std = bound / sqrt(3)
    b = conv.bias.data
    assert np.abs(b).max() <= 1 / math.sqrt(fan_in) and np.abs(b).max() > 0.5 / math.sqrt(fan_in)


def test_conv_transpose2d_init_uses_torch_fan_in():
    # torch's fan_in for a (C_in, C_out, kh, kw) weight is C_out*kh*kw, not C_in*kh*kw
    conv = nn.ConvTranspose2d(2, 60, 3)
    bound = 1 / math.sqrt(60 * 9)
    assert np.abs(conv.weight.data).max() <= bound + 1e-9
    assert np.abs(conv.weight.data).max() > 0.95 * bound
    assert np.abs(conv.bias.data).max() <= bound + 1e-9


def test_init_is_seeded():
    dlcore.manual_seed(3)
    a = nn.Conv2d(2, 3, 3).state_dict()
    dlcore.manual_seed(3)
    b = nn.Conv2d(2, 3, 3).state_dict()
    c = nn.Conv2d(2, 3, 3).state_dict()
    np.testing.assert_array_equal(a["weight"], b["weight"])
    np.testing.assert_array_equal(a["bias"], b["bias"])
    assert not np.array_equal(a["weight"], c["weight"])


def test_dtype_keyword_and_input_cast(backend, rng):
    conv = nn.Conv2d(1, 2, 3, dtype=np.float64)
    assert conv.weight.dtype == np.float64 and conv.bias.dtype == np.float64
    x = rng.standard_normal((1, 1, 5, 5))
    y32 = conv(x.astype(np.float32))
    assert y32.dtype == np.float64
    np.testing.assert_allclose(y32, conv(x.astype(np.float32).astype(np.float64)))


# ---- odd inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("layer_cls", ["conv", "transpose"])
def test_noncontiguous_and_readonly_inputs(backend, layer_cls, rng):
    if layer_cls == "conv":
        layer = nn.Conv2d(3, 2, 3, stride=2, padding=1, dtype=np.float64)
    else:
        layer = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, dtype=np.float64)
    base = rng.standard_normal((2, 3, 8, 12))
    views = {
        "sliced": base[:, :, ::2, ::3],
        "transposed": np.ascontiguousarray(base[:, :, ::2, ::3].transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        "fortran": np.asfortranarray(base[:, :, ::2, ::3]),
    }
    readonly = np.ascontiguousarray(base[:, :, ::2, ::3])
    readonly.flags.writeable = False
    views["readonly"] = readonly
    expected = layer(np.ascontiguousarray(base[:, :, ::2, ::3]))
    g = rng.standard_normal(expected.shape)
    expected_grad = layer.backward(g)
    g_view = np.asfortranarray(g)
    for name, view in views.items():
        before = view.copy()
        np.testing.assert_array_equal(layer(view), expected, err_msg=name)
        np.testing.assert_array_equal(layer.backward(g_view), expected_grad, err_msg=name)
        np.testing.assert_array_equal(view, before, err_msg=name)


# ---- errors ------------------------------------------------------------------------------------
def test_constructor_errors():
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(1, 1, 3, padding=-1)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(1, 1, 0)
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(0, 1, 3)
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(1, 1, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="stride"):
        nn.ConvTranspose2d(1, 1, 3, stride=(1, 0))
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(1, 1, 2.5)
    with pytest.raises(TypeError, match="dtype"):
        nn.Conv2d(1, 1, 3, dtype=np.int32)


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(3, 2, 3), lambda: nn.ConvTranspose2d(3, 2, 3)])
def test_forward_errors(make):
    layer = make()
    with pytest.raises(ValueError, match=r"4-D.*\(3, 5, 5\)"):
        layer(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"in_channels=3.*\(1, 2, 5, 5\)"):
        layer(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="dtype int64"):
        layer(np.zeros((1, 3, 5, 5), np.int64))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 2, 3, 3), np.float32))
    y = layer(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.zeros((1, 2) + tuple(s + 1 for s in y.shape[2:]), np.float32))


def test_kernel_larger_than_padded_input():
    conv = nn.Conv2d(1, 1, 5, padding=1)
    with pytest.raises(ValueError, match=r"larger than the padded input.*gives 4"):
        conv(np.zeros((1, 1, 2, 7), np.float32))
    conv(np.zeros((1, 1, 3, 3), np.float32))  # 3 + 2 = 5 fits exactly


def test_transposed_empty_output():
    conv = nn.ConvTranspose2d(1, 1, 1, padding=1)
    with pytest.raises(ValueError, match="output"):
        conv(np.zeros((1, 1, 2, 2), np.float32))


# ---- hypothesis: random geometry against torch ------------------------------------------------
@st.composite
def conv_geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    n, cin, cout = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return n, cin, cout, (h, w), (kh, kw), (sh, sw), (ph, pw)


@requires_torch
@settings(max_examples=25)
@given(geometry=conv_geometry(), transposed=st.booleans(), seed=st.integers(0, 2**16))
def test_random_geometry_matches_torch(geometry, transposed, seed):
    n, cin, cout, (h, w), kernel, stride, padding = geometry
    rng = np.random.default_rng(seed)
    if transposed:
        output_padding = (rng.integers(0, stride[0]), rng.integers(0, stride[1]))
        out_h = (h - 1) * stride[0] - 2 * padding[0] + kernel[0] + output_padding[0]
        out_w = (w - 1) * stride[1] - 2 * padding[1] + kernel[1] + output_padding[1]
        if min(out_h, out_w) < 1:
            return
        args = (cin, cout, kernel, stride, padding, tuple(int(o) for o in output_padding))
        reference = torch.nn.ConvTranspose2d(*args).double()
        layer = nn.ConvTranspose2d(*args, dtype=np.float64)
    else:
        reference = torch.nn.Conv2d(cin, cout, kernel, stride, padding).double()
        layer = nn.Conv2d(cin, cout, kernel, stride, padding, dtype=np.float64)
    layer.load_state_dict(torch_state(reference))
    x = rng.standard_normal((n, cin, h, w))
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    y = layer(x)
    assert_close(y, ty.detach().numpy(), np.float64)
    g = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(g))
    assert_close(layer.backward(g), tx.grad.numpy(), np.float64)
    assert_close(layer.weight.grad, reference.weight.grad.numpy(), np.float64)
    assert_close(layer.bias.grad, reference.bias.grad.numpy(), np.float64)


# ---- dilation and groups (torch's semantics and argument order) ---------------------------------
@pytest.mark.parametrize("dilation,groups", [(2, 1), ((1, 3), 2), (2, 4)])
def test_conv2d_dilation_groups_gradcheck(backend, dilation, groups, rng):
    conv = nn.Conv2d(4, 4, (3, 2), 1, 1, dilation, groups, dtype=np.float64)
    assert conv.weight.shape == (4, 4 // groups, 3, 2)
    layer_gradcheck(conv, rng.standard_normal((2, 4, 6, 5)))


@pytest.mark.parametrize("dilation,groups", [(2, 1), ((1, 2), 3)])
def test_conv_transpose2d_dilation_groups_gradcheck(backend, dilation, groups, rng):
    conv = nn.ConvTranspose2d(3, 6, 2, 2, 1, 1, groups, True, dilation, dtype=np.float64)
    assert conv.weight.shape == (3, 6 // groups, 2, 2)
    layer_gradcheck(conv, rng.standard_normal((2, 3, 3, 4)))


@requires_torch
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 2, 2, 1), ((2, 1), (1, 3), (2, 3), 2),
                                                            (1, 1, 1, 6)])
def test_conv2d_dilation_groups_match_torch(backend, dtype, stride, padding, dilation, groups, rng):
    # positional arguments in torch's order: in, out, kernel, stride, padding, dilation, groups, bias
    reference = torch.nn.Conv2d(6, 12, 3, stride, padding, dilation, groups, True).to(tdtype(dtype))
    conv = nn.Conv2d(6, 12, 3, stride, padding, dilation, groups, True, dtype=dtype)
    conv.load_state_dict(torch_state(reference))
    x = rng.standard_normal((3, 6, 11, 9)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    y = conv(x)
    assert y.shape == tuple(ty.shape)
    assert_close(y, ty.detach().numpy(), dtype, scale=5)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    conv.zero_grad()
    assert_close(conv.backward(g), tx.grad.numpy(), dtype, scale=5)
    assert_close(conv.weight.grad, reference.weight.grad.numpy(), dtype, scale=20)
    assert_close(conv.bias.grad, reference.bias.grad.numpy(), dtype, scale=20)
    assert (conv.dilation == (1, 1) or f"dilation={conv.dilation}" in repr(conv))
    assert (groups == 1 or f"groups={groups}" in repr(conv))


@requires_torch
@pytest.mark.parametrize("stride,padding,output_padding,groups,dilation", [
    (2, 1, 1, 2, 1), ((2, 1), (0, 1), (1, 0), 3, (1, 2)), (1, 1, 1, 1, 2)])
def test_conv_transpose2d_dilation_groups_match_torch(backend, dtype, stride, padding, output_padding, groups,
                                                      dilation, rng):
    # torch's order: in, out, kernel, stride, padding, output_padding, groups, bias, dilation
    reference = torch.nn.ConvTranspose2d(6, 6, 3, stride, padding, output_padding, groups, True,
                                         dilation).to(tdtype(dtype))
    conv = nn.ConvTranspose2d(6, 6, 3, stride, padding, output_padding, groups, True, dilation, dtype=dtype)
    conv.load_state_dict(torch_state(reference))
    x = rng.standard_normal((2, 6, 4, 5)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    y = conv(x)
    assert y.shape == tuple(ty.shape) == conv.output_shape(x.shape)
    assert_close(y, ty.detach().numpy(), dtype, scale=5)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    conv.zero_grad()
    assert_close(conv.backward(g), tx.grad.numpy(), dtype, scale=5)
    assert_close(conv.weight.grad, reference.weight.grad.numpy(), dtype, scale=20)
    assert_close(conv.bias.grad, reference.bias.grad.numpy(), dtype, scale=20)


def test_dilation_groups_errors():
    with pytest.raises(ValueError, match=r"in_channels \(6\) must be divisible by groups \(4\)"):
        nn.Conv2d(6, 8, 3, groups=4)
    with pytest.raises(ValueError, match=r"out_channels \(6\) must be divisible by groups \(4\)"):
        nn.ConvTranspose2d(8, 6, 3, groups=4)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        nn.Conv2d(1, 1, 3, dilation=0)
    with pytest.raises(ValueError, match="groups must be >= 1"):
        nn.Conv2d(1, 1, 3, groups=0)
    with pytest.raises(ValueError, match=r"with dilation \(3, 3\) is larger than the padded input"):
        nn.Conv2d(1, 1, 3, dilation=3)(np.zeros((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="output_padding must be smaller than stride"):
        nn.ConvTranspose2d(1, 1, 3, stride=2, dilation=2, output_padding=2)
    nn.ConvTranspose2d(1, 1, 3, stride=1, dilation=2, output_padding=1)  # < dilation: allowed, as torch


# ---- input gradients on demand ------------------------------------------------------------------
@pytest.mark.parametrize("layer", [lambda: nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64),
                                   lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, dtype=np.float64)])
def test_needs_input_grad(backend, layer, rng):
    conv = layer()
    x = rng.standard_normal((2, 2, 5, 5))
    g = rng.standard_normal(conv(x).shape)
    conv.zero_grad()
    gx = conv.backward(g)
    full = conv.weight.grad.copy(), conv.bias.grad.copy()
    assert gx.shape == x.shape
    conv.zero_grad()
    assert conv.backward(g, input_grad=False) is None
    conv.needs_input_grad = False
    assert conv.backward(g) is None
    assert conv.backward(g, input_grad=True).shape == x.shape  # the argument wins over the attribute
    np.testing.assert_array_equal(conv.weight.grad, 3 * full[0])
    np.testing.assert_allclose(conv.bias.grad, 3 * full[1])


def test_sequential_skips_the_first_layers_input_grad(backend, rng):
    from dlcore.models import LeNet5

    dlcore.manual_seed(0)
    model = LeNet5(dtype=np.float64)
    x = rng.standard_normal((3, 1, 28, 28))
    out = model(x)
    g = rng.standard_normal(out.shape)
    model.zero_grad()
    assert model.backward(g).shape == x.shape  # the default: torch-identical, dL/dx returned
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    assert model.backward(g, input_grad=False) is None
    for p, want in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, want)
    # a first layer without the option still gets its usual call
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, dtype=np.float64))
    y = mlp(rng.standard_normal((2, 1, 2, 2)))
    assert mlp.backward(np.ones_like(y), input_grad=False) is None
