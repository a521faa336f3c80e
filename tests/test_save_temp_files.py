"""dlcore.save: temporary files of killed saves are cleaned up, file modes as np.savez
(issue 9, item 5). The kill -9 loop itself is in tests/test_checkpoint_faults.py."""
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import dlcore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="pids and modes as on POSIX")


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _touch(path, age=0.0):
    path.write_bytes(b"partial")
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


def test_next_save_removes_stale_temps_only(tmp_path):
    target = tmp_path / "ckpt.npz"
    hexes = "0123456789abcdef"
    dead = _touch(tmp_path / f".ckpt.npz.dlcore-{_dead_pid()}-{hexes}.tmp")
    live = _touch(tmp_path / f".ckpt.npz.dlcore-{os.getppid()}-{hexes}.tmp")  # a live writer
    mine = _touch(tmp_path / f".ckpt.npz.dlcore-{os.getpid()}-{hexes}.tmp")  # maybe another thread's
    legacy_old = _touch(tmp_path / ".ckpt.npz.ab_cd123.tmp", age=7200)
    legacy_new = _touch(tmp_path / ".ckpt.npz.zz_cd123.tmp")
    other_target = _touch(tmp_path / f".ckpt.npz.old.dlcore-{_dead_pid()}-{hexes}.tmp")
    unrelated = [_touch(tmp_path / n, age=7200) for n in
                 (".ckpt.npz.notes.tmp", ".ckpt.npz.dlcore-12-xyz.tmp", "ckpt.npz.abcdefgh.tmp")]
    dlcore.save({"w": np.arange(3)}, target)
    left = set(os.listdir(tmp_path))
    assert dead.name not in left and legacy_old.name not in left
    for kept in [live, mine, legacy_new, other_target, *unrelated]:
        assert kept.name in left, kept.name
    assert np.array_equal(dlcore.load(target)["w"], np.arange(3))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_mode_follows_the_umask_like_np_savez(tmp_path, umask):
    old = os.umask(umask)
    try:
        dlcore.save({"a": 1}, tmp_path / "d.npz")
        np.savez(tmp_path / "n.npz", a=1)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "d.npz") == _mode(tmp_path / "n.npz") == 0o666 & ~umask


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "d.npz"
    dlcore.save({"a": 1}, path)
    os.chmod(path, 0o640)
    dlcore.save({"a": 2}, path)
    assert _mode(path) == 0o640 and dlcore.load(path) == {"a": 2}
