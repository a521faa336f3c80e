"""Linear, Flatten, Dropout, Identity, activations, Sequential and Residual.

Each layer: gradcheck (float64, every backend), the torch oracle (forward, grad_input and
parameter grads with the same weights, both dtypes), bad inputs, non-contiguous inputs.
"""
import math

import numpy as np
import pytest

import dlcore
from dlcore import nn
from helpers import assert_close, requires_torch, torch

ACTIVATIONS = [
    ("ReLU", (), {}),
    ("LeakyReLU", (), {}),
    ("LeakyReLU", (0.2,), {}),
    ("Sigmoid", (), {}),
    ("Tanh", (), {}),
    ("SiLU", (), {}),
    ("Softmax", (1,), {}),
    ("Softmax", (-1,), {}),
    ("LogSoftmax", (1,), {}),
    ("LogSoftmax", (0,), {}),
]
ACT_IDS = [f"{name}{args}" for name, args, _ in ACTIVATIONS]


def away_from_kinks(rng, shape):
    """Random values at least 0.05 away from 0 (ReLU's kink breaks finite differences)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.05 * np.sign(x) + 0.05, x)


# ---------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3), (3,)])
def test_linear_gradcheck(backend, rng, bias, shape):
    layer = nn.Linear(3, 5, bias=bias, dtype=np.float64)
    assert dlcore.gradcheck(layer, rng.standard_normal(shape))


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=ACT_IDS)
def test_activation_gradcheck(backend, rng, name, args, kwargs):
    layer = getattr(nn, name)(*args, **kwargs)
    assert dlcore.gradcheck(layer, away_from_kinks(rng, (3, 4, 2)))


def test_shape_layers_gradcheck(backend, rng):
    x = rng.standard_normal((2, 3, 2, 2))
    assert dlcore.gradcheck(nn.Flatten(), x)
    assert dlcore.gradcheck(nn.Flatten(0, 2), x)
    assert dlcore.gradcheck(nn.Identity(), x)
    assert dlcore.gradcheck(nn.Dropout(0.5), x)  # gradcheck reseeds: the same mask each forward
    assert dlcore.gradcheck(nn.Dropout(0.5).eval(), x)


def test_containers_gradcheck(backend, rng):
    dlcore.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(4, 6, dtype=np.float64),
        nn.Tanh(),
        nn.Residual(nn.Sequential(nn.Linear(6, 6, dtype=np.float64), nn.Sigmoid())),
        nn.Residual(nn.Linear(6, 3, dtype=np.float64), shortcut=nn.Linear(6, 3, bias=False, dtype=np.float64)),
        nn.Dropout(0.3),
        nn.LogSoftmax(1),
    )
    assert dlcore.gradcheck(model, rng.standard_normal((5, 4)))


# ---------------------------------------------------------------------------- torch oracle
def _torch_activation(name, args):
    return getattr(torch.nn, name)(*args)


def _compare_with_torch(layer, tlayer, x, dtype, scale=1.0):
    """Forward, grad_input and every parameter grad against torch, same weights, random δ."""
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = tlayer.to(tdtype)
    state = layer.state_dict()
    if state:
        tlayer.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    xt = torch.tensor(x, dtype=tdtype, requires_grad=True)
    out_t = tlayer(xt)
    out = layer(x)
    assert out.dtype == dtype
    assert_close(out, out_t.detach().numpy(), dtype, scale)
    g = np.random.default_rng(5).standard_normal(out.shape).astype(dtype)
    out_t.backward(torch.from_numpy(g))
    layer.zero_grad()
    grad_input = layer.backward(g)
    assert grad_input.shape == x.shape and grad_input.dtype == dtype
    assert_close(grad_input, xt.grad.numpy(), dtype, scale)
    tparams = dict(tlayer.named_parameters())
    names = [n for n, _ in layer.named_parameters()]
    assert names == list(tparams)
    for name, p in layer.named_parameters():
        assert_close(p.grad, tparams[name].grad.numpy(), dtype, scale, err_msg=name)


@requires_torch
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 5), (5,)])
def test_linear_matches_torch(backend, dtype, rng, bias, shape):
    layer = nn.Linear(5, 7, bias=bias, dtype=dtype)
    _compare_with_torch(layer, torch.nn.Linear(5, 7, bias=bias), rng.standard_normal(shape).astype(dtype), dtype)


@requires_torch
@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=ACT_IDS)
def test_activation_matches_torch(backend, dtype, rng, name, args, kwargs):
    x = (3 * rng.standard_normal((4, 5, 3))).astype(dtype)
    x[0, 0, :] = [0.0, 40.0, -40.0]  # the kink and saturation
    _compare_with_torch(getattr(nn, name)(*args), _torch_activation(name, args), x, dtype)


@requires_torch
def test_flatten_identity_match_torch(backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    for args in [(), (0,), (1, 2), (-3, -2), (2, 2)]:
        _compare_with_torch(nn.Flatten(*args), torch.nn.Flatten(*args), x, dtype)
    _compare_with_torch(nn.Identity(), torch.nn.Identity(), x, dtype)


@requires_torch
def test_containers_match_torch(backend, dtype, rng):
    model = nn.Sequential(
        nn.Linear(6, 8, dtype=dtype),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Linear(8, 8, dtype=dtype), nn.Tanh())),
        nn.Linear(8, 4, dtype=dtype),
        nn.LogSoftmax(dim=1),
    )

    class TorchResidual(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x) + x

    tmodel = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.ReLU(),
        TorchResidual(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())),
        torch.nn.Linear(8, 4),
        torch.nn.LogSoftmax(dim=1),
    )
    _compare_with_torch(model, tmodel, rng.standard_normal((10, 6)).astype(dtype), dtype)


@requires_torch
def test_dropout_eval_and_p0_match_torch(backend, dtype, rng):
    x = rng.standard_normal((4, 6)).astype(dtype)
    _compare_with_torch(nn.Dropout(0.4).eval(), torch.nn.Dropout(0.4).eval(), x, dtype)
    _compare_with_torch(nn.Dropout(0.0), torch.nn.Dropout(0.0), x, dtype)
    _compare_with_torch(nn.Dropout(1.0), torch.nn.Dropout(1.0), x, dtype)


# ---------------------------------------------------------------------------- Linear specifics
def test_linear_init_law_and_layout():
    dlcore.manual_seed(0)
    layer = nn.Linear(400, 300)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (300, 400) and b.shape == (300,) and w.dtype == np.float32
    bound = 1 / math.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-a, a) has variance a²/3; 120,000 draws pin it within a few per cent
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.03
    assert abs(w.mean()) < 0.02 * bound
    assert abs(b.var() / (bound**2 / 3) - 1) < 0.25


def test_linear_seeded_init_is_reproducible():
    dlcore.manual_seed(7)
    a = nn.Linear(5, 4).weight.data.copy()
    dlcore.manual_seed(7)
    b = nn.Linear(5, 4).weight.data.copy()
    c = nn.Linear(5, 4).weight.data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_linear_dtype_and_casting(rng):
    layer64 = nn.Linear(3, 2, dtype=np.float64)
    assert layer64.weight.dtype == np.float64 and layer64.bias.dtype == np.float64
    x32 = rng.standard_normal((4, 3)).astype(np.float32)
    out = layer64(x32)
    assert out.dtype == np.float64  # input cast to the parameters' dtype
    np.testing.assert_allclose(out, x32.astype(np.float64) @ layer64.weight.data.T + layer64.bias.data, rtol=1e-12)
    g = layer64.backward(np.ones((4, 2), np.float32))
    assert g.dtype == np.float64
    layer32 = nn.Linear(3, 2)
    assert layer32(x32.astype(np.float64)).dtype == np.float32
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(3, 2, dtype=np.int32)
    assert nn.Linear(3, 2, bias=False).bias is None


@pytest.mark.parametrize("bad", [np.arange(6).reshape(2, 3), np.ones((2, 3), bool), np.ones((2, 3), complex), "abc"])
def test_linear_rejects_non_floating(bad):
    with pytest.raises(TypeError, match="input"):
        nn.Linear(3, 2)(bad)


def test_linear_rejects_bad_shapes():
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"in_features=3.*\(4, 5\)"):
        layer(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="in_features"):
        layer(np.float32(1.0))
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(-1, 2)
    with pytest.raises(TypeError, match="out_features"):
        nn.Linear(3, 2.5)
    with pytest.raises(TypeError, match="bias"):
        nn.Linear(3, 2, bias="yes")


def test_linear_non_contiguous_inputs_equal_contiguous(backend, rng):
    layer = nn.Linear(5, 3, dtype=np.float64)
    base = rng.standard_normal((5, 8))
    views = {
        "transposed": base.T,
        "fortran": np.asfortranarray(base.T),
        "strided": rng.standard_normal((16, 5))[::2],
    }
    ro = base.T.copy()
    ro.setflags(write=False)
    views["read-only"] = ro
    g = rng.standard_normal((8, 3))
    for name, x in views.items():
        before = x.copy()
        out = layer(x)
        layer.zero_grad()
        gi = layer.backward(g)
        gw = layer.weight.grad.copy()
        c = np.ascontiguousarray(x)
        np.testing.assert_array_equal(out, layer(c), err_msg=name)
        layer.zero_grad()
        np.testing.assert_array_equal(gi, layer.backward(g), err_msg=name)
        np.testing.assert_array_equal(gw, layer.weight.grad, err_msg=name)
        np.testing.assert_array_equal(x, before, err_msg=f"{name} input was modified")


def test_linear_backward_accumulates_and_zero_grad(rng):
    layer = nn.Linear(3, 2, dtype=np.float64)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer(x)
    layer.backward(g)
    first = layer.weight.grad.copy()
    np.testing.assert_allclose(first, g.T @ x)
    np.testing.assert_allclose(layer.bias.grad, g.sum(0))
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * first)
    layer.zero_grad()
    assert np.all(layer.weight.grad == 0) and layer.weight.grad.shape == (2, 3)


# ---------------------------------------------------------------------------- backward contract
LAYERS = [
    lambda: nn.Linear(4, 3),
    lambda: nn.Flatten(),
    lambda: nn.Dropout(0.5),
    lambda: nn.Identity(),
    lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
    lambda: nn.Residual(nn.Linear(4, 4)),
] + [lambda name=name, args=args: getattr(nn, name)(*args) for name, args, _ in ACTIVATIONS]


@pytest.mark.parametrize("make", LAYERS)
def test_backward_contract(make, rng):
    layer = make()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 4), np.float32))
    out = layer(rng.standard_normal((2, 4)).astype(np.float32))
    wrong = np.ones(out.shape + (1,), np.float32)
    with pytest.raises(ValueError, match=rf"{re_shape(out.shape)}.*{re_shape(wrong.shape)}"):
        layer.backward(wrong)
    with pytest.raises(TypeError, match="grad_output"):
        layer.backward(np.ones(out.shape, np.int64))
    assert layer.backward(np.ones(out.shape, np.float32)).shape == (2, 4)


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=ACT_IDS)
def test_activation_rejects_ints_and_keeps_dtype(name, args, kwargs, dtype):
    layer = getattr(nn, name)(*args)
    with pytest.raises(TypeError):
        layer(np.arange(6).reshape(2, 3))
    assert layer(np.ones((2, 3), dtype)).dtype == dtype


@pytest.mark.parametrize("cls", [nn.Softmax, nn.LogSoftmax])
def test_softmax_dim_validation(cls):
    with pytest.raises(ValueError, match="dim"):
        cls(2)(np.zeros((2, 3)))
    with pytest.raises(TypeError):
        cls(None)


def test_activation_non_contiguous(backend, rng):
    base = rng.standard_normal((6, 4))
    for name, args, _ in ACTIVATIONS:
        layer = getattr(nn, name)(*args)
        x = np.asfortranarray(base)[::2]
        np.testing.assert_array_equal(layer(x), layer(np.ascontiguousarray(x)), err_msg=name)


def test_flatten_errors_and_shapes():
    x = np.zeros((2, 3, 4, 5), np.float32)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, -1)(x).shape == (120,)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    with pytest.raises(ValueError, match="out of range"):
        nn.Flatten(4)(x)
    with pytest.raises(ValueError, match="comes after"):
        nn.Flatten(2, 1)(x)
    with pytest.raises(ValueError, match="out of range"):
        nn.Flatten()(np.zeros(3, np.float32))


# ---------------------------------------------------------------------------- Dropout
def test_dropout_statistics_and_scaling(backend):
    dlcore.manual_seed(3)
    x = np.ones((200, 500), np.float64)
    layer = nn.Dropout(0.3)
    out = layer(x)
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    g = np.full_like(x, 2.0)
    np.testing.assert_array_equal(layer.backward(g), np.where(kept, 2 / 0.7, 0.0))


def test_dropout_edge_probabilities_and_modes(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(nn.Dropout(1.0)(x), np.zeros_like(x))
    np.testing.assert_array_equal(nn.Dropout(0.0)(x), x)
    layer = nn.Dropout(0.9).eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(-0.1)
    with pytest.raises(ValueError, match="p"):
        dlcore.functional.dropout(x, p=2.0)


def test_dropout_seeded():
    x = np.ones((10, 10))
    dlcore.manual_seed(11)
    a = nn.Dropout()(x)
    dlcore.manual_seed(11)
    b = nn.Dropout()(x)
    c = nn.Dropout()(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


# ---------------------------------------------------------------------------- containers
def test_sequential_protocol():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3
    assert list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    assert isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == layers[1:]
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(TypeError):
        nn.Sequential(nn.ReLU(), "relu")
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    empty = nn.Sequential()
    x = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(empty(x), x)
    np.testing.assert_array_equal(empty.backward(x), x)


def test_sequential_backward_runs_children_in_reverse():
    order = []

    class Probe(nn.Module):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def forward(self, x):
            return x * 2

        def backward(self, g):
            order.append(self.tag)
            return g * 2

    seq = nn.Sequential(Probe("a"), Probe("b"), Probe("c"))
    seq(np.ones(3))
    np.testing.assert_array_equal(seq.backward(np.ones(3)), np.full(3, 8.0))
    assert order == ["c", "b", "a"]


def test_residual_names_and_shape_check(rng):
    res = nn.Residual(nn.Linear(4, 4))
    assert [n for n, _ in res.named_children()] == ["block"]
    res2 = nn.Residual(nn.Linear(4, 2), shortcut=nn.Linear(4, 2, bias=False))
    assert list(res2.state_dict()) == ["block.weight", "block.bias", "shortcut.weight"]
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 4\)"):
        nn.Residual(nn.Linear(4, 2))(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="block"):
        nn.Residual("block")
    x = rng.standard_normal((3, 4))
    r = nn.Residual(nn.Linear(4, 4, dtype=np.float64))
    out = r(x)
    np.testing.assert_allclose(out, r.block(x) + x)


# ---------------------------------------------------------------------------- property test
from hypothesis import given, strategies as st  # noqa: E402


@requires_torch
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@given(
    lead=st.lists(st.integers(0, 3), min_size=0, max_size=2),
    in_features=st.integers(0, 6),
    out_features=st.integers(1, 6),
    bias=st.booleans(),
    transpose=st.booleans(),
)
def test_linear_matches_torch_on_drawn_shapes(lead, in_features, out_features, bias, transpose):
    dlcore.manual_seed(len(lead) + in_features)
    layer = nn.Linear(in_features, out_features, bias=bias, dtype=np.float64)
    rng = np.random.default_rng(in_features * 7 + out_features)
    shape = tuple(lead) + (in_features,)
    x = rng.standard_normal(shape[::-1]).T if transpose else rng.standard_normal(shape)
    _compare_with_torch(layer, torch.nn.Linear(in_features, out_features, bias=bias), x, np.float64)


@pytest.mark.parametrize("make", LAYERS)
def test_layouts_equal_contiguous_and_inputs_untouched(backend, make, rng):
    """Fortran-ordered, sliced and read-only inputs (and grad_outputs) give a contiguous copy's results."""
    layer = make()
    base = rng.standard_normal((4, 6)).astype(np.float32)
    layouts = {"fortran": np.asfortranarray(base[:, :4]), "sliced": base[::-1, 1:5], "transposed": base[:4, :4].T.copy().T}
    ro = base[:, :4].copy()
    ro.setflags(write=False)
    layouts["read-only"] = ro
    for name, x in layouts.items():
        before = x.copy()
        dlcore.manual_seed(0)
        out = layer(x)
        g = np.asfortranarray(rng.standard_normal(out.shape).astype(np.float32))
        g_before = g.copy()
        gi = layer.backward(g)
        np.testing.assert_array_equal(x, before, err_msg=f"{name}: input modified")
        np.testing.assert_array_equal(g, g_before, err_msg=f"{name}: grad_output modified")
        dlcore.manual_seed(0)
        out_c = layer(np.ascontiguousarray(x))
        gi_c = layer.backward(np.ascontiguousarray(g))
        np.testing.assert_array_equal(out, out_c, err_msg=name)
        np.testing.assert_array_equal(gi, gi_c, err_msg=name)
