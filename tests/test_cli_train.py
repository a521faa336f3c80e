"""``python -m dlcore train``: options, output, saving, errors, and the default run's accuracy."""
import argparse
import os
import re

import numpy as np
import pytest

import dlcore
from helpers import requires_sklearn
from dlcore.__main__ import main
from dlcore.cli_train import add_parser



def _run(capsys, *argv):
    code = main(["train", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_parser_registers_train_with_its_options():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["train", "--model", "mlp", "--epochs", "3", "--batch-size", "16", "--lr", "0.01",
                              "--optimizer", "sgd", "--backend", "numpy", "--threads", "2", "--seed", "4",
                              "--save", "m.npz", "--data", "mnist:/x", "--compare-numpy"])
    assert (args.model, args.epochs, args.batch_size, args.lr, args.optimizer) == ("mlp", 3, 16, 0.01, "sgd")
    assert (args.backend, args.threads, args.seed, args.save, args.data) == ("numpy", 2, 4, "m.npz", "mnist:/x")
    assert args.compare_numpy and callable(args.func)
    defaults = parser.parse_args(["train"])
    assert defaults.model == "lenet5" and defaults.data == "digits" and not defaults.compare_numpy
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--model", "vgg"])


@requires_sklearn
def test_softmax_run_prints_accuracy_confusion_matrix_and_epoch_time(capsys, tmp_path):
    path = tmp_path / "softmax.npz"
    code, out, _ = _run(capsys, "--model", "softmax", "--epochs", "3", "--backend", "numpy",
                        "--save", str(path))
    assert code == 0
    acc = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    assert acc > 80.0
    assert "confusion matrix (rows: true class" in out
    rows = [line for line in out.splitlines() if re.match(r"^\s+\d\s+(\s+\d+){10}$", line)]
    assert len(rows) == 10 and sum(int(v) for row in rows for v in row.split()[1:]) == 450
    assert re.search(r"seconds per epoch: [\d.]+", out)
    saved = dlcore.load(path)
    assert saved["model_name"] == "softmax" and abs(saved["test_accuracy"] * 100 - acc) < 0.01
    assert saved["model"]["1.weight"].shape == (10, 64)


@requires_sklearn
@pytest.mark.skipif("cython" not in dlcore.available_backends(), reason="needs the compiled backend")
def test_compare_numpy_prints_a_speedup(capsys):
    code, out, _ = _run(capsys, "--model", "softmax", "--epochs", "1", "--backend", "cython",
                        "--threads", "1", "--compare-numpy")
    assert code == 0
    assert re.search(r"one epoch: cython [\d.]+ s, numpy [\d.]+ s -> speed-up x[\d.]+", out)


def test_mnist_folder_option_reads_idx_files(capsys, tmp_path):
    import gzip
    import struct

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        with gzip.open(tmp_path / f"{split}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        with open(tmp_path / f"{split}-labels-idx1-ubyte", "wb") as fh:
            fh.write(struct.pack(">II", 0x801, n) + labels.tobytes())
    code, out, _ = _run(capsys, "--model", "mlp", "--epochs", "1", "--data", f"mnist:{tmp_path}")
    assert code == 0 and "40 train, 20 test" in out and "test accuracy" in out


def test_errors_give_exit_code_2_and_a_message(capsys, tmp_path):
    code, _, err = _run(capsys, "--data", f"mnist:{tmp_path / 'missing'}")
    assert code == 2 and "missing" in err
    code, _, err = _run(capsys, "--data", "cifar")
    assert code == 2 and "--data" in err
    code, _, err = _run(capsys, "--backend", "fortran")
    assert code == 2 and "fortran" in err
    code, _, err = _run(capsys, "--epochs", "0")
    assert code == 2 and "--epochs" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    code, _, err = _run(capsys, "--data", f"mnist:{bad}")
    assert code == 2 and "train-images-idx3-ubyte" in err


@requires_sklearn
@pytest.mark.slow
def test_default_run_lenet5_on_digits_reaches_98_percent(capsys):
    """The main job as shipped: LeNet-5, digits 28x28, 25 % held out, compiled backend."""
    previous = dlcore.get_num_threads()
    try:
        code, out, _ = _run(capsys, "--threads", str(min(2, os.cpu_count() or 1)))
    finally:
        dlcore.set_num_threads(previous)
    assert code == 0
    acc = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    assert acc >= 98.0, out
