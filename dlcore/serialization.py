"""``save`` / ``load``: nested dicts of arrays and plain values in one ``.npz``, never pickled.

File layout (a standard NumPy ``.npz``, i.e. a zip of ``.npy`` members):

* ``a0``, ``a1``, … — the arrays, in the order they appear in the structure;
* ``__structure__`` — a JSON description of the object (a uint8 array of UTF-8 bytes):
  dicts as ``{"dict": [[key, node], ...]}`` (str or int keys, order kept), lists as
  ``{"list": [...]}``, tuples as ``{"tuple": [...]}``, arrays as ``{"array": i}``, NumPy
  scalars as ``{"scalar": i}``, and ``int``/``float``/``bool``/``str``/``None`` inline
  (JSON keeps those types apart, including ``inf`` and ``nan``);
* ``__checksum__`` — SHA-256 over the structure and every array's dtype, shape and
  bytes, so a file altered after writing is detected even where the zip's own CRC is not
  checked.

``np.load(..., allow_pickle=False)`` reads the members, so loading never runs code.

Writing is atomic: the archive goes to a hidden temporary file next to ``path``,
``.<name>.dlcore-<pid>-<random>.tmp``, which is then renamed over ``path``. A writer
killed before the rename leaves its temporary file behind; the next successful save of
the same ``path`` removes those whose writing process no longer exists (and, from older
versions, ``.<name>.<random>.tmp`` files more than an hour old). The file gets the mode
``np.savez`` would give it (``0666`` less the umask, usually ``0644``), or the mode of the
file it replaces.
"""
import hashlib
import json
import numbers
import os
import re
import secrets
import time

import numpy as np

__all__ = ["save", "load"]

_FORMAT = "dlcore-save-1"


class _Encoder:
    def __init__(self):
        self.arrays = []
        self.open = set()  # ids of the containers being encoded, to catch a reference cycle

    def node(self, value, where):
        if isinstance(value, (dict, list, tuple)):
            if id(value) in self.open:
                raise ValueError(f"cannot save {where}: it contains itself (a reference cycle)")
            self.open.add(id(value))
            try:
                return self._container(value, where)
            finally:
                self.open.discard(id(value))
        return self._leaf(value, where)

    def _leaf(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.ndarray):
            return {"array": self._array(value, where)}
        if isinstance(value, np.generic):
            return {"scalar": self._array(np.asarray(value), where)}
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, float):
            return float(value)
        raise TypeError(
            f"cannot save {type(value).__name__} at {where}: leaves must be ndarrays, int, float, bool, "
            "str, None, or lists/tuples/dicts of those"
        )

    def _container(self, value, where):
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if isinstance(key, np.integer):
                    key = int(key)
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise TypeError(f"dict keys must be str or int, got {type(key).__name__} {key!r} in {where}")
                items.append([key, self.node(item, f"{where}[{key!r}]")])
            return {"dict": items}
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [self.node(item, f"{where}[{i}]") for i, item in enumerate(value)]}

    def _array(self, array, where):
        if array.dtype.hasobject:
            raise TypeError(f"cannot save an object array at {where} (it would need pickle)")
        self.arrays.append(array)
        return len(self.arrays) - 1


def _checksum(structure_bytes, arrays):
    digest = hashlib.sha256()
    digest.update(_FORMAT.encode())
    digest.update(structure_bytes)
    for array in arrays:
        digest.update(f"|{array.dtype.str}|{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


_TEMP = re.compile(r"\.dlcore-(\d+)-[0-9a-f]{16}\.tmp")  # after ".<name>": ours, with the writer's pid
_LEGACY_TEMP = re.compile(r"\.[a-z0-9_]{8}\.tmp")     # after ".<name>": tempfile.mkstemp's, before
_LEGACY_AGE = 3600.0  # seconds; an older legacy temporary file has no live writer left


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists under another user, or cannot tell: keep its file
    return True


def _remove_stale_temps(directory, name):
    """Remove what killed saves of ``name`` left in ``directory`` (see the module docstring).

    Only names of our own pattern are considered: a pid-tagged file whose process is gone,
    or a legacy one untouched for an hour. Another process still writing keeps its file.
    """
    prefix = f".{name}"
    try:
        entries = [e for e in os.listdir(directory) if e.startswith(prefix)]
    except OSError:
        return
    now = time.time()
    for entry in entries:
        rest = entry[len(prefix):]
        full = os.path.join(directory, entry)
        ours = _TEMP.fullmatch(rest)
        try:
            if ours:
                stale = int(ours.group(1)) != os.getpid() and not _pid_alive(int(ours.group(1)))
            elif _LEGACY_TEMP.fullmatch(rest):
                stale = now - os.lstat(full).st_mtime > _LEGACY_AGE
            else:
                continue
            if stale:
                os.unlink(full)
        except OSError:
            pass  # gone already, or not ours to remove


def _new_file_mode(path):
    """The mode a plain ``open(path, "w")`` would leave: the old file's, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None  # os.open below applies the umask to 0o666


def save(obj, path):
    """Write ``obj`` to exactly ``path`` as one ``.npz`` (no suffix added), atomically.

    ``obj``: a dict (nesting allowed) whose leaves are ndarrays, Python ``int``/``float``/
    ``bool``/``str``/``None``, or lists/tuples of those (e.g. a model's ``state_dict()`` and
    an optimizer's ``state_dict()`` together). Other leaves raise TypeError naming where;
    a container that contains itself raises ValueError.
    The file is first written to a temporary file in the same directory, then renamed
    over ``path``: a crash never leaves a half-written file under ``path``, and temporary
    files that killed saves of ``path`` left behind are removed after the rename.
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or PathLike, got {type(path).__name__}")
    encoder = _Encoder()
    try:
        structure = {"format": _FORMAT, "root": encoder.node(obj, "obj")}
        structure_bytes = json.dumps(structure, allow_nan=True).encode("utf-8")
    except RecursionError:
        raise ValueError("cannot save obj: it is nested too deeply") from None
    members = {f"a{i}": a for i, a in enumerate(encoder.arrays)}
    members["__structure__"] = np.frombuffer(structure_bytes, dtype=np.uint8)
    members["__checksum__"] = np.frombuffer(_checksum(structure_bytes, encoder.arrays).encode("ascii"), dtype=np.uint8)

    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.dlcore-{os.getpid()}-{secrets.token_hex(8)}.tmp")
    mode = _new_file_mode(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            # no allow_pickle= here: NumPy < 2.1 would store it as an array named "allow_pickle";
            # the encoder already refuses object arrays, so nothing is pickled
            np.savez(handle, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _remove_stale_temps(directory, name)


def _decode(node, arrays, where):
    if node is None or isinstance(node, (bool, str, int, float)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (kind, payload), = node.items()
        if kind == "array":
            return arrays[payload]
        if kind == "scalar":
            return arrays[payload][()]
        if kind == "list":
            return [_decode(item, arrays, where) for item in payload]
        if kind == "tuple":
            return tuple(_decode(item, arrays, where) for item in payload)
        if kind == "dict":
            return {key: _decode(item, arrays, where) for key, item in payload}
    raise ValueError(f"{where}: unrecognized entry in the structure description")


def load(path):
    """Read what :func:`save` wrote: the same structure (tuples as tuples, numbers as Python numbers).

    Raises FileNotFoundError when ``path`` does not exist, and ValueError naming the file
    when it is truncated, altered, or not a dlcore file. Never unpickles.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "__structure__" not in names or "__checksum__" not in names:
                raise ValueError("no dlcore structure description (not written by dlcore.save)")
            structure_bytes = archive["__structure__"].tobytes()
            stored_checksum = archive["__checksum__"].tobytes().decode("ascii")
            structure = json.loads(structure_bytes.decode("utf-8"))
            if not isinstance(structure, dict) or structure.get("format") != _FORMAT:
                raise ValueError("unknown format marker")
            count = len(names) - 2
            expected = {f"a{i}" for i in range(count)}
            if names - {"__structure__", "__checksum__"} != expected:
                raise ValueError("unexpected members in the archive")
            arrays = [archive[f"a{i}"] for i in range(count)]
        if _checksum(structure_bytes, arrays) != stored_checksum:
            raise ValueError("checksum mismatch: the contents were altered after saving")
        return _decode(structure["root"], arrays, "structure")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # BadZipFile, zlib.error, a bad CRC, broken JSON, a short read, ...
        raise ValueError(f"{path!r} is not a valid dlcore file (truncated or altered?): {exc}") from exc
