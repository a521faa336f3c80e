"""dlcore.optim.lr_scheduler: the same learning-rate sequences as torch's schedulers."""
import math
import warnings

import numpy as np
import pytest
from helpers import requires_torch, torch

import dlcore
from dlcore import optim
from dlcore.nn import Parameter
from dlcore.optim import lr_scheduler

CASES = [
    ("StepLR", dict(step_size=7)),
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("CosineAnnealingLR", dict(T_max=1)),
]


def _optimizers(lrs=(0.1, 0.03)):
    ours = optim.SGD([{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs], lr=lrs[0], momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs],
                             lr=lrs[0], momentum=0.9)
    return ours, theirs


@requires_torch
@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{kw}" for n, kw in CASES])
def test_sequences_equal_torch(name, kwargs):
    ours, theirs = _optimizers()
    sched = getattr(lr_scheduler, name)(ours, **kwargs)
    tsched = getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs)
    assert sched.get_last_lr() == tsched.get_last_lr()
    for epoch in range(30):
        ours.step()
        theirs.step()
        sched.step()
        tsched.step()
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-15, atol=0,
                                   err_msg=f"epoch {epoch}")
        assert [g["lr"] for g in ours.param_groups] == sched.get_last_lr()
        assert ours.lr == sched.get_last_lr()[0]


def test_closed_forms():
    # The recursions agree with the textbook formulas they approximate.
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.2)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=12, eta_min=0.02)
    for t in range(1, 13):
        sched.step()
        assert math.isclose(sched.get_last_lr()[0], 0.02 + 0.09 * (1 + math.cos(math.pi * t / 12)), rel_tol=1e-12)
    opt = optim.Adam([Parameter(np.zeros(1))], lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    for t in range(1, 13):
        sched.step()
        assert math.isclose(opt.lr, 0.1 * 0.5 ** (t // 4))


def test_scheduler_state_dict_round_trip(tmp_path):
    def make():
        opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
        return opt, lr_scheduler.CosineAnnealingLR(opt, T_max=9, eta_min=0.001)

    opt, sched = make()
    for _ in range(4):
        sched.step()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    try:
        dlcore.save(state, tmp_path / "ckpt.npz")
        state = dlcore.load(tmp_path / "ckpt.npz")
    except NotImplementedError:
        pass
    opt2, sched2 = make()
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.last_epoch == 4 and opt2.lr == opt.lr
    for _ in range(10):
        sched.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()


def test_scheduler_checks():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match="dlcore.optim.Optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="T_max must be an int"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=2.5)
    with pytest.raises(TypeError, match="gamma must be a real number"):
        lr_scheduler.ExponentialLR(opt, gamma="0.9")
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.ExponentialLR(opt, gamma=0.9, last_epoch=3)


@requires_torch
def test_resuming_with_last_epoch_matches_torch():
    ours, theirs = _optimizers()
    for group in ours.param_groups:
        group["initial_lr"] = group["lr"]
    for group in theirs.param_groups:
        group["initial_lr"] = group["lr"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = lr_scheduler.CosineAnnealingLR(ours, T_max=10, last_epoch=4)
        tsched = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=10, last_epoch=4)
        for _ in range(5):
            np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-15)
            sched.step()
            tsched.step()
