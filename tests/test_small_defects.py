"""Regression tests for the small defects of issue 9, item 7 (one test each; the
``train --lr inf`` case is in tests/test_cli_hardening.py)."""
import gzip
import os

import numpy as np
import pytest

import dlcore
import dlcore.functional as F
from dlcore import nn, optim
from dlcore.data import load_idx, load_mnist, load_npz
from dlcore.metrics import accuracy_score


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d, nn.Conv2d])
def test_conv_layers_backward_with_empty_batch_and_bias(backend, layer):
    m = layer(3, 4, 3, stride=2, padding=1, bias=True)
    y = m(np.zeros((0, 3, 5, 5), np.float32))
    grad_input = m.backward(np.ones_like(y))
    assert grad_input.shape == (0, 3, 5, 5)
    assert np.array_equal(m.bias.grad, np.zeros(4)) and not m.weight.grad.any()


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_uint64_labels_near_2_64_are_refused_not_ignored(loss):
    x = np.zeros((2, 3))
    for bad in (2**64 - 100, 2**63):  # 2**64 - 100 used to wrap to -100 == ignore_index
        with pytest.raises(ValueError, match="target"):
            loss(x, np.array([0, bad], dtype=np.uint64))
    assert loss(x, np.array([0, 2], dtype=np.uint64)) == pytest.approx(
        loss(x, np.array([0, 2])))
    with pytest.raises(ValueError, match="target"):
        nn.CrossEntropyLoss()(x, np.array([0, 2**64 - 100], dtype=np.uint64))


def test_load_npz_on_an_npy_file_names_the_file(tmp_path):
    path = tmp_path / "weights.npy"
    np.save(path, np.arange(3))
    with pytest.raises(ValueError, match="weights.npy"):
        load_npz(path)


def test_idx_header_with_huge_dimensions(tmp_path):
    # 2**32 - 1 rows of 2**32 - 1 by 2**32 - 1: np.prod in int64 wraps (here to a small number)
    path = tmp_path / "huge-idx3-ubyte"
    dims = [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF]
    path.write_bytes(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims) + bytes(16))
    with pytest.raises(ValueError, match="huge-idx3-ubyte"):
        load_idx(path)
    # and a product that wraps exactly to 0 in int64: 2**31 * 2**31 * 4 = 2**64
    dims = [2**31, 2**31, 4]
    path.write_bytes(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims))
    with pytest.raises(ValueError, match="truncated"):
        load_idx(path)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_load_mnist_refuses_label_255(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    assert load_mnist(tmp_path)[1].max() <= 9
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 255, 3]))
    with pytest.raises(ValueError, match="t10k-labels.*255"):
        load_mnist(tmp_path)


def test_accuracy_of_nothing_raises_as_sklearn():
    with pytest.raises(ValueError, match="empty"):
        accuracy_score([], [])
    with pytest.raises(ValueError, match="empty"):
        accuracy_score([], [], normalize=False)
    assert accuracy_score([1], [1]) == 1.0


@pytest.mark.parametrize("make, drop", [
    (lambda ps: optim.Adam(ps), "exp_avg_sq"),
    (lambda ps: optim.Adam(ps, amsgrad=True), "max_exp_avg_sq"),
    (lambda ps: optim.AdamW(ps), "exp_avg"),
    (lambda ps: optim.RMSprop(ps, momentum=0.9, centered=True), "grad_avg"),
    (lambda ps: optim.RMSprop(ps), "square_avg"),
    (lambda ps: optim.Adagrad(ps), "sum"),
])
def test_optimizer_state_dict_missing_a_buffer_raises(make, drop):
    model = nn.Linear(3, 2)
    opt = make(model.parameters())
    model(np.ones((1, 3), np.float32))
    model.backward(np.ones((1, 2), np.float32))
    opt.step()
    state = opt.state_dict()
    del state["state"]["0"][drop]
    with pytest.raises(KeyError, match=drop):
        make(nn.Linear(3, 2).parameters()).load_state_dict(state)
    # complete dicts still load, and so do dicts with no state yet
    make(nn.Linear(3, 2).parameters()).load_state_dict(opt.state_dict())
    make(nn.Linear(3, 2).parameters()).load_state_dict(make(nn.Linear(3, 2).parameters()).state_dict())


def test_sgd_state_without_momentum_buffer_still_loads():
    # torch's SGD treats a missing momentum buffer as "no history yet"
    opt = optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict({"state": {}, "param_groups": opt.state_dict()["param_groups"]})


def test_save_of_a_self_referencing_dict(tmp_path):
    d = {"a": np.zeros(2)}
    d["self"] = d
    with pytest.raises(ValueError, match="contains itself"):
        dlcore.save(d, tmp_path / "x.npz")
    lst = [1]
    lst.append({"inner": lst})
    with pytest.raises(ValueError, match="contains itself"):
        dlcore.save({"l": lst}, tmp_path / "x.npz")
    deep = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        dlcore.save({"deep": deep}, tmp_path / "x.npz")
    # shared (not cyclic) references are fine
    shared = np.ones(2)
    dlcore.save({"a": [shared, shared], "b": (shared,)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == ["x.npz"]
