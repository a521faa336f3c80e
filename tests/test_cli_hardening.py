"""``dlcore train`` and the command line under interrupts and mistakes (issue 9, items 7-8)."""
import importlib.util
import os
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dlcore
from dlcore import nn, optim
from dlcore.__main__ import main
from dlcore.train import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(capsys, *argv):
    code = main(["train", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("lr", ["inf", "nan", "-1", "0"])
def test_train_refuses_a_non_finite_or_non_positive_lr_up_front(capsys, lr):
    code, out, err = _run(capsys, "--lr", lr)
    assert code == 2 and "--lr" in err and out == ""  # nothing trained or printed


def test_threads_zero_names_the_option(capsys):
    code, _, err = _run(capsys, "--threads", "0")
    assert code == 2 and "--threads must be >= 1, got 0" in err


@pytest.mark.parametrize("n", ["100000", str(2**31), str(2**70)])
def test_threads_above_the_cap_name_the_option(capsys, n):
    from dlcore.backends.threads import MAX_THREADS

    code, out, err = _run(capsys, "--threads", n)
    assert code == 2 and f"--threads must be at most {MAX_THREADS}" in err and f"got {n}" in err
    assert "warning" not in err and out == ""


def test_more_threads_than_cores_warns(capsys, monkeypatch):
    import dlcore.cli_train as cli

    monkeypatch.setattr(cli, "_usable_cores", lambda: 2)
    previous = dlcore.get_num_threads()
    try:
        code, _, err = _run(capsys, "--threads", "64", "--epochs", "0")  # stops at the epochs check
    finally:
        dlcore.set_num_threads(previous)
    assert code == 2 and "--threads 64 is more than the 2 cores" in err


def test_model_typo_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "lenet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'lenet5'?" in err and "choose from lenet5, mlp, softmax, resnet" in err
    with pytest.raises(SystemExit):
        main(["train", "--optimizer", "adamx"])
    assert "did you mean 'adam" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"dlcore {dlcore.__version__}"


def test_unwritable_save_path_is_refused_before_training(capsys, tmp_path):
    for path in [tmp_path / "missing" / "m.npz", tmp_path]:
        code, out, err = _run(capsys, "--save", str(path))
        assert code == 2 and "--save" in err and out == ""
    if os.name == "posix" and os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, out, err = _run(capsys, "--save", str(locked / "m.npz"))
        assert code == 2 and "no permission" in err and out == ""


def test_unknown_backend_variable_warns_and_falls_back():
    env = dict(os.environ, DLCORE_BACKEND="torch")
    proc = subprocess.run([sys.executable, "-c", "import dlcore; print(dlcore.get_backend())"],
                          env=env, capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(dlcore.__file__)))  # the dlcore under test, not the source tree
    assert proc.returncode == 0, proc.stderr
    assert "DLCORE_BACKEND='torch'" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == dlcore.available_backends()[0]


def test_trainer_refuses_an_optimizer_over_another_models_parameters():
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    with pytest.raises(ValueError, match="not the model's"):
        Trainer(model, optimizer=optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="1 of its 3"):
        Trainer(model, optimizer=optim.SGD(list(model.parameters()) + [other.weight], lr=0.1))
    Trainer(model, optimizer=optim.SGD([model.weight], lr=0.1))  # a subset is fine (fine-tuning)


# ---- subprocess runs: the real terminal behaviour ---------------------------------------------

# the CLI's digits come from scikit-learn: skip these tests only, not the whole file
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn is not installed")


def _train_proc(tmp_path, *argv, columns=80):
    # the dlcore under test (the installed one, or the source tree in development)
    package_parent = os.path.dirname(os.path.dirname(dlcore.__file__))
    env = dict(os.environ, COLUMNS=str(columns), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "dlcore", "train", "--model", "softmax", "--backend", "numpy",
                             *argv], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_until(proc, pattern, timeout):
    """stderr read so far, once it matches ``pattern`` (or the timeout passes)."""
    buf, end = b"", time.monotonic() + timeout
    while time.monotonic() < end and not re.search(pattern, buf):
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    return buf


@needs_sklearn
@pytest.mark.skipif(os.name != "posix", reason="SIGINT as a terminal sends it")
def test_ctrl_c_closes_the_bar_reports_saves_and_exits_130(tmp_path):
    # small batches, so that an epoch lasts long enough to be interrupted inside it
    proc = _train_proc(tmp_path, "--epochs", "100000", "--batch-size", "2", "--save", "m.npz")
    try:
        seen = _read_until(proc, rb"Epoch 3/", 120)
        assert b"Epoch 3/" in seen, seen.decode(errors="replace")
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = (seen + err).decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    match = re.search(r"\ninterrupted at epoch (\d+)/100000, batch (\d+)\n", err)
    assert match, err
    assert int(match.group(1)) >= 3 and int(match.group(2)) >= 1
    saved = dlcore.load(tmp_path / "m.npz")
    assert saved["interrupted"].startswith(f"epoch {match.group(1)}/100000")
    assert saved["model"]["1.weight"].shape == (10, 64)
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # atomic: no temporary file left


@needs_sklearn
def test_epoch_lines_fit_80_columns_with_validation_metrics(tmp_path):
    proc = _train_proc(tmp_path, "--epochs", "2")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    # (tqdm's own lines, "... 100%|###| ...", are fitted to a real terminal by tqdm; in a pipe it has no width)
    lines = [seg for line in err.decode().split("\n") for seg in line.split("\r") if "%|" not in seg]
    assert all(len(seg) <= 80 for seg in lines), [seg for seg in lines if len(seg) > 80]
    text = err.decode()
    assert text.count("val_loss=") == 2 and text.count("val_accuracy=") == 2
