"""One implementation in its own process: ``python -m dlcore.bench._worker --threads N --impl torch``.

Used for the torch column when importing torch next to dlcore's OpenMP kernels slows
them (two OpenMP runtimes in one process), and with ``--impl cython`` to time a compiled case in a
process that never imports torch (the probe that measures that slowdown).
Reads one JSON request per line on stdin, answers one JSON line on stdout:

* ``{"cmd": "hello"}`` -> versions and threads;
* ``{"cmd": "start", "key": case_key, "quick": bool}`` -> build + warm up a runner;
* ``{"cmd": "sample"}`` -> ``{"t": seconds per call}``;
* ``{"cmd": "result", "path": file}`` -> one fresh call's result saved as ``.npz``;
* ``{"cmd": "close"}``, ``{"cmd": "exit"}``.
"""
import argparse
import json
import sys

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--impl", default="torch")
    parser.add_argument("--with-torch", action="store_true",
                        help="import torch, start its thread pools and run a torch op before "
                        "each sample (the torch-interference probe's 'torch present' side)")
    parser.add_argument("--default-threads", action="store_true",
                        help="torch keeps its own default thread settings (a user's first run)")
    args = parser.parse_args(argv)
    from .cases import get_case
    from .timing import LocalRunner

    runner = None
    torch_op = None
    if args.with_torch:
        import torch

        torch.set_num_threads(args.threads)
        a = torch.randn(256, 256)

        def torch_op():
            torch.mm(a, a)
            torch.relu(a).sum()
        for _ in range(3):
            torch_op()
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        try:
            if cmd == "hello" and args.impl != "torch":
                import dlcore

                reply = {"ok": True, "dlcore": dlcore.__version__, "threads": args.threads,
                         "torch_imported": "torch" in sys.modules}
            elif cmd == "hello":
                try:
                    import torch

                    if not args.default_threads:
                        torch.set_num_threads(args.threads)
                    reply = {"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads()}
                except ImportError as exc:
                    reply = {"ok": False, "reason": str(exc)}
            elif cmd == "start":
                runner = LocalRunner(get_case(request["key"]), args.impl, args.threads, request["quick"])
                if args.default_threads:
                    runner.default_settings = True
                ok = runner.start()
                reply = {"ok": ok, "reason": runner.reason, "number": runner.number,
                         "first": runner.first, "estimate": getattr(runner, "estimate", None),
                         "scale": runner.scale, "note": runner.note}
            elif cmd == "sample":
                if torch_op is not None:
                    torch_op()  # torch has just run, as when the columns interleave
                reply = {"ok": True, "t": runner.sample()}
            elif cmd == "result":
                result = runner.result()
                np.savez(request["path"], **{f"r{i}": r for i, r in enumerate(result)})
                reply = {"ok": True}
            elif cmd == "close":
                runner = None
                reply = {"ok": True}
            elif cmd == "exit":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return 0
            else:
                reply = {"ok": False, "reason": f"unknown command {cmd!r}"}
        except Exception as exc:  # noqa: BLE001 -- reported to the parent
            reply = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
