"""MaxPool2d, AvgPool2d, MaxUnpool2d: finite differences, the torch oracle, errors, odd inputs."""
import numpy as np
import pytest
from helpers import assert_close, layer_gradcheck, requires_torch, torch

from dlcore import nn

# One thread for layer tests (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


POOL_CASES = [  # (kernel_size, stride, padding)
    (2, None, 0),
    (3, 2, 1),  # overlapping windows: a max can win several windows
    ((3, 2), (1, 2), (1, 0)),
    (2, 3, 0),  # stride > kernel: some inputs belong to no window
    (1, 1, 0),
]


def distinct(rng, shape):
    """Values at least 1 apart (finite differences never reorder a window), signs mixed."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2.0


# ---- finite differences ------------------------------------------------------------------------
@pytest.mark.parametrize("kernel_size,stride,padding", POOL_CASES)
def test_max_pool2d_gradcheck(backend, kernel_size, stride, padding, rng):
    layer_gradcheck(nn.MaxPool2d(kernel_size, stride, padding), distinct(rng, (2, 2, 5, 4)))


@pytest.mark.parametrize("kernel_size,stride,padding", POOL_CASES)
def test_avg_pool2d_gradcheck(backend, kernel_size, stride, padding, rng):
    layer_gradcheck(nn.AvgPool2d(kernel_size, stride, padding), rng.standard_normal((2, 2, 5, 4)))


@pytest.mark.parametrize("kernel_size,stride,padding", [(2, None, 0), ((3, 2), (3, 2), 1), (2, 3, 0)])
def test_max_unpool2d_gradcheck(backend, kernel_size, stride, padding, rng):
    # non-overlapping windows: no index repeats (with repeats the forward keeps one value
    # but torch's backward, and ours, gathers for every copy: not the forward's derivative)
    pool = nn.MaxPool2d(kernel_size, stride, padding, return_indices=True)
    pooled, indices = pool(distinct(rng, (2, 2, 6, 5)))
    unpool = nn.MaxUnpool2d(kernel_size, stride, padding)
    # the indices address the 6x5 input planes: output_size says so (passed through as is)
    (grad,) = layer_gradcheck(unpool, rng.standard_normal(pooled.shape), indices, (6, 5))
    assert grad.shape == pooled.shape


# ---- the torch oracle --------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("kernel_size,stride,padding", POOL_CASES)
def test_max_pool2d_matches_torch(backend, dtype, kernel_size, stride, padding, rng):
    # small integers: many ties, so torch's first-maximum rule is pinned too
    x = rng.integers(-3, 4, size=(2, 3, 7, 6)).astype(dtype)
    reference = torch.nn.MaxPool2d(kernel_size, stride, padding, return_indices=True)
    tx = torch.tensor(x, requires_grad=True)
    ty, tind = reference(tx)
    pool = nn.MaxPool2d(kernel_size, stride, padding, return_indices=True)
    y, indices = pool(x)
    assert y.dtype == dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, tind.numpy())
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    assert_close(pool.backward(g), tx.grad.numpy(), dtype)


@requires_torch
@pytest.mark.parametrize("kernel_size,stride,padding", POOL_CASES)
def test_avg_pool2d_matches_torch(backend, dtype, kernel_size, stride, padding, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    reference = torch.nn.AvgPool2d(kernel_size, stride, padding)
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    pool = nn.AvgPool2d(kernel_size, stride, padding)
    y = pool(x)
    assert y.dtype == dtype
    assert_close(y, ty.detach().numpy(), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    assert_close(pool.backward(g), tx.grad.numpy(), dtype)


@requires_torch
@pytest.mark.parametrize("kernel_size,stride,padding,size", [
    (2, None, 0, (7, 6)), (3, 2, 1, (7, 7)), (2, 2, 0, (5, 4)), ((3, 2), (2, 1), (1, 0), (7, 5)),
])
@pytest.mark.parametrize("with_output_size", [False, True])
def test_max_unpool2d_matches_torch(backend, dtype, kernel_size, stride, padding, size, with_output_size, rng):
    x = rng.standard_normal((2, 3) + size).astype(dtype)
    pooled, indices = torch.nn.functional.max_pool2d(torch.tensor(x), kernel_size, stride, padding,
                                                     return_indices=True)
    output_size = x.shape if with_output_size else None  # torch accepts (N, C, H, W) too
    reference = torch.nn.MaxUnpool2d(kernel_size, stride, padding)
    tp = pooled.clone().requires_grad_(True)
    ty = reference(tp, indices, output_size=output_size)
    unpool = nn.MaxUnpool2d(kernel_size, stride, padding)
    y = unpool(pooled.numpy(), indices.numpy(), output_size=output_size)
    assert y.shape == tuple(ty.shape) and y.dtype == dtype
    np.testing.assert_array_equal(y, ty.detach().numpy())
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(unpool.backward(g), tp.grad.numpy())


def test_pool_then_unpool_restores_the_maxima(backend, rng):
    x = distinct(rng, (2, 2, 6, 6))
    y, indices = nn.MaxPool2d(2, return_indices=True)(x)
    restored = nn.MaxUnpool2d(2)(y, indices)
    assert restored.shape == x.shape
    kept = restored != 0
    np.testing.assert_array_equal(restored[kept], x[kept])
    assert kept.sum() == y.size


def test_return_indices_false_returns_an_array(backend, rng):
    out = nn.MaxPool2d(2)(rng.standard_normal((1, 1, 4, 4)))
    assert isinstance(out, np.ndarray) and out.shape == (1, 1, 2, 2)


# ---- odd inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: nn.MaxPool2d(3, 2, 1), lambda: nn.AvgPool2d(3, 2, 1)])
def test_noncontiguous_and_readonly_inputs(backend, make, rng):
    base = distinct(rng, (2, 3, 12, 14))
    contiguous = np.ascontiguousarray(base[:, :, ::2, 1::2])
    readonly = contiguous.copy()
    readonly.flags.writeable = False
    views = {"sliced": base[:, :, ::2, 1::2], "fortran": np.asfortranarray(contiguous),
             "transposed": np.ascontiguousarray(contiguous.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
             "readonly": readonly}
    layer = make()
    expected = layer(contiguous)
    g = rng.standard_normal(expected.shape)
    expected_grad = layer.backward(g)
    for name, view in views.items():
        before = view.copy()
        np.testing.assert_array_equal(layer(view), expected, err_msg=name)
        np.testing.assert_array_equal(layer.backward(np.asfortranarray(g)), expected_grad, err_msg=name)
        np.testing.assert_array_equal(view, before, err_msg=name)


def test_unpool_noncontiguous_inputs(backend, rng):
    y, indices = nn.MaxPool2d(2, return_indices=True)(distinct(rng, (2, 2, 6, 6)))
    unpool = nn.MaxUnpool2d(2)
    expected = unpool(y, indices)
    y_t = np.ascontiguousarray(y.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    ind_f = np.asfortranarray(indices)
    ind_f.flags.writeable = False
    np.testing.assert_array_equal(unpool(y_t, ind_f), expected)


# ---- errors ------------------------------------------------------------------------------------
def test_constructor_errors():
    with pytest.raises(ValueError, match="stride"):
        nn.MaxPool2d(2, stride=0)
    with pytest.raises(ValueError, match="padding"):
        nn.AvgPool2d(2, padding=-1)
    with pytest.raises(ValueError, match=r"padding must be at most half of kernel_size \(3, 3\)"):
        nn.MaxPool2d(3, padding=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.MaxUnpool2d(0)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.AvgPool2d("2")


@pytest.mark.parametrize("make", [lambda: nn.MaxPool2d(3), lambda: nn.AvgPool2d(3)])
def test_forward_errors(make):
    layer = make()
    with pytest.raises(ValueError, match=r"4-D.*\(3, 5\)"):
        layer(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"larger than the padded input.*gives 2"):
        layer(np.zeros((1, 1, 2, 5), np.float32))
    with pytest.raises(TypeError, match="dtype bool"):
        layer(np.zeros((1, 1, 5, 5), bool))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 1, 1, 1), np.float32))
    layer(np.zeros((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.zeros((1, 1, 3, 3), np.float32))


def test_unpool_errors(rng):
    unpool = nn.MaxUnpool2d(2)
    x = rng.standard_normal((1, 1, 2, 2))
    with pytest.raises(TypeError, match="indices"):
        unpool(x, np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"indices must have the input's shape"):
        unpool(x, np.zeros((1, 1, 2, 3), np.int64))
    with pytest.raises(ValueError, match="4-D"):
        unpool(x[0], np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError):
        unpool(x, np.full((1, 1, 2, 2), 16, np.int64))  # out of the 4x4 output plane
    with pytest.raises(ValueError):
        unpool(x, np.full((1, 1, 2, 2), -1, np.int64))
    with pytest.raises(TypeError, match="int"):
        unpool(x.astype(np.int64), np.zeros((1, 1, 2, 2), np.int64))
