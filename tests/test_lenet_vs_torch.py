"""Integration: LeNet-5 trained for a few Adam steps in dlcore and in torch, from the same weights.

Every piece meets here: Conv2d, ReLU, MaxPool2d, Flatten, Linear, Sequential, the
CrossEntropyLoss module, backward through the whole chain, zero_grad and Adam. In float64
the losses and the final weights agree with torch's to ~1e-9.
"""
import numpy as np
import pytest

import dlcore
from dlcore import nn
from helpers import requires_torch, torch

STEPS = 5


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches: one OpenMP, BLAS and torch thread (2-thread regions on these sizes are
    several times slower on the shared 2-core machine). Thread invariance is the kernel
    tests' job."""
    from threadpoolctl import threadpool_limits

    previous = dlcore.get_num_threads()
    torch_previous = torch.get_num_threads() if torch is not None else None
    dlcore.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    dlcore.set_num_threads(previous)
    if torch is not None:
        torch.set_num_threads(torch_previous)


def lenet5(dtype=np.float64):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120, dtype=dtype),
        nn.ReLU(),
        nn.Linear(120, 84, dtype=dtype),
        nn.ReLU(),
        nn.Linear(84, 10, dtype=dtype),
    )


def torch_lenet5():
    T = torch.nn
    return T.Sequential(
        T.Conv2d(1, 6, 5, padding=2),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Conv2d(6, 16, 5),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Flatten(),
        T.Linear(400, 120),
        T.ReLU(),
        T.Linear(120, 84),
        T.ReLU(),
        T.Linear(84, 10),
    ).double()


def test_lenet5_summary_counts_61706_parameters():
    model = lenet5(np.float32)
    text = model.summary((1, 28, 28))
    assert model.num_parameters() == 61_706
    assert "Total params: 61,706" in text
    for shape in ("[1, 6, 28, 28]", "[1, 6, 14, 14]", "[1, 16, 10, 10]", "[1, 16, 5, 5]", "[1, 400]", "[1, 10]"):
        assert shape in text, shape
    assert "0 (Conv2d)" in text and "11 (Linear)" in text


@requires_torch
def test_lenet5_state_dict_keys_equal_torch():
    ours = lenet5().state_dict()
    theirs = torch_lenet5().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == tuple(v.shape) for k, v in theirs.items())


@requires_torch
def test_lenet5_adam_training_matches_torch(backend):
    dlcore.manual_seed(0)
    model = lenet5()
    tmodel = torch_lenet5()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    rng = np.random.default_rng(42)
    batches = [(rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)) for _ in range(STEPS)]

    criterion = nn.CrossEntropyLoss()
    optimizer = dlcore.optim.Adam(model.parameters(), lr=1e-3)
    tcriterion = torch.nn.CrossEntropyLoss()
    toptimizer = torch.optim.Adam(tmodel.parameters(), lr=1e-3)

    losses, tlosses = [], []
    for x, y in batches:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
        optimizer.step()
        losses.append(loss)

        toptimizer.zero_grad()
        tloss = tcriterion(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        toptimizer.step()
        tlosses.append(tloss.item())

    assert all(isinstance(v, float) for v in losses)
    np.testing.assert_allclose(losses, tlosses, rtol=1e-9, atol=0)
    assert losses[-1] != losses[0]  # it trained
    tstate = tmodel.state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, tstate[name].numpy(), rtol=1e-7, atol=1e-10, err_msg=name)
    # the weights did move, and by Adam-sized steps (~lr each)
    assert np.abs(model[0].weight.data).max() > 0


@requires_torch
def test_lenet5_gradients_match_torch_float32(backend):
    """One forward/backward in float32: every parameter gradient within float32 tolerance."""
    dlcore.manual_seed(1)
    model = lenet5(np.float32)
    tmodel = torch_lenet5().float()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(3)
    x, y = rng.random((4, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 4)
    criterion = nn.CrossEntropyLoss()
    model.zero_grad()
    loss = criterion(model(x), y)
    model.backward(criterion.backward())
    tloss = torch.nn.CrossEntropyLoss()(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-5)
    tparams = dict(tmodel.named_parameters())
    for name, p in model.named_parameters():
        t = tparams[name].grad.numpy()
        np.testing.assert_allclose(p.grad, t, rtol=1e-4, atol=1e-5 * np.abs(t).max(), err_msg=name)


def test_models_lenet5_is_the_same_network():
    """dlcore.models.LeNet5 (API.md) builds this file's network: same layers, keys, count."""
    ours, built = lenet5(np.float32), dlcore.models.LeNet5()
    assert [type(m).__name__ for m in built] == [type(m).__name__ for m in ours]
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert "Total params: 61,706" in built.summary((1, 28, 28))
