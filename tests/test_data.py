"""dlcore.data: DataLoader, preprocessing (vs scikit-learn), IDX/npz loaders, digits, transforms."""
import gzip
import os
import struct

import numpy as np
import pytest

import dlcore
from helpers import requires_sklearn
from dlcore.data import (
    Compose,
    DataLoader,
    GaussianNoise,
    LabelBinarizer,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
    StandardScaler,
    load_digits,
    load_mnist,
    load_npz,
    one_hot,
    resize_images,
    train_test_split,
)



# ---- DataLoader ---------------------------------------------------------------------------
def test_loader_sequential_batches_and_len():
    X = np.arange(10.0)
    y = np.arange(10) * 2
    loader = DataLoader(X, y, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [xb.tolist() for xb, _ in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [yb.tolist() for _, yb in batches][-1] == [16, 18]
    dropped = DataLoader(X, y, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[0]) for b in dropped] == [4, 4]
    assert len(DataLoader(X, batch_size=5, drop_last=True)) == 2
    assert [xb.tolist() for xb in DataLoader(X, batch_size=20)] == [X.tolist()]


def test_loader_shuffle_covers_every_sample_once_and_changes_order():
    X = np.arange(53).reshape(53, 1).astype(np.float32)
    y = np.arange(53)
    loader = DataLoader(X, y, batch_size=8, shuffle=True, seed=3)
    epochs = []
    for _ in range(3):
        xs, ys = zip(*loader)
        xs, ys = np.concatenate(xs)[:, 0], np.concatenate(ys)
        assert sorted(ys.tolist()) == list(range(53))
        np.testing.assert_array_equal(xs, ys)          # pairs stay together
        epochs.append(ys)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(53))


def test_loader_seed_reproduces_the_epoch_sequence():
    X = np.arange(30)
    a = DataLoader(X, batch_size=7, shuffle=True, seed=11)
    b = DataLoader(X, batch_size=7, shuffle=True, seed=11)
    for _ in range(3):
        np.testing.assert_array_equal(np.concatenate(list(a)), np.concatenate(list(b)))
    c = DataLoader(X, batch_size=7, shuffle=True, seed=12)
    assert not np.array_equal(np.concatenate(list(DataLoader(X, shuffle=True, seed=11))), np.concatenate(list(c)))


def test_loader_without_seed_follows_manual_seed():
    X = np.arange(40)
    dlcore.manual_seed(5)
    first = [np.concatenate(list(DataLoader(X, batch_size=6, shuffle=True))) for _ in range(2)]
    dlcore.manual_seed(5)
    second = [np.concatenate(list(DataLoader(X, batch_size=6, shuffle=True))) for _ in range(2)]
    for p, q in zip(first, second):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(first[0], first[1])


def test_loader_errors_and_no_mutation():
    X = np.arange(12.0).reshape(6, 2)
    X.flags.writeable = False
    with pytest.raises(ValueError, match="y must have as many samples"):
        DataLoader(X, np.arange(5))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(X, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DataLoader(X, batch_size=2.5)
    out = np.concatenate(list(DataLoader(X, batch_size=4, shuffle=True, seed=0, transform=lambda b: b * 2)))
    assert sorted(out[:, 0].tolist()) == [0, 4, 8, 12, 16, 20]
    np.testing.assert_array_equal(X, np.arange(12.0).reshape(6, 2))


# ---- one_hot / LabelBinarizer -------------------------------------------------------------
def test_one_hot_matches_the_notes_examples():
    np.testing.assert_array_equal(one_hot([4], 5), [[0, 0, 0, 0, 1]])
    out = one_hot(np.array([3, 0, 2]))
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(one_hot([5, 0, 4, 4, 3]).argmax(1), [5, 0, 4, 4, 3])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        one_hot([0, 3], num_classes=3)
    with pytest.raises(TypeError, match="integer"):
        one_hot([0.5, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        one_hot([[0, 1]])


@pytest.mark.parametrize("data", [
    ["dog", "cat", "dog", "horse"],
    [3, 1, 1, 3],
    ["yes"] * 4,
    [0, 4, 2, 2, 9, 4, 0],
])
@requires_sklearn
def test_label_binarizer_matches_sklearn(data):
    from sklearn.preprocessing import LabelBinarizer as SkLB

    ours, theirs = LabelBinarizer(), SkLB()
    out = ours.fit_transform(data)
    ref = theirs.fit_transform(data)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.inverse_transform(out), theirs.inverse_transform(ref))


def test_label_binarizer_notes_example_and_errors():
    lb = LabelBinarizer().fit(["dog", "cat", "dog", "horse"])
    np.testing.assert_array_equal(lb.transform(["dog", "cat", "dog", "horse"]),
                                  [[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(lb.transform(["dog"]), [[0, 1, 0]])
    with pytest.raises(RuntimeError, match="fit"):
        LabelBinarizer().transform([1])
    with pytest.raises(ValueError, match="not seen"):
        LabelBinarizer().fit([0, 1]).transform([2])


# ---- train_test_split ---------------------------------------------------------------------
@requires_sklearn
@pytest.mark.parametrize("n,test_size", [(10, 0.25), (11, 0.3), (1797, 0.25), (7, 0.5), (20, 3)])
def test_split_sizes_match_sklearn(n, test_size):
    from sklearn.model_selection import train_test_split as sk_split

    X, y = np.arange(n * 2).reshape(n, 2), np.arange(n)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, seed=0)
    sXtr, sXte = sk_split(X, test_size=test_size, random_state=0)
    assert len(Xte) == len(sXte) and len(Xtr) == len(sXtr)
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(n))
    np.testing.assert_array_equal(Xtr[:, 0] // 2, ytr)


def test_split_seed_and_stratify():
    rng = np.random.default_rng(1)
    y = rng.choice(5, size=203, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    X = np.arange(203)
    a = train_test_split(X, y, seed=4, stratify=True)
    b = train_test_split(X, y, seed=4, stratify=True)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    _, X_te, _, y_te = a
    assert len(y_te) == 51
    np.testing.assert_array_equal(y[X_te], y_te)
    for c in range(5):
        share = 51 * np.sum(y == c) / 203
        assert abs(np.sum(y_te == c) - share) < 1.0
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(X, y, test_size=1.5)
    with pytest.raises(ValueError, match="y must have"):
        train_test_split(X, y[:-1])


# ---- StandardScaler ------------------------------------------------------------------------
@requires_sklearn
def test_standard_scaler_matches_sklearn_and_handles_constant_features(rng):
    from sklearn.preprocessing import StandardScaler as SkScaler

    X = rng.normal(3, 2, size=(50, 4))
    X[:, 2] = 7.0
    ours = StandardScaler().fit(X)
    ref = SkScaler().fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-12)
    np.testing.assert_allclose(ours.scale_, ref.scale_)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X)), X, atol=1e-12)
    assert np.all(ours.transform(X)[:, 2] == 0)
    f32 = StandardScaler().fit_transform(X.astype(np.float32))
    assert f32.dtype == np.float32


def test_standard_scaler_images_per_pixel(rng):
    X = rng.random((20, 1, 3, 3)).astype(np.float32)
    Z = StandardScaler().fit_transform(X)
    assert Z.shape == X.shape
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="per-sample shape"):
        StandardScaler().fit(X).transform(X[:, :, :2])


# ---- files: IDX (MNIST) and npz -----------------------------------------------------------
def _write_idx(path, array, magic=None, truncate=0, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + array.ndim
    data = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()
    if truncate:
        data = data[:-truncate]
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(data)


def _fake_mnist(folder, gz, n_train=5, n_test=3, **bad):
    rng = np.random.default_rng(0)
    parts = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        parts[split] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        suffix = ".gz" if gz else ""
        _write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte{suffix}"), parts[split][0], gz=gz,
                   **(bad if split == "train" else {}))
        _write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte{suffix}"), parts[split][1], gz=gz)
    return parts


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_mnist_reads_idx_files(tmp_path, gz):
    parts = _fake_mnist(str(tmp_path), gz)
    X_tr, y_tr, X_te, y_te = load_mnist(tmp_path)
    assert X_tr.shape == (5, 1, 28, 28) and X_tr.dtype == np.float32
    assert y_tr.dtype == np.int64 and X_te.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(X_tr[:, 0] * 255, parts["train"][0], atol=1e-4)
    np.testing.assert_array_equal(y_te, parts["t10k"][1])
    assert 0 <= X_tr.min() and X_tr.max() <= 1


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_mnist_bad_magic_and_truncation_name_the_file(tmp_path, gz):
    _fake_mnist(str(tmp_path), gz, magic=0x00000801)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*magic number 0x00000801"):
        load_mnist(tmp_path)
    _fake_mnist(str(tmp_path), gz, truncate=100)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)


def test_load_mnist_missing_and_truncated_gzip(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path)
    _fake_mnist(str(tmp_path), True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)


def test_load_npz_roundtrip_and_corruption(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.arange(6.0).reshape(2, 3), y=np.array([1, 2]))
    out = load_npz(path)
    assert set(out) == {"X", "y"}
    np.testing.assert_array_equal(out["y"], [1, 2])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match="bad.npz"):
        load_npz(bad)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        load_npz(garbage)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="obj.npz"):
        load_npz(pickled)
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


# ---- digits and resizing --------------------------------------------------------------------
@requires_sklearn
def test_load_digits_shapes_and_values():
    X, y = load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    assert X.min() == 0.0 and X.max() == 1.0
    from sklearn.datasets import load_digits as sk_digits

    np.testing.assert_allclose(X[:, 0] * 16, sk_digits().images, atol=1e-5)
    X28, y28 = load_digits(size=28)
    assert X28.shape == (1797, 1, 28, 28) and X28.dtype == np.float32
    assert 0.0 <= X28.min() and X28.max() <= 1.0
    np.testing.assert_array_equal(y28, y)


def test_resize_images_constant_and_torch_bilinear(rng):
    const = np.full((1, 2, 8, 8), 0.25, np.float32)
    np.testing.assert_allclose(resize_images(const, 28), 0.25, rtol=1e-6)
    X = rng.random((2, 1, 8, 8)).astype(np.float32)
    out = resize_images(X, (12, 5))
    assert out.shape == (2, 1, 12, 5)
    # the same size is the identity
    np.testing.assert_allclose(resize_images(X, 8), X, rtol=1e-6)
    from helpers import torch

    if torch is not None:
        ref = torch.nn.functional.interpolate(torch.tensor(X), size=(28, 28), mode="bilinear",
                                              align_corners=False).numpy()
        np.testing.assert_allclose(resize_images(X, 28), ref, atol=1e-6)


# ---- transforms ---------------------------------------------------------------------------
def test_transforms_shapes_seeding_and_no_mutation(rng):
    X = rng.random((6, 1, 8, 8)).astype(np.float32)
    X_copy = X.copy()
    aug = Compose([RandomShift(2), RandomHorizontalFlip(0.5), GaussianNoise(0.1, clip=(0, 1))])
    dlcore.manual_seed(9)
    a = aug(X)
    dlcore.manual_seed(9)
    b = aug(X)
    np.testing.assert_array_equal(a, b)
    assert a.shape == X.shape and a.dtype == X.dtype and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(X, X_copy)
    assert aug(X[0]).shape == (1, 8, 8)


def test_flip_crop_shift_semantics(rng):
    X = rng.random((4, 2, 5, 5))
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(X), X[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(X), X)
    np.testing.assert_array_equal(RandomShift(0)(X), X)
    crops = RandomCrop(3, padding=0)(X)
    assert crops.shape == (4, 2, 3, 3)
    for i in range(4):      # each crop is a window of its own image
        hits = [np.array_equal(crops[i], X[i, :, t:t + 3, l:l + 3]) for t in range(3) for l in range(3)]
        assert any(hits)
    shifted = RandomShift(1)(X)
    # a shift keeps or zeroes values, never invents them
    assert np.isin(shifted[shifted != 0], X).all()
    with pytest.raises(ValueError, match="larger"):
        RandomCrop(9)(X)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(5, 5\)"):
        RandomShift(1)(X[0, 0])


def test_load_digits_without_sklearn_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_digits()
