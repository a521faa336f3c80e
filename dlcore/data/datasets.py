"""Real datasets: MNIST from its IDX files, scikit-learn's bundled digits, any ``.npz``.

IDX format (LeCun's MNIST files), big-endian::

    bytes 0-1  zero
    byte  2    element type (0x08 = unsigned byte)
    byte  3    number of dimensions d (3 for images, 1 for labels)
    then d     4-byte sizes, then the elements in C order

so the images file starts with the magic number 0x00000803 and the labels file with
0x00000801.
"""
import gzip
import math
import os
import zipfile
import zlib

import numpy as np

from .preprocessing import resize_images

__all__ = ["load_breast_cancer", "load_digits", "load_idx", "load_mnist", "load_npz"]

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_npz(path):
    """All arrays of an ``.npz`` file as a dict ``name -> ndarray`` (never unpickles).

    A missing file raises ``FileNotFoundError``; a truncated or corrupted file, or one
    holding pickled objects, raises ``ValueError`` naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy file gives one ndarray
            raise ValueError("it holds a single array (.npy), not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise ValueError(f"cannot read {path!r} as an .npz archive of arrays: {exc}") from exc


def _read_bytes(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        with open(path, "rb") as fh:
            return fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path!r} is not a valid gzip file (truncated or corrupted): {exc}") from exc


def load_idx(path, expected_ndim=None):
    """Read one IDX file (optionally gzipped) of unsigned bytes into a uint8 array.

    Raises ``ValueError`` naming the file when the magic number is wrong (not an IDX
    file of unsigned bytes, or not of ``expected_ndim`` dimensions) or when the file is
    shorter or longer than its header says.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path!r} is truncated: {len(raw)} bytes, shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or (expected_ndim is not None and ndim != expected_ndim):
        want = f"0x{0x800 + expected_ndim:08X}" if expected_ndim is not None else "0x000008dd"
        raise ValueError(
            f"{path!r} has magic number 0x{magic:08X}, expected {want} "
            "(an IDX file of unsigned bytes); is it the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path!r} is truncated: its IDX header needs {header} bytes, got {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(shape)  # Python ints: np.prod would wrap huge header sizes (to 0, even)
    if len(raw) - header != count:
        kind = "truncated" if len(raw) - header < count else "longer than its header says"
        raise ValueError(
            f"{path!r} is {kind}: header shape {shape} needs {count} data bytes, "
            f"got {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=header).reshape(shape)


def _find(folder, stem):
    candidates = [stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for name in candidates:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"MNIST file {stem!r} (or {stem}.gz) not found in {folder!r}")


def load_mnist(folder):
    """MNIST from the four standard IDX files in ``folder`` (each gzipped or not).

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (with or without ``.gz``).

    Returns:
        ``X_train, y_train, X_test, y_test``: X float32 ``(N, 1, 28, 28)`` scaled to [0, 1]
        (pixel / 255), y int64.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"MNIST folder not found: {folder!r}")
    out = []
    for split in ("train", "test"):
        img_path = _find(folder, _MNIST_FILES[f"{split}_images"])
        images = load_idx(img_path, expected_ndim=3)
        lab_path = _find(folder, _MNIST_FILES[f"{split}_labels"])
        labels = load_idx(lab_path, expected_ndim=1)
        if labels.size and labels.max() > 9:
            raise ValueError(f"{lab_path!r} holds label {int(labels.max())}: MNIST labels are digits 0..9")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{img_path!r} holds {images.shape[0]} images but {lab_path!r} holds "
                f"{labels.shape[0]} labels")
        X = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
        out += [X, labels.astype(np.int64)]
    return tuple(out)


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError(
            "this dataset ships with scikit-learn, which is not installed: "
            "pip install scikit-learn") from exc
    return datasets


def load_digits(size=8):
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels) as images.

    Args:
        size (int): side of the returned images. 8 keeps the originals; other sizes are
            resized by bilinear interpolation with half-pixel centres
            (:func:`dlcore.data.resize_images`), e.g. ``size=28`` for LeNet-5.

    Returns:
        ``X, y``: X float32 ``(1797, 1, size, size)`` in [0, 1] (grey level / 16), y int64
        in 0..9. Needs scikit-learn (an ``ImportError`` says so when it is missing).
    """
    from .._checks import check_int

    size = check_int(size, "size", 1)
    digits = _sklearn_datasets().load_digits()
    X = (digits.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    if size != 8:
        X = np.clip(resize_images(X, size), 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(X), digits.target.astype(np.int64)


def load_breast_cancer():
    """scikit-learn's Wisconsin breast-cancer set: X float64 ``(569, 30)``, y int64 in {0, 1}
    (1 = benign). Needs scikit-learn."""
    data = _sklearn_datasets().load_breast_cancer()
    return data.data.astype(np.float64), data.target.astype(np.int64)
