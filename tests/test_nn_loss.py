"""Loss modules: gradcheck, the torch oracle (value and dLoss/dpred), and the calling contract."""
import numpy as np
import pytest

import dlcore
from dlcore import nn
from helpers import assert_close, requires_torch, torch

REDUCTIONS = ["mean", "sum", "none"]
N, C = 6, 4


def make_case(name, rng, dtype=np.float64):
    """(pred, target) suited to each loss."""
    if name in ("MSELoss", "L1Loss"):
        pred = rng.standard_normal((N, 3))
        target = rng.standard_normal((N, 3))
    elif name == "BCELoss":
        pred = 1 / (1 + np.exp(-rng.standard_normal((N, 3))))
        target = rng.uniform(0, 1, (N, 3))
        target[0] = [0.0, 1.0, 0.0]
    elif name == "BCEWithLogitsLoss":
        pred = 3 * rng.standard_normal((N, 3))
        target = rng.uniform(0, 1, (N, 3))
        target[0] = [0.0, 1.0, 1.0]
    elif name == "NLLLoss":
        logits = rng.standard_normal((N, C))
        pred = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        target = rng.integers(0, C, N)
    else:  # CrossEntropyLoss, MultiMarginLoss
        pred = rng.standard_normal((N, C))
        target = rng.integers(0, C, N)
    pred = pred.astype(dtype)
    if target.dtype.kind == "f":
        target = target.astype(dtype)
    return pred, target


LOSSES = ["MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss", "MultiMarginLoss"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradcheck(backend, rng, name, reduction):
    pred, target = make_case(name, rng)
    assert dlcore.gradcheck(getattr(nn, name)(reduction), pred, target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "name,kwargs",
    [("MultiMarginLoss", dict(p=2, margin=0.7)), ("MultiMarginLoss", dict(margin=0.3)),
     ("CrossEntropyLoss", dict(label_smoothing=0.1))],
)
def test_loss_gradcheck_extra_arguments(backend, rng, name, kwargs, reduction):
    pred, target = make_case(name, rng)
    assert dlcore.gradcheck(getattr(nn, name)(reduction, **kwargs), pred, target)


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_matches_torch(backend, dtype, rng, name, reduction):
    pred, target = make_case(name, rng, dtype)
    criterion = getattr(nn, name)(reduction)
    tcriterion = getattr(torch.nn, name)(reduction=reduction)
    loss = criterion(pred, target)
    pt = torch.tensor(pred, requires_grad=True)
    tt = torch.from_numpy(target)
    lt = tcriterion(pt, tt)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == tuple(lt.shape)
        assert_close(loss, lt.detach().numpy(), dtype)
        g = rng.standard_normal(loss.shape).astype(dtype)
        lt.backward(torch.from_numpy(g))
        grad = criterion.backward(g)
    else:
        assert isinstance(loss, float)
        assert_close(loss, lt.item(), dtype, scale=10)
        lt.backward(torch.tensor(2.5, dtype=pt.dtype))
        grad = criterion.backward(2.5)
    assert grad.shape == pred.shape
    assert_close(grad, pt.grad.numpy(), dtype)


@requires_torch
def test_loss_extra_arguments_match_torch(rng):
    pred, target = make_case("MultiMarginLoss", rng)
    for kwargs in [dict(p=2), dict(margin=0.5), dict(p=2, margin=2.0)]:
        ours = nn.MultiMarginLoss(**kwargs)
        pt = torch.tensor(pred, requires_grad=True)
        lt = torch.nn.MultiMarginLoss(**kwargs)(pt, torch.from_numpy(target))
        lt.backward()
        assert_close(ours(pred, target), lt.item())
        assert_close(ours.backward(), pt.grad.numpy())
    ours = nn.CrossEntropyLoss(label_smoothing=0.2)
    pt = torch.tensor(pred, requires_grad=True)
    lt = torch.nn.CrossEntropyLoss(label_smoothing=0.2)(pt, torch.from_numpy(target))
    lt.backward()
    assert_close(ours(pred, target), lt.item())
    assert_close(ours.backward(), pt.grad.numpy())


@pytest.mark.parametrize("name", LOSSES)
def test_loss_backward_defaults_and_contract(rng, name):
    pred, target = make_case(name, rng)
    criterion = getattr(nn, name)()
    with pytest.raises(RuntimeError, match="before"):
        criterion.backward()
    loss = criterion(pred, target)
    assert isinstance(loss, float)
    default = criterion.backward()
    np.testing.assert_allclose(criterion.backward(3.0), 3 * default, rtol=1e-12)
    np.testing.assert_allclose(criterion.backward(np.array(3.0)), 3 * default, rtol=1e-12)
    with pytest.raises(ValueError, match="scalar"):
        criterion.backward(np.ones(2))
    none = getattr(nn, name)("none")
    per = none(pred, target)
    g = none.backward()
    np.testing.assert_allclose(g, none.backward(np.ones(per.shape)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"loss's shape"):
        none.backward(np.ones(per.shape + (2,)))
    # "mean" is the average of "none": the same gradient up to 1/len
    summed = getattr(nn, name)("sum")
    summed(pred, target)
    np.testing.assert_allclose(summed.backward(), g, rtol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_rejects_bad_inputs(rng, name):
    pred, target = make_case(name, rng)
    criterion = getattr(nn, name)()
    with pytest.raises(TypeError):
        criterion(pred.astype(np.int64), target)
    with pytest.raises(ValueError):
        criterion(pred[:-1], target)
    with pytest.raises(ValueError, match="reduction"):
        getattr(nn, name)("average")


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss", "MultiMarginLoss"])
def test_classification_losses_reject_bad_labels(rng, name):
    pred, target = make_case(name, rng)
    bad = target.copy()
    bad[0] = C
    with pytest.raises(ValueError):
        getattr(nn, name)()(pred, bad)
    with pytest.raises(TypeError):
        getattr(nn, name)()(pred, target.astype(np.float64))


def test_loss_dtype_follows_prediction(rng):
    pred, target = make_case("CrossEntropyLoss", rng, np.float32)
    criterion = nn.CrossEntropyLoss()
    criterion(pred, target)
    assert criterion.backward().dtype == np.float32


def test_loss_non_contiguous_inputs(rng):
    for name in LOSSES:
        pred, target = make_case(name, rng)
        fpred = np.asfortranarray(pred)
        criterion = getattr(nn, name)()
        a = criterion(fpred, target)
        ga = criterion.backward()
        b = criterion(np.ascontiguousarray(pred), target)
        assert a == b, name
        np.testing.assert_array_equal(ga, criterion.backward(), err_msg=name)


def test_loss_module_in_a_training_step(rng):
    dlcore.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8, dtype=np.float64), nn.Tanh(), nn.Linear(8, 3, dtype=np.float64))
    x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    criterion = nn.CrossEntropyLoss()
    first = criterion(model(x), y)
    for _ in range(30):
        model.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward())
        for p in model.parameters():
            p.data -= 0.5 * p.grad
    assert criterion(model(x), y) < 0.5 * first


WEIGHTED = [
    ("CrossEntropyLoss", dict(weight="C")),
    ("CrossEntropyLoss", dict(ignore_index=1)),
    ("CrossEntropyLoss", dict(weight="C", ignore_index=2, label_smoothing=0.1)),
    ("NLLLoss", dict(weight="C")),
    ("NLLLoss", dict(weight="C", ignore_index=0)),
    ("MultiMarginLoss", dict(weight="C", p=2)),
    ("BCELoss", dict(weight="row")),
    ("BCEWithLogitsLoss", dict(weight="row", pos_weight="row")),
]


def _weights(kwargs, rng):
    out = dict(kwargs)
    for key, kind in kwargs.items():
        if kind == "C":
            out[key] = rng.uniform(0.5, 2.0, C)
        elif kind == "row":
            out[key] = rng.uniform(0.5, 2.0, 3)
    return out


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kwargs", WEIGHTED, ids=[f"{n}-{'-'.join(k)}" for n, k in WEIGHTED])
def test_weighted_losses_match_torch(rng, name, kwargs, reduction):
    pred, target = make_case(name, rng)
    if "ignore_index" in kwargs:
        target[:2] = kwargs["ignore_index"]
    kwargs = _weights(kwargs, rng)
    criterion = getattr(nn, name)(reduction, **kwargs)
    tkwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    pt = torch.tensor(pred, requires_grad=True)
    lt = getattr(torch.nn, name)(reduction=reduction, **tkwargs)(pt, torch.from_numpy(target))
    loss = criterion(pred, target)
    g = np.ones(np.shape(loss)) if reduction == "none" else 1.0
    lt.backward(torch.from_numpy(np.asarray(g)) if reduction == "none" else None)
    assert_close(loss, lt.detach().numpy())
    assert_close(criterion.backward(), pt.grad.numpy())
    assert dlcore.gradcheck(criterion, pred, target)
    # torch keeps class weights as buffers
    tstate = getattr(torch.nn, name)(**tkwargs).state_dict()
    assert list(criterion.state_dict()) == list(tstate)


def test_loss_weight_validation():
    with pytest.raises(TypeError, match="weight"):
        nn.CrossEntropyLoss(weight=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="weight"):
        nn.NLLLoss(weight=np.ones((2, 2)))
    with pytest.raises(TypeError, match="ignore_index"):
        nn.CrossEntropyLoss(ignore_index=1.5)
    with pytest.raises(ValueError, match="p"):
        nn.MultiMarginLoss(p=3)
