"""Module and Parameter: registration, names, state_dict (torch's keys), load errors, dtype, repr."""
import numpy as np
import pytest

from dlcore import nn
from helpers import requires_torch, torch


def mixed_model(dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, dtype=dtype), nn.Tanh())),
        nn.Residual(nn.Conv2d(4, 2, 1, dtype=dtype), shortcut=nn.Conv2d(4, 2, 1, bias=False, dtype=dtype)),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(2 * 3 * 3, 8, dtype=dtype),
        nn.LeakyReLU(0.1),
        nn.Sequential(nn.Linear(8, 5, bias=False, dtype=dtype), nn.Identity()),
        nn.BatchNorm1d(5, dtype=dtype),
        nn.Linear(5, 3, dtype=dtype),
    )


def torch_mixed_model():
    class Residual(torch.nn.Module):
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block = block
            if shortcut is not None:
                self.shortcut = shortcut

        def forward(self, x):
            skip = self.shortcut(x) if hasattr(self, "shortcut") else x
            return self.block(x) + skip

    T = torch.nn
    return T.Sequential(
        T.Conv2d(1, 4, 3, padding=1),
        T.BatchNorm2d(4),
        T.ReLU(),
        Residual(T.Sequential(T.Conv2d(4, 4, 3, padding=1), T.Tanh())),
        Residual(T.Conv2d(4, 2, 1), shortcut=T.Conv2d(4, 2, 1, bias=False)),
        T.MaxPool2d(2),
        T.Flatten(),
        T.Dropout(0.2),
        T.Linear(2 * 3 * 3, 8),
        T.LeakyReLU(0.1),
        T.Sequential(T.Linear(8, 5, bias=False), T.Identity()),
        T.BatchNorm1d(5),
        T.Linear(5, 3),
    )


# ---------------------------------------------------------------------------- Parameter
def test_parameter_basics():
    data = np.ones((2, 3), np.float32)
    p = nn.Parameter(data)
    assert p.data is data and p.grad is None and p.shape == (2, 3) and p.dtype == np.float32
    assert np.asarray(p) is data
    p.accumulate_grad(np.full((2, 3), 2.0, np.float32))
    p.accumulate_grad(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(p.grad, np.full((2, 3), 3.0))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        p.accumulate_grad(np.ones(3))  # no silent broadcasting
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Parameter(np.arange(3))
    ro = np.ones(3)
    ro.setflags(write=False)
    q = nn.Parameter(ro)
    assert q.data.flags.writeable and q.data is not ro
    assert nn.Parameter(np.ones((3, 2)).T).data.flags.c_contiguous


# ---------------------------------------------------------------------------- registration
def test_registration_and_names():
    model = mixed_model()
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert "3.block.0.weight" in names and "4.shortcut.weight" in names and "4.shortcut.bias" not in names
    assert "10.0.weight" in names and "10.0.bias" not in names
    assert [n for n, _ in model.named_buffers()][:2] == ["1.running_mean", "1.running_var"]
    assert len(list(model.parameters())) == len(names)
    assert next(iter(model.children())) is model[0]
    assert [n for n, _ in model.named_modules()][:5] == ["", "0", "1", "2", "3"]


def test_shared_module_counted_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert model.num_parameters() == 12
    # state_dict keeps every path, as torch
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_setattr_rules():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        layer.weight = np.zeros((2, 2))
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    layer.bias = nn.Parameter(np.zeros(2, np.float32))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]

    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("stat", np.zeros(3))
            self.plain = [1, 2]

    m = WithBuffer()
    m.stat = np.ones(3)  # assigning to a buffer replaces its value, it stays a buffer
    assert list(m.state_dict()) == ["stat"] and m.state_dict()["stat"].sum() == 3
    with pytest.raises(TypeError, match="buffer 'stat'"):
        m.stat = [1, 2, 3]
    del m.stat
    assert list(m.state_dict()) == []

    class NoSuper(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super"):
        NoSuper()


# ---------------------------------------------------------------------------- state_dict
@requires_torch
def test_state_dict_keys_shapes_equal_torch():
    model, tmodel = mixed_model(), torch_mixed_model()
    ours = model.state_dict()
    theirs = {k: v for k, v in tmodel.state_dict().items() if not k.endswith("num_batches_tracked")}
    ours_no_nbt = [k for k in ours if not k.endswith("num_batches_tracked")]
    assert ours_no_nbt == list(theirs)
    for k, v in theirs.items():
        assert ours[k].shape == tuple(v.shape), k


@requires_torch
def test_load_torch_state_dict_and_same_outputs(rng):
    model, tmodel = mixed_model(np.float64), torch_mixed_model().double()
    # non-trivial running statistics
    with torch.no_grad():
        tmodel.train()
        tmodel(torch.randn(8, 1, 6, 6, dtype=torch.float64))
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    for k, v in tmodel.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(model.state_dict()[k], v.numpy())
    model.eval()
    tmodel.eval()
    x = rng.standard_normal((4, 1, 6, 6))
    np.testing.assert_allclose(model(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_state_dict_returns_copies():
    layer = nn.Linear(2, 2)
    state = layer.state_dict()
    state["weight"][...] = 42
    assert not np.any(layer.weight.data == 42)


def test_load_state_dict_keeps_dtype_and_objects():
    layer = nn.Linear(3, 2)  # float32
    weight_obj, data_obj = layer.weight, layer.weight.data
    state = {"weight": np.arange(6, dtype=np.float64).reshape(2, 3), "bias": np.array([1.0, 2.0])}
    missing, unexpected = layer.load_state_dict(state)
    assert missing == [] and unexpected == []
    assert layer.weight is weight_obj and layer.weight.data is data_obj  # an optimizer's references stay valid
    assert layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, state["weight"])


def test_load_state_dict_errors():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    good = model.state_dict()
    before = {k: v.copy() for k, v in good.items()}

    missing = dict(good)
    del missing["2.bias"]
    with pytest.raises(KeyError, match="2.bias"):
        model.load_state_dict(missing)
    extra = dict(good, **{"3.weight": np.zeros(1)})
    with pytest.raises(KeyError, match="3.weight"):
        model.load_state_dict(extra)
    # strict=False ignores both, and reports them
    assert model.load_state_dict(missing, strict=False) == (["2.bias"], [])
    assert model.load_state_dict(extra, strict=False) == ([], ["3.weight"])

    bad = {k: v + 1 for k, v in good.items()}
    bad["2.weight"] = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"2\.weight.*\(1, 2\).*\(2, 1\)"):
        model.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"2\.weight"):
        model.load_state_dict(bad, strict=False)
    # nothing was half-loaded
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError):
        model.load_state_dict([1, 2])


def test_num_batches_tracked_accepted_without_module_buffer():
    layer = nn.Linear(2, 2)
    state = dict(layer.state_dict(), **{"num_batches_tracked": np.array(3)})
    layer.load_state_dict(state)


# ---------------------------------------------------------------------------- modes and dtype
def test_train_eval_propagate():
    model = mixed_model()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError):
        model.train("no")


def test_to_float_double(rng):
    model = mixed_model()
    params = list(model.parameters())
    x = rng.standard_normal((2, 1, 6, 6))
    model.eval()
    out32 = model(x)
    assert out32.dtype == np.float32
    model(x.astype(np.float32))
    model.backward(np.ones_like(out32))
    assert model.double() is model
    assert list(model.parameters()) == params  # same Parameter objects
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in params)
    assert all(b.dtype == np.float64 for b in model.buffers() if b.dtype.kind == "f")
    assert model.state_dict()["1.num_batches_tracked"].dtype == np.int64
    out64 = model(x)
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out64, out32, rtol=1e-4, atol=1e-5)
    assert model.float().dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to(np.int32)
    with pytest.raises(TypeError):
        model.to("cuda")


def test_zero_grad_sets_zeros():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    assert all(p.grad is None for p in model.parameters())
    model.zero_grad()
    for p in model.parameters():
        assert p.grad.shape == p.shape and p.grad.dtype == p.dtype and not p.grad.any()


# ---------------------------------------------------------------------------- repr
def test_repr_like_torch():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Residual(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))))
    expected = (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=2, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Residual(\n"
        "    (block): Sequential(\n"
        "      (0): Linear(in_features=2, out_features=2, bias=True)\n"
        "      (1): Dropout(p=0.1, inplace=False)\n"
        "    )\n"
        "  )\n"
        ")"
    )
    assert repr(model) == expected
    if torch is not None:
        tseq = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
        assert repr(nn.Sequential(nn.Linear(3, 2), nn.ReLU())) == repr(tseq)
        assert repr(nn.LeakyReLU(0.2)) == repr(torch.nn.LeakyReLU(0.2))
        assert repr(nn.Flatten()) == repr(torch.nn.Flatten())
        assert repr(nn.Softmax(dim=1)) == repr(torch.nn.Softmax(dim=1))
        assert repr(nn.Linear(3, 2, bias=False)) == repr(torch.nn.Linear(3, 2, bias=False))


# ---------------------------------------------------------------------------- summary
def test_summary_table(capsys):
    model = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(12, 5), nn.ReLU()),
        nn.Residual(nn.Linear(5, 5)),
        nn.Dropout(),
        nn.Linear(5, 2),
    )
    model.train()
    text = model.summary((3, 4), batch_size=2)
    printed = capsys.readouterr().out
    assert text in printed
    assert "Total params: 107" in text  # 65 + 30 + 12
    assert "1.0 (Linear)" in text and "2.block (Linear)" in text and "2 (Residual)" in text
    assert "(Sequential)" not in text
    assert "[2, 5]" in text and "[2, 12]" in text
    assert all(m.training for m in model.modules())  # modes restored
    assert "forward" not in model[4].__dict__  # no instrumentation left
    with pytest.raises(RuntimeError):
        model.backward(np.ones((2, 2), np.float32))  # the summary's forward does not count


def test_summary_validates():
    from dlcore.nn.summary import summary

    with pytest.raises(TypeError):
        summary("model", (3,))
    with pytest.raises(ValueError, match="input_shape"):
        summary(nn.Linear(3, 2), (0,))
    with pytest.raises(ValueError):
        summary(nn.Linear(3, 2), (4,))
    assert "Total params: 8" in summary(nn.Linear(3, 2), 3, print_fn=None)


def test_helpers_register_apply_recurse_deepcopy():
    import copy

    m = nn.Module()
    m.register_parameter("scale", nn.Parameter(np.ones(2)))
    m.add_module("inner", nn.Linear(2, 2))
    m.register_buffer("count", np.zeros(1))
    assert list(m.state_dict()) == ["scale", "count", "inner.weight", "inner.bias"]
    assert [n for n, _ in m.named_parameters(recurse=False)] == ["scale"]
    assert len(list(m.parameters())) == 3
    with pytest.raises(ValueError, match="'a.b'"):
        m.add_module("a.b", nn.ReLU())
    with pytest.raises(TypeError):
        m.register_parameter("w", np.ones(2))
    with pytest.raises(TypeError):
        m.register_buffer("b", [1.0])
    visited = []
    assert m.apply(lambda mod: visited.append(type(mod).__name__)) is m
    assert visited == ["Linear", "Module"]
    m.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in m.parameters())
    twin = copy.deepcopy(m)
    twin.inner.weight.data[...] = 0
    assert m.inner.weight.data.any() and list(twin.state_dict()) == list(m.state_dict())


# ---------------------------------------------------------------------------- forward hooks
def test_forward_hooks_observe_replace_and_remove():
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = np.ones((4, 3))
    calls = []
    pre = layer.register_forward_pre_hook(lambda m, args: calls.append(("pre", args[0].shape)))
    post = layer.register_forward_hook(lambda m, args, out: calls.append(("post", m is layer, out.shape)))
    out = layer(x)
    assert calls == [("pre", (4, 3)), ("post", True, (4, 2))]
    pre.remove()
    post.remove()
    post.remove()  # twice is harmless
    layer(x)
    assert len(calls) == 2
    # a hook's return value replaces the inputs / the output, as in torch
    with layer.register_forward_pre_hook(lambda m, args: (args[0] * 0,)):
        np.testing.assert_array_equal(layer(x), layer.bias.data + np.zeros((4, 2)))
    with layer.register_forward_hook(lambda m, args, out: out + 1):
        np.testing.assert_allclose(layer(x), out + 1)
    np.testing.assert_allclose(layer(x), out)  # the with-blocks removed both
    with pytest.raises(TypeError, match="hook must be callable"):
        layer.register_forward_hook("print")


def test_summary_leaves_no_hooks_and_skips_pass_through_containers():
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Residual(nn.Linear(4, 4)))
    text = model.summary((3,))
    rows = [line.split()[0] for line in text.splitlines()[4:] if line[:1].isdigit()]
    assert rows == ["0.0", "0.1", "1.block", "1"]  # Residual's own row (the sum); no Sequential rows
    assert all(not m._forward_hooks for m in model.modules())


def test_importing_dlcore_nn_has_no_import_cycle():
    """Walk the import statements (also those inside functions) of every dlcore module
    reachable from dlcore.nn; a cycle means modules that cannot be read, or loaded, alone."""
    import ast
    import importlib.util
    import pathlib

    def source(module):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        return pathlib.Path(spec.origin)

    def edges(module):
        path = source(module)
        if path is None:
            return set()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{alias.name}"
                    found.add(sub if importlib.util.find_spec(base) and _is_module(sub) else base)
        return {m for m in found if m == "dlcore" or m.startswith("dlcore.")}

    def _is_module(name):
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    graph, todo = {}, ["dlcore.nn"]
    while todo:
        module = todo.pop()
        if module not in graph:
            graph[module] = edges(module) - {"dlcore"}  # the top package is the entry, not a dependency
            todo += sorted(graph[module])
    # a depth-first search: every back edge closes a cycle
    state, stack, cycles = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert "dlcore.nn.summary" in graph and "dlcore.nn.layers" in graph
    # Known, outside dlcore.nn: the NumPy conv twin reads OPENMP_WORKERS_SLEEP from its
    # package; it goes away with that switch (the one-thread-pool rework).
    known = {"dlcore.backends -> dlcore.backends.numpy_kernels -> dlcore.backends.numpy_kernels.conv -> dlcore.backends"}
    assert [c for c in cycles if c not in known] == [], cycles
