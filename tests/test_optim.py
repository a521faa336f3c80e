"""dlcore.optim: every optimizer against torch.optim, state_dict, param groups, checks."""
import numpy as np
import pytest
from helpers import assert_close, requires_torch, torch

import dlcore
from dlcore import optim
from dlcore.nn import Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2), ()]

# (dlcore class, torch class name, kwargs): every option that changes the code path.
CONFIGS = [
    (optim.SGD, "SGD", dict(lr=0.1)),
    (optim.SGD, "SGD", dict(lr=0.1, weight_decay=0.05)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (optim.Adagrad, "Adagrad", dict()),
    (optim.Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, eps=1e-6)),
    (optim.Adagrad, "Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    (optim.RMSprop, "RMSprop", dict()),
    (optim.RMSprop, "RMSprop", dict(lr=0.01, centered=True)),
    (optim.RMSprop, "RMSprop", dict(lr=0.01, momentum=0.9)),
    (optim.RMSprop, "RMSprop", dict(lr=0.01, alpha=0.3, eps=1e-6, weight_decay=0.1, momentum=0.5, centered=True)),
    (optim.Adam, "Adam", dict()),
    (optim.Adam, "Adam", dict(lr=0.01, amsgrad=True)),
    (optim.Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
    (optim.Adam, "Adam", dict(lr=0.01, betas=(0.3, 0.9), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, "AdamW", dict()),
    (optim.AdamW, "AdamW", dict(lr=0.01, weight_decay=0.0)),
    (optim.AdamW, "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, "AdamW", dict(lr=0.01, betas=(0.0, 0.5))),
]
CONFIG_IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for cls, _, kw in CONFIGS]


class Problem:
    """A random quadratic-ish loss per parameter: grad = a * (w - c) + 0.1 * cos(3 w) + noise."""

    def __init__(self, dtype, seed=0, shapes=SHAPES):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.dtype = dtype
        self.init = [rng.standard_normal(s).astype(dtype) for s in shapes]
        self.a = [rng.uniform(0.5, 2.0, s) for s in shapes]
        self.c = [rng.standard_normal(s) for s in shapes]

    def params(self):
        return [Parameter(w.copy()) for w in self.init]

    def grads(self, params):
        return [
            np.asarray(a * (p.data - c) + 0.1 * np.cos(3 * p.data) + 0.05 * self.rng.standard_normal(p.shape),
                       dtype=self.dtype)
            for p, a, c in zip(params, self.a, self.c)
        ]


def torch_params(params):
    return [torch.tensor(p.data.copy(), requires_grad=True) for p in params]


@requires_torch
@pytest.mark.parametrize("cls, torch_name, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_matches_torch_for_20_steps(backend, dtype, cls, torch_name, kwargs):
    problem = Problem(dtype, seed=len(kwargs))
    ours = problem.params()
    theirs = torch_params(ours)
    opt = cls(ours, **kwargs)
    topt = getattr(torch.optim, torch_name)(theirs, foreach=False, **kwargs)
    for step in range(20):
        for p, t, g in zip(ours, theirs, problem.grads(ours)):
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            assert p.data.dtype == dtype
            assert_close(p.data, t.detach().numpy(), dtype, scale=3, err_msg=f"step {step}, parameter {i}")
    # the state too, under torch's names
    for p, t in zip(ours, theirs):
        for key, value in topt.state[t].items():
            if key == "step":
                assert opt.state[p]["step"] == int(value)
            elif value is not None:
                assert_close(opt.state[p][key], value.numpy(), dtype, scale=3, err_msg=key)


@requires_torch
def test_param_groups_match_torch(backend):
    problem = Problem(np.float64, seed=1, shapes=[(4,), (3, 2), (5,)])
    ours = problem.params()
    theirs = torch_params(ours)
    opt = optim.SGD([{"params": ours[:2]}, {"params": [ours[2]], "lr": 0.3, "momentum": 0.5}], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([{"params": theirs[:2]}, {"params": [theirs[2]], "lr": 0.3, "momentum": 0.5}],
                           lr=0.1, momentum=0.9, foreach=False)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.3]
    assert opt.param_groups[1]["momentum"] == 0.5 and opt.param_groups[0]["momentum"] == 0.9
    for _ in range(10):
        for p, t, g in zip(ours, theirs, problem.grads(ours)):
            p.grad, t.grad = g, torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    for p, t in zip(ours, theirs):
        assert_close(p.data, t.detach().numpy())


def test_add_param_group_and_module_parameters():
    model = dlcore.nn.Linear(3, 2) if hasattr(dlcore.nn, "Linear") else None
    if model is None:
        pytest.skip("dlcore.nn.Linear not available yet")
    opt = optim.Adam(model.parameters(), lr=0.01)
    assert len(opt.param_groups[0]["params"]) == 2
    extra = Parameter(np.zeros(4, np.float32))
    opt.add_param_group({"params": extra, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [extra]})


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adagrad, optim.RMSprop, optim.Adam, optim.AdamW])
def test_params_without_grad_are_skipped(backend, cls):
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = cls([a, b], lr=0.1, **({"momentum": 0.9} if cls is optim.SGD else {}))
    a.grad = np.full(3, 0.5)
    opt.step()
    np.testing.assert_array_equal(b.data, np.ones(2))
    assert (a.data != 1).all()
    if cls is optim.Adagrad:  # torch creates Adagrad's state with the optimizer, at step 0
        assert opt.state[b]["step"] == 0 and opt.state[a]["step"] == 1
    else:
        assert not opt.state.get(b)


def test_zero_grad_and_lr_property():
    a, b = Parameter(np.ones(3, np.float32)), Parameter(np.ones(2, np.float32))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    opt.zero_grad()
    assert a.grad.dtype == np.float32 and (a.grad == 0).all() and b.grad.shape == (2,)
    opt.zero_grad(set_to_none=True)
    assert a.grad is None
    assert opt.lr == 0.1
    opt.lr = 0.01
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.lr = -1


def test_l1_decay_adds_sign_of_the_weight(backend):
    w = np.array([1.5, -2.0, 0.0, 0.25])
    g = np.array([0.1, 0.1, -0.3, 0.0])
    for cls, kw in [(optim.SGD, dict(lr=0.1, momentum=0.9)), (optim.Adam, dict(lr=0.1))]:
        with_l1, plain = Parameter(w.copy()), Parameter(w.copy())
        opt_l1, opt_plain = cls([with_l1], l1_decay=0.2, **kw), cls([plain], **kw)
        for _ in range(3):
            with_l1.grad = g.copy()
            plain.grad = g + 0.2 * np.sign(plain.data)
            opt_l1.step()
            opt_plain.step()
            np.testing.assert_array_equal(with_l1.grad, g)  # the stored gradient is not changed
        assert_close(with_l1.data, plain.data)
    with pytest.raises(ValueError, match="Invalid l1_decay value"):
        optim.Adam([Parameter(w)], l1_decay=-1)


def test_grad_conversion_and_errors(backend):
    p = Parameter(np.ones((2, 3), np.float32))
    opt = optim.SGD([p], lr=0.5)
    p.grad = np.asfortranarray(np.ones((2, 3), np.float64))  # other precision, Fortran order: cast
    opt.step()
    assert p.data.dtype == np.float32
    np.testing.assert_array_equal(p.data, np.full((2, 3), 0.5, np.float32))
    p.grad = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        opt.step()
    p.grad = np.ones((2, 3), np.int64)
    with pytest.raises(TypeError, match="floating dtype"):
        opt.step()


def test_noncontiguous_and_readonly_parameter_data(backend):
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    p = Parameter(base.copy())
    p.data = np.asfortranarray(base)
    q = Parameter(base.copy())
    q.data.flags.writeable = False
    ref = Parameter(base.copy())
    opt = optim.Adam([p, q, ref], lr=0.1)
    for param in (p, q, ref):
        param.grad = np.ones((3, 4))
    opt.step()
    assert_close(p.data, ref.data)
    assert_close(q.data, ref.data)
    assert q.data.flags.writeable


def test_state_follows_a_dtype_change(backend):
    p = Parameter(np.ones(4, np.float32))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones(4, np.float32)
    opt.step()
    p.data = p.data.astype(np.float64)  # what Module.double() does
    p.grad = np.ones(4)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == np.float64 and p.data.dtype == np.float64


# ---- hyperparameter checks ----------------------------------------------------------------

P = Parameter(np.zeros(2))
INVALID = [
    (optim.SGD, dict(lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    (optim.SGD, dict(lr=0.1, momentum=-1), ValueError, "Invalid momentum value"),
    (optim.SGD, dict(lr=0.1, weight_decay=-1), ValueError, "Invalid weight_decay value"),
    (optim.SGD, dict(lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "Nesterov"),
    (optim.SGD, dict(lr="fast"), TypeError, "lr must be a real number"),
    (optim.SGD, dict(lr=float("nan")), ValueError, "Invalid learning rate"),
    (optim.Adagrad, dict(lr_decay=-1), ValueError, "Invalid lr_decay value"),
    (optim.Adagrad, dict(eps=-1), ValueError, "Invalid epsilon value"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), ValueError, "Invalid initial_accumulator_value"),
    (optim.RMSprop, dict(alpha=-0.1), ValueError, "Invalid alpha value"),
    (optim.RMSprop, dict(momentum=-0.1), ValueError, "Invalid momentum value"),
    (optim.RMSprop, dict(eps=-1), ValueError, "Invalid epsilon value"),
    (optim.Adam, dict(betas=(1.0, 0.999)), ValueError, "Invalid beta parameter at index 0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1"),
    (optim.Adam, dict(betas=0.9), ValueError, "betas must be a pair"),
    (optim.Adam, dict(weight_decay=-1), ValueError, "Invalid weight_decay value"),
    (optim.AdamW, dict(lr=-1), ValueError, "Invalid learning rate"),
    (optim.AdamW, dict(eps=-1e-8), ValueError, "Invalid epsilon value"),
]


@pytest.mark.parametrize("cls, kwargs, error, match", INVALID)
def test_invalid_hyperparameters_raise(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls([P], **kwargs)


def test_invalid_params_raise():
    with pytest.raises(TypeError, match="iterable of Parameters"):
        optim.SGD(P, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="dlcore.nn.Parameter"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="same parameter twice"):
        optim.SGD([P, P], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.SGD([{"params": [P], "lr": -1}], lr=0.1)


# ---- state_dict ----------------------------------------------------------------------------

ROUND_TRIP = [
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.01)),
]


def _save_and_load(state, tmp_path):
    """Through dlcore.save/load when they exist (another helper writes them)."""
    path = tmp_path / "opt.npz"
    try:
        dlcore.save({"optimizer": state}, path)
    except NotImplementedError:
        return state, False
    return dlcore.load(path)["optimizer"], True


@pytest.mark.parametrize("cls, kwargs", ROUND_TRIP, ids=[c.__name__ for c, _ in ROUND_TRIP])
def test_state_dict_round_trip_continues_identically(backend, cls, kwargs, tmp_path):
    problem = Problem(np.float32, seed=5)
    params = problem.params()
    opt = cls(params, **kwargs)
    for _ in range(5):
        for p, g in zip(params, problem.grads(params)):
            p.grad = g
        opt.step()
    opt.lr = kwargs["lr"] * 0.5  # a changed hyperparameter must come back too
    state = opt.state_dict()

    # structure: string keys, copies of the arrays, plain Python leaves
    assert set(state) == {"state", "param_groups"}
    assert all(isinstance(k, str) for k in state["state"])
    assert state["param_groups"][0]["params"] == list(range(len(params)))
    first = state["state"]["0"]
    assert isinstance(first.get("step", 0), int)
    arrays = {k: v for k, v in first.items() if isinstance(v, np.ndarray)}
    assert arrays and all(v.shape == params[0].shape for v in arrays.values())
    key = next(iter(arrays))
    assert not np.shares_memory(arrays[key], opt.state[params[0]][key])

    loaded, through_file = _save_and_load(state, tmp_path)
    if through_file:
        assert loaded["param_groups"][0]["lr"] == opt.lr
    clones = [Parameter(p.data.copy()) for p in params]
    opt2 = cls(clones, lr=123.0) if cls is optim.SGD else cls(clones)
    opt2.load_state_dict(loaded)
    assert opt2.lr == opt.lr
    assert {k: v for k, v in opt2.param_groups[0].items() if k != "params"} == \
        {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    for _ in range(5):
        grads = problem.grads(params)
        for p, q, g in zip(params, clones, grads):
            p.grad, q.grad = g, g.copy()
        opt.step()
        opt2.step()
    for p, q in zip(params, clones):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_holds_plain_python_hyperparameters():
    opt = optim.Adam([Parameter(np.zeros(2))], lr=np.float32(0.5), betas=(np.float64(0.8), 0.9))
    group = opt.state_dict()["param_groups"][0]
    assert type(group["lr"]) is float and group["betas"] == (0.8, 0.9)
    assert all(type(b) is float for b in group["betas"])


def test_load_state_dict_checks():
    a, b = Parameter(np.zeros(3)), Parameter(np.zeros(2))
    opt = optim.Adam([a, b])
    a.grad = b.grad = None
    a.grad, b.grad = np.ones(3), np.ones(2)
    opt.step()
    state = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(state)
    with pytest.raises(ValueError, match="has 2 parameters"):
        optim.Adam([a]).load_state_dict(state)
    bad = opt.state_dict()
    bad["state"]["1"]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError, match="exp_avg"):
        optim.Adam([a, b]).load_state_dict(bad)
    with pytest.raises(KeyError, match="param_groups"):
        optim.Adam([a, b]).load_state_dict({"state": {}})


@requires_torch
def test_loads_a_converted_torch_state_dict():
    problem = Problem(np.float64, seed=2, shapes=[(3,), (2, 2)])
    ours = problem.params()
    theirs = torch_params(ours)
    topt = torch.optim.Adam(theirs, lr=0.01, foreach=False)
    for _ in range(3):
        for t, g in zip(theirs, problem.grads(ours)):
            t.grad = torch.from_numpy(g)
        topt.step()
    tstate = topt.state_dict()
    converted = {
        "state": {k: {n: v.numpy() for n, v in s.items()} for k, s in tstate["state"].items()},
        "param_groups": tstate["param_groups"],
    }
    for p, t in zip(ours, theirs):
        p.data = t.detach().numpy().copy()
    opt = optim.Adam(ours)
    opt.load_state_dict(converted)
    for _ in range(3):
        for p, t, g in zip(ours, theirs, problem.grads(ours)):
            p.grad, t.grad = g, torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    for p, t in zip(ours, theirs):
        assert_close(p.data, t.detach().numpy())
