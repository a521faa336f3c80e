"""dlcore.save / dlcore.load: round trips, exact paths, atomic writes, no pickle, corruption."""
import os
import pathlib
import zipfile

import numpy as np
import pytest

import dlcore
from dlcore import nn


def sample_object():
    return {
        "model": {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "0.bias": np.zeros(2)},
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": np.ones((2, 3))}, 1: {"step": 3}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False, "params": [0, 1]}],
        },
        "epoch": 7,
        "loss": 0.125,
        "nan": float("nan"),
        "inf": -float("inf"),
        "big": 2**70,
        "flag": True,
        "name": "lenet ☃",
        "nothing": None,
        "history": [1.5, 2, None, "x", (3, 4.0), []],
        "empty": {},
        "labels": np.array([3, 1, 2], dtype=np.int64),
        "mask": np.array([[True, False]]),
        "scalar0d": np.array(2.5),
        "np_scalar": np.float32(1.25),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "strings": np.array(["a", "bc"]),
        "empty_array": np.zeros((0, 3), np.float32),
    }


def assert_same(a, b, where="obj"):
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert type(k) is type(next(kk for kk in b if kk == k))
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b, where
        if isinstance(a, np.generic):
            assert a.dtype == b.dtype


def test_round_trip(tmp_path):
    obj = sample_object()
    path = tmp_path / "checkpoint.bin"
    dlcore.save(obj, path)
    assert os.listdir(tmp_path) == ["checkpoint.bin"]  # exact name, no temp left behind
    loaded = dlcore.load(path)
    assert_same(obj, loaded)
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert isinstance(loaded["epoch"], int) and isinstance(loaded["loss"], float)
    assert isinstance(loaded["flag"], bool)
    # str paths too, and overwriting
    dlcore.save({"a": 1}, str(path))
    assert dlcore.load(str(path)) == {"a": 1}


def test_no_suffix_and_npz_format(tmp_path):
    path = tmp_path / "weights"
    dlcore.save({"w": np.ones(3)}, path)
    assert path.exists() and not (tmp_path / "weights.npz").exists()
    assert zipfile.is_zipfile(path)
    # readable by NumPy without pickle
    with np.load(path, allow_pickle=False) as archive:
        assert "__structure__" in archive.files


def test_model_state_dict_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Identity(), nn.Linear(3, 2, dtype=np.float32))
    dlcore.save(model.state_dict(), tmp_path / "m.npz")
    other = nn.Sequential(nn.Linear(4, 3), nn.Identity(), nn.Linear(3, 2))
    other.load_state_dict(dlcore.load(tmp_path / "m.npz"))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(model(x), other(x))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        dlcore.load(tmp_path / "nope.npz")


def test_unsupported_values(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['a'\]\[1\]"):
        dlcore.save({"a": [1, object()]}, tmp_path / "x")
    with pytest.raises(TypeError, match="object array"):
        dlcore.save({"a": np.array([1, "a", None], dtype=object)}, tmp_path / "x")
    with pytest.raises(TypeError, match="keys"):
        dlcore.save({(1, 2): 3}, tmp_path / "x")
    with pytest.raises(TypeError):
        dlcore.save({"a": {1, 2}}, tmp_path / "x")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt"
    dlcore.save({"v": 1}, path)
    with pytest.raises(TypeError):
        dlcore.save({"v": 2, "bad": object()}, path)
    assert dlcore.load(path) == {"v": 1}
    assert os.listdir(tmp_path) == ["ckpt"]


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.9, 0.99])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "ckpt"
    dlcore.save(sample_object(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="ckpt"):
        dlcore.load(path)


def test_flipped_bytes_anywhere_are_detected(tmp_path):
    path = tmp_path / "ckpt"
    dlcore.save({"w": np.arange(64, dtype=np.float64), "lr": 0.5, "name": "abc"}, path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.integers(0, len(data), 60).tolist()))
    undetected = []
    for pos in positions:
        altered = bytearray(data)
        altered[pos] ^= 0x5A
        path.write_bytes(bytes(altered))
        try:
            loaded = dlcore.load(path)
        except ValueError as exc:
            assert "ckpt" in str(exc)
            continue
        # a flip in a zip field nobody reads may be harmless; the data must then be intact
        if not (np.array_equal(loaded["w"], np.arange(64.0)) and loaded["lr"] == 0.5 and loaded["name"] == "abc"):
            undetected.append(pos)
    assert not undetected, f"silently wrong data after flipping bytes at {undetected}"


def test_altered_payload_with_valid_zip_is_detected(tmp_path):
    """Rewrite a member with consistent zip CRCs: only dlcore's own checksum can tell."""
    path = tmp_path / "ckpt"
    dlcore.save({"w": np.zeros(4)}, path)
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    members["a0"] = np.ones(4)
    np.savez(path.with_suffix(".tmp"), **members)
    os.replace(path.with_suffix(".tmp.npz"), path)
    with pytest.raises(ValueError, match="checksum"):
        dlcore.load(path)


def test_foreign_npz_rejected(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.ones(3))
    with pytest.raises(ValueError, match="plain.npz"):
        dlcore.load(path)
    text = tmp_path / "text.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="text.txt"):
        dlcore.load(text)


def test_never_unpickles(tmp_path, monkeypatch):
    import pickle

    def boom(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    path = tmp_path / "p"
    dlcore.save(sample_object(), path)
    assert_same(sample_object(), dlcore.load(path))
    # a pickled object array planted in the file is refused, not executed
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    members["a0"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "evil.npz", **members)
    with pytest.raises(ValueError, match="evil"):
        dlcore.load(tmp_path / "evil.npz")


def test_pathlike(tmp_path):
    class P(os.PathLike):
        def __fspath__(self):
            return str(tmp_path / "pl")

    dlcore.save({"a": (1, 2)}, P())
    assert dlcore.load(pathlib.Path(tmp_path / "pl")) == {"a": (1, 2)}
