"""Reused output buffers (dlcore/backends/workspace.py): reuse happens, aliasing never does."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dlcore
from dlcore import functional as F
from dlcore import nn
from dlcore.backends import workspace

BIG = (512, 1024)  # 2 MiB of float32: pooled (MIN_BYTES is 1 MiB)


@pytest.fixture(autouse=True)
def _fresh_pool():
    workspace.clear()
    yield
    workspace.clear()


def _x(seed=0, shape=BIG):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_dropped_result_is_reused(backend):
    x = _x()
    y = F.relu(x)
    address = y.ctypes.data
    del y
    assert F.relu(x).ctypes.data == address


def test_held_result_is_never_handed_out_again(backend):
    x = _x()
    y1 = F.relu(x)
    snapshot = y1.copy()
    y2 = F.relu(-x)
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, snapshot)


def test_a_view_keeps_the_buffer_taken(backend):
    x = _x()
    y = F.relu(x)
    view = y[::2]
    snapshot = view.copy()
    del y
    z = F.sigmoid(x)
    assert not np.shares_memory(view, z)
    np.testing.assert_array_equal(view, snapshot)


def test_a_ctx_keeps_its_saved_output(backend):
    x = _x()
    out, ctx = F.sigmoid_forward(x)  # the ctx saves the output for the backward
    del out
    expected = F.sigmoid_backward(np.ones_like(x), ctx).copy()
    for _ in range(3):
        F.sigmoid(-x)  # would overwrite the saved output if it were reused
    np.testing.assert_array_equal(F.sigmoid_backward(np.ones_like(x), ctx), expected)


def test_small_arrays_are_not_pooled():
    x = np.ones(1000, np.float32)
    y = F.relu(x)
    assert all(a is not y for a in workspace._pool)


def test_pool_is_bounded(backend):
    held = [F.relu(_x()) for _ in range(workspace.MAX_ENTRIES + 5)]
    assert len(workspace._pool) == workspace.MAX_ENTRIES
    assert len({a.ctypes.data for a in held}) == len(held)


def test_max_pool_indices_stay_read_only_and_correct_after_reuse(backend):
    x = _x(1, (4, 16, 64, 64))
    out, idx, ctx = F.max_pool2d_forward(x, 2)
    expected = F.max_pool2d_backward(np.ones_like(out), ctx).copy()
    del out, idx, ctx
    out, idx, ctx = F.max_pool2d_forward(x, 2)  # the same buffers again
    assert not idx.flags.writeable and not ctx.indices.flags.writeable
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones_like(out), ctx), expected)


def test_layer_outputs_of_consecutive_steps_do_not_alias(backend):
    model = nn.Sequential(nn.ReLU(), nn.Tanh())
    x = _x(2)
    first = model(x)
    kept = first.copy()
    second = model(-x)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["relu", "sigmoid", "tanh", "silu", "leaky_relu", "drop"]),
                                st.integers(0, 7)), min_size=1, max_size=25))
def test_random_hold_and_drop_never_aliases(steps):
    """Any sequence of calls, holding or dropping results: every held array keeps its
    values and no two held arrays share memory."""
    workspace.clear()
    x = _x(3, (256, 1024))  # exactly 1 MiB: pooled
    held = {}
    for op, slot in steps:
        if op == "drop":
            held.pop(slot, None)
            continue
        y = getattr(F, op)(x if slot % 2 else -x)
        held[slot] = (y, y.copy())
        for a, (other, _) in held.items():
            assert a == slot or not np.shares_memory(y, other)
    for y, values in held.values():
        np.testing.assert_array_equal(y, values)


def test_threads_never_share_a_buffer():
    x = _x(4)
    results, errors = [], []

    def worker(sign):
        try:
            for _ in range(20):
                y = F.relu(sign * x)
                results.append((y, y.copy()))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, -1, 1, -1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for y, values in results:
        np.testing.assert_array_equal(y, values)
    addresses = [y.ctypes.data for y, _ in results]
    assert len(set(addresses)) == len(addresses)  # all held at once: all distinct


def test_clear_forgets_everything():
    F.relu(_x())
    assert workspace._pool
    workspace.clear()
    assert not workspace._pool


def test_pooled_results_match_fresh_ones(backend):
    x = _x(5)
    for op in ("relu", "sigmoid", "tanh", "silu"):
        fresh = getattr(F, op)(x).copy()
        for _ in range(2):
            np.testing.assert_array_equal(getattr(F, op)(x), fresh)
    assert dlcore.get_backend() == backend
