"""BatchNorm1d/2d, InstanceNorm2d, AdaIN and the functional normalization ops.

These ops call no backend kernel; the finite-difference checks still run under both
backends (the `backend` fixture), the torch comparisons once.

Finite differences (train and eval), the torch oracle (forward, grads, running statistics
over several steps, eval output, state dicts), errors and odd inputs.
"""
import numpy as np
import pytest
from helpers import assert_close, layer_gradcheck, requires_torch, tdtype, torch, torch_state


import dlcore
from dlcore import functional as F
from dlcore import nn


# One thread for layer tests (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


# ---- finite differences ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_gradcheck(backend, shape, training, rng):
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    bn.weight.data[...] = rng.uniform(0.5, 2, 3)
    bn.bias.data[...] = rng.standard_normal(3)
    bn.running_mean[...] = rng.standard_normal(3)
    bn.running_var[...] = rng.uniform(0.5, 2, 3)
    bn.train(training)
    layer_gradcheck(bn, rng.standard_normal(shape))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm2d_gradcheck(backend, training, affine, rng):
    bn = nn.BatchNorm2d(2, affine=affine, dtype=np.float64)
    if affine:
        bn.weight.data[...] = rng.uniform(0.5, 2, 2)
        bn.bias.data[...] = rng.standard_normal(2)
    bn.running_var[...] = rng.uniform(0.5, 2, 2)
    bn.train(training)
    layer_gradcheck(bn, rng.standard_normal((3, 2, 3, 2)))


def test_batchnorm_without_running_stats_gradcheck(rng):
    bn = nn.BatchNorm2d(2, track_running_stats=False, dtype=np.float64).eval()
    layer_gradcheck(bn, rng.standard_normal((2, 2, 2, 3)))  # eval still uses batch statistics


@pytest.mark.parametrize("affine", [True, False])
def test_instancenorm2d_gradcheck(backend, affine, rng):
    norm = nn.InstanceNorm2d(3, affine=affine, dtype=np.float64)
    if affine:
        norm.weight.data[...] = rng.uniform(0.5, 2, 3)
        norm.bias.data[...] = rng.standard_normal(3)
    layer_gradcheck(norm, rng.standard_normal((2, 3, 3, 2)))


def test_instancenorm2d_tracked_eval_gradcheck(rng):
    norm = nn.InstanceNorm2d(2, affine=True, track_running_stats=True, dtype=np.float64)
    norm.running_mean[...] = rng.standard_normal(2)
    norm.running_var[...] = rng.uniform(0.5, 2, 2)
    layer_gradcheck(norm.eval(), rng.standard_normal((2, 2, 3, 3)))


def test_adain_gradcheck_both_inputs(backend, rng):
    content = rng.standard_normal((2, 3, 3, 2))
    style = 2 + 3 * rng.standard_normal((2, 3, 2, 4))  # another spatial size, mean and scale
    grad_content, grad_style = layer_gradcheck(nn.AdaIN(), content, style)
    assert np.abs(grad_style).max() > 1e-3  # the style path is really exercised


# ---- the torch oracle --------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)),
                                       ("BatchNorm2d", (4, 3, 5, 4))])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm_matches_torch(dtype, cls, shape, momentum, rng):
    reference = getattr(torch.nn, cls)(3, momentum=momentum).to(tdtype(dtype))
    with torch.no_grad():
        reference.weight.uniform_(0.5, 2.0)
        reference.bias.normal_()
        reference.running_mean.normal_()
        reference.running_var.uniform_(0.5, 2.0)
    bn = getattr(nn, cls)(3, momentum=momentum, dtype=dtype)
    bn.load_state_dict(torch_state(reference))
    assert list(bn.state_dict()) == list(reference.state_dict())
    for step in range(3):  # training: outputs, grads, running statistics after each step
        x = (1.5 + 2 * rng.standard_normal(shape)).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        reference.zero_grad()
        bn.zero_grad()
        ty = reference(tx)
        y = bn(x)
        assert y.dtype == dtype
        assert_close(y, ty.detach().numpy(), dtype, scale=5)
        g = rng.standard_normal(shape).astype(dtype)
        ty.backward(torch.tensor(g))
        assert_close(bn.backward(g), tx.grad.numpy(), dtype, scale=10)
        assert_close(bn.weight.grad, reference.weight.grad.numpy(), dtype, scale=20)
        assert_close(bn.bias.grad, reference.bias.grad.numpy(), dtype, scale=20)
    for key, value in reference.state_dict().items():
        assert_close(bn.state_dict()[key], value.numpy(), dtype, scale=5, err_msg=key)
    assert int(bn.num_batches_tracked) == 3
    # eval: running statistics normalize; the gradient is g * weight / sqrt(running_var + eps)
    reference.eval()
    bn.eval()
    x = rng.standard_normal(shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = reference(tx)
    assert_close(bn(x), ty.detach().numpy(), dtype, scale=5)
    g = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.tensor(g))
    assert_close(bn.backward(g), tx.grad.numpy(), dtype, scale=5)
    running = bn.running_mean.copy()
    bn(x)
    np.testing.assert_array_equal(bn.running_mean, running)  # eval never updates them


@requires_torch
@pytest.mark.parametrize("affine,track", [(False, False), (True, False), (True, True)])
def test_instancenorm2d_matches_torch(dtype, affine, track, rng):
    reference = torch.nn.InstanceNorm2d(3, affine=affine, track_running_stats=track).to(tdtype(dtype))
    if affine:
        with torch.no_grad():
            reference.weight.uniform_(0.5, 2.0)
            reference.bias.normal_()
    norm = nn.InstanceNorm2d(3, affine=affine, track_running_stats=track, dtype=dtype)
    norm.load_state_dict(torch_state(reference))
    assert list(norm.state_dict()) == list(reference.state_dict())
    for mode in ("train", "train", "eval"):
        reference.train(mode == "train")
        norm.train(mode == "train")
        x = (1 + 2 * rng.standard_normal((2, 3, 4, 5))).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        ty = reference(tx)
        assert_close(norm(x), ty.detach().numpy(), dtype, scale=5)
        g = rng.standard_normal(x.shape).astype(dtype)
        ty.backward(torch.tensor(g))
        norm.zero_grad()
        assert_close(norm.backward(g), tx.grad.numpy(), dtype, scale=10)
        if affine:
            assert_close(norm.weight.grad, reference.weight.grad.numpy(), dtype, scale=20)
            assert_close(norm.bias.grad, reference.bias.grad.numpy(), dtype, scale=20)
            reference.weight.grad = reference.bias.grad = None
    for key, value in reference.state_dict().items():
        assert_close(norm.state_dict()[key], value.numpy(), dtype, scale=5, err_msg=key)


@requires_torch
def test_adain_matches_torch_autograd(dtype, rng):
    content = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    style = (3 + 2 * rng.standard_normal((2, 3, 6, 3))).astype(dtype)
    tc = torch.tensor(content, requires_grad=True)
    ts = torch.tensor(style, requires_grad=True)

    def stats(t):
        mean = t.mean(dim=(2, 3), keepdim=True)
        return mean, torch.sqrt(t.var(dim=(2, 3), keepdim=True, unbiased=False) + 1e-5)

    (mc, sc), (ms, ss) = stats(tc), stats(ts)
    ty = ss * (tc - mc) / sc + ms
    adain = nn.AdaIN()
    y = adain(content, style)
    assert y.dtype == dtype and y.shape == content.shape
    assert_close(y, ty.detach().numpy(), dtype, scale=5)
    g = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    grad_content, grad_style = adain.backward(g)
    assert_close(grad_content, tc.grad.numpy(), dtype, scale=10)
    assert_close(grad_style, ts.grad.numpy(), dtype, scale=10)
    # the output carries the style's statistics
    assert_close(y.mean(axis=(2, 3)), style.mean(axis=(2, 3)), dtype, scale=10)


@requires_torch
@pytest.mark.parametrize("training", [True, False])
def test_functional_batch_norm_matches_torch(dtype, training, rng):
    x = rng.standard_normal((5, 4, 3)).astype(dtype)
    rm, rv = rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2, 4).astype(dtype)
    w, b = rng.uniform(0.5, 2, 4).astype(dtype), rng.standard_normal(4).astype(dtype)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    expected = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b),
                                              training=training, momentum=0.2, eps=1e-3)
    out = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-3)
    assert_close(out, expected.numpy(), dtype, scale=5)
    assert_close(rm, trm.numpy(), dtype)
    assert_close(rv, trv.numpy(), dtype)
    # no weight, no running statistics: plain standardization (torch requires them in eval)
    if training:
        expected = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True)
        assert_close(F.batch_norm(x, None, None, training=True), expected.numpy(), dtype, scale=5)
    else:
        with pytest.raises(ValueError, match="running_mean"):
            F.batch_norm(x, None, None, training=False)


@requires_torch
def test_functional_instance_norm_matches_torch(dtype, rng):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)  # any (N, C, *spatial)
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    expected = torch.nn.functional.instance_norm(torch.tensor(x), trm, trv, momentum=0.5)
    assert_close(F.instance_norm(x, rm, rv, momentum=0.5), expected.numpy(), dtype, scale=5)
    assert_close(rm, trm.numpy(), dtype)
    assert_close(rv, trv.numpy(), dtype)


# ---- state dicts, dtype ------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("make,make_torch", [
    (lambda: nn.BatchNorm1d(4), lambda: torch.nn.BatchNorm1d(4)),
    (lambda: nn.BatchNorm2d(4, affine=False), lambda: torch.nn.BatchNorm2d(4, affine=False)),
    (lambda: nn.BatchNorm2d(4, track_running_stats=False), lambda: torch.nn.BatchNorm2d(4, track_running_stats=False)),
    (lambda: nn.InstanceNorm2d(4), lambda: torch.nn.InstanceNorm2d(4)),
    (lambda: nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
     lambda: torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True)),
])
def test_state_dict_keys_and_init_equal_torch(make, make_torch):
    ours, theirs = make().state_dict(), make_torch().state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key].numpy(), err_msg=key)


def test_batchnorm_dtype_and_to():
    bn = nn.BatchNorm2d(2)
    assert bn.weight.dtype == bn.running_mean.dtype == np.float32
    bn.double()
    assert bn.weight.dtype == bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    y = bn(np.ones((2, 2, 2, 2), np.float32))
    assert y.dtype == np.float64
    assert int(bn.num_batches_tracked) == 1


def test_batchnorm_train_statistics(rng):
    """Training output per channel has mean 0 and (biased) variance var/(var+eps)."""
    bn = nn.BatchNorm2d(3, eps=1e-5, momentum=1.0, dtype=np.float64)
    x = 4 + 3 * rng.standard_normal((8, 3, 5, 5))
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-12)
    # momentum 1: the running statistics are this batch's, variance unbiased
    np.testing.assert_allclose(bn.running_var, x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)


# ---- odd inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: nn.BatchNorm2d(3, dtype=np.float64),
                                  lambda: nn.InstanceNorm2d(3, affine=True, dtype=np.float64)])
def test_noncontiguous_and_readonly_inputs(make, rng):
    base = rng.standard_normal((4, 3, 6, 10))
    contiguous = np.ascontiguousarray(base[::2, :, ::2, 1::3])
    readonly = contiguous.copy()
    readonly.flags.writeable = False
    views = {"sliced": base[::2, :, ::2, 1::3], "fortran": np.asfortranarray(contiguous),
             "transposed": np.ascontiguousarray(contiguous.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0),
             "readonly": readonly}
    g = rng.standard_normal(contiguous.shape)
    layer = make()
    expected = layer(contiguous)
    expected_grad = layer.backward(g)
    for name, view in views.items():
        before = view.copy()
        layer = make()
        np.testing.assert_array_equal(layer(view), expected, err_msg=name)
        np.testing.assert_array_equal(layer.backward(g.T.copy().T), expected_grad, err_msg=name)
        np.testing.assert_array_equal(view, before, err_msg=name)


def test_adain_does_not_modify_inputs(rng):
    content = rng.standard_normal((1, 2, 3, 3)).T.copy().T
    style = rng.standard_normal((1, 2, 4, 4))
    style.flags.writeable = False
    copies = content.copy(), style.copy()
    adain = nn.AdaIN()
    out = adain(content, style)
    adain.backward(np.ones_like(out))
    np.testing.assert_array_equal(content, copies[0])
    np.testing.assert_array_equal(style, copies[1])


# ---- errors ------------------------------------------------------------------------------------
def test_batchnorm_errors():
    with pytest.raises(ValueError, match=r"2-D or 3-D.*\(2, 3, 4, 5\)"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"4-D.*\(2, 3\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) expects input with 3 channels.*\(2, 4, 2, 2\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(TypeError, match="dtype int32"):
        nn.BatchNorm1d(3)(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(np.zeros((1, 3), np.float32))
    nn.BatchNorm1d(3).eval()(np.zeros((1, 3), np.float32))  # fine in eval mode
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(2, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm2d(2, eps=-1)
    with pytest.raises(TypeError, match="dtype"):
        nn.BatchNorm2d(2, dtype=np.int64)
    bn = nn.BatchNorm2d(2)
    with pytest.raises(RuntimeError, match="before forward"):
        bn.backward(np.zeros((2, 2, 2, 2), np.float32))
    bn(np.ones((2, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"grad_output.*\(2, 2, 2, 2\)"):
        bn.backward(np.zeros((2, 2, 2, 1), np.float32))


def test_instancenorm_and_adain_errors():
    with pytest.raises(ValueError, match=r"4-D.*\(2, 3, 4\)"):
        nn.InstanceNorm2d(3)(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        nn.InstanceNorm2d(3)(np.zeros((2, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        nn.InstanceNorm2d(3)(np.zeros((2, 3, 1, 1), np.float32))
    with pytest.raises(TypeError, match="content"):
        nn.AdaIN()(np.zeros((1, 2, 3, 3), np.int64), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"style.*\(N, C\) = \(1, 2\).*\(1, 3, 3, 3\)"):
        nn.AdaIN()(np.zeros((1, 2, 3, 3)), np.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"4-D style"):
        nn.AdaIN()(np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 9)))
    with pytest.raises(RuntimeError):
        nn.AdaIN().backward(np.zeros((1, 2, 3, 3)))


def test_functional_errors(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.batch_norm(x, None, None, weight=np.ones(4))
    with pytest.raises(ValueError, match="both"):
        F.batch_norm(x, np.zeros(3), None)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(x, np.zeros(2), np.ones(2))
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        F.batch_norm(x, frozen, np.ones(3), training=True)
    F.batch_norm(x, frozen, np.ones(3), training=False)  # eval only reads them
    with pytest.raises(ValueError, match="at least 2-D"):
        F.batch_norm(np.zeros(3), None, None, training=True)
    with pytest.raises(TypeError, match="input"):
        F.batch_norm(np.zeros((2, 3), np.int64), None, None, training=True)
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm(x, None, None, training=True, eps=0.0)


@pytest.mark.parametrize("make,shapes", [
    (lambda: nn.BatchNorm1d(3), [(4, 3, 2)]),
    (lambda: nn.BatchNorm2d(2).eval(), [(2, 2, 3, 3)]),
    (lambda: nn.InstanceNorm2d(2, affine=True), [(2, 2, 3, 3)]),
    (lambda: nn.AdaIN(), [(1, 2, 3, 3), (1, 2, 2, 4)]),
])
def test_dlcore_gradcheck_agrees(make, shapes, rng):
    """The library's own checker (float32 module, checked in float64) passes too."""
    layer = make()
    before = layer.state_dict()
    assert dlcore.gradcheck(layer, *[rng.standard_normal(s).astype(np.float32) for s in shapes])
    for key, value in layer.state_dict().items():
        assert value.dtype == before[key].dtype
