"""kill -9 at random moments of dlcore.save and of ModelCheckpoint (issue 9): the previous
file always loads, and the next successful save leaves no temporary file behind."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dlcore
from dlcore import nn
from dlcore.train import load_checkpoint

pytestmark = pytest.mark.skipif(os.name != "posix", reason="kill -9 as on POSIX")

# the dlcore under test (installed, or the source tree in development) for the children
_PARENT = os.path.dirname(os.path.dirname(dlcore.__file__))

SAVER = """
import sys, numpy as np, dlcore
path = sys.argv[1]
print("ready", flush=True)
step = int(sys.argv[2])
while True:  # about 4 MB a file, so that kills land inside writes too
    step += 1
    dlcore.save({"step": step, "w": np.full(500_000, step, np.float64), "nested": {"v": [step] * 3}}, path)
"""

TRAINER = """
import sys, numpy as np, dlcore
from dlcore import nn
from dlcore.train import ModelCheckpoint, Trainer
path = sys.argv[1]
dlcore.manual_seed(int(sys.argv[2]))
model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
X = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
y = np.arange(64) % 10
print("ready", flush=True)
Trainer(model, progress=False, callbacks=[ModelCheckpoint(path, monitor="loss", save_optimizer=True)]).fit(
    X, y, epochs=100000, batch_size=64)
"""


def _child(script, path, seed):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_PARENT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(seed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=os.path.dirname(path))
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def _kill_at_random(proc, rng, longest):
    time.sleep(rng.uniform(0.0, longest))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _temps(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_kill_9_during_save(tmp_path):
    rng = random.Random(9)
    path = tmp_path / "ckpt.npz"
    last_step, killed_mid_write, rounds = 0, False, 0
    # at least 8 rounds, and on until a kill has landed inside a write (a temporary file left)
    while rounds < 8 or (not killed_mid_write and rounds < 30):
        rounds += 1
        proc = _child(SAVER, path, last_step)
        _kill_at_random(proc, rng, 0.6)
        killed_mid_write |= bool(_temps(tmp_path))
        if path.exists():
            saved = dlcore.load(path)  # never half-written
            step = saved["step"]
            assert step >= last_step
            assert np.array_equal(saved["w"], np.full(500_000, step)) and saved["nested"] == {"v": [step] * 3}
            last_step = step
    assert last_step > 0 and killed_mid_write, (last_step, killed_mid_write)
    dlcore.save({"step": -1}, path)  # the next successful save cleans what the kills left
    assert _temps(tmp_path) == [] and dlcore.load(path) == {"step": -1}


def test_kill_9_during_model_checkpoint(tmp_path):
    rng = random.Random(99)
    path = tmp_path / "model.npz"
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    loaded = 0
    for round_ in range(5):
        proc = _child(TRAINER, path, round_)
        _kill_at_random(proc, rng, 1.0)
        if path.exists():
            load_checkpoint(path, model)  # the previous checkpoint, whole
            loaded += 1
    assert loaded > 0, "no checkpoint finished in any round: lengthen the rounds"
    dlcore.save({"model": dict(model.state_dict())}, path)
    assert _temps(tmp_path) == []
