"""Process-level cases: what a whole process's setup does to the LeNet-5 training step.

Each measurement runs the step (case ``lenet5.train_step.b64``) in a fresh Python process,
so that nothing this process imported or started can influence it:

* **import order** -- the compiled step with ``import torch`` before ``import dlcore``
  against ``import dlcore`` first. Both load an OpenMP runtime (torch ships its own
  ``libgomp``); whichever loads first is the one both use, with its settings. The ratio
  should be about 1.
* **busy machine** -- the compiled step and torch's step at the run's threads, on a quiet
  machine and with one extra CPU-bound process (a busy loop) running, each pair
  interleaved. ``busy / quiet`` is how much a program shares the cores gracefully.

Every configuration is measured ``rounds`` times in alternation (A B B A ... for the import
order, A B A B ... for the busy machine), each time in a new process; the medians of the
per-process medians are compared.
"""
import json
import os
import statistics
import subprocess
import sys
import time

__all__ = ["busy_machine", "format_process_cases", "import_order", "run_process_cases", "PROCESS_CASES"]

STEP_KEY = "lenet5.train_step.b64"
PROCESS_CASES = ("lenet5 import order", "lenet5 busy machine")

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Times the step in this fresh process and prints one JSON line. argv: impl threads
# samples torch_first.
_STEP_SCRIPT = """
import sys
impl, threads, samples, torch_first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
if torch_first:
    import torch
import dlcore
import json, statistics
from dlcore.bench.cases import get_case
from dlcore.bench.timing import LocalRunner
runner = LocalRunner(get_case(%r), impl, threads)
if not runner.start():
    print(json.dumps({"ok": False, "reason": runner.reason}))
    sys.exit(0)
for _ in range(samples):
    runner.sample()
print(json.dumps({"ok": True, "median_s": statistics.median(runner.times), "times_s": runner.times,
                  "torch_loaded_first": torch_first}))
""" % STEP_KEY

_SPIN_SCRIPT = "while True:\n    pass\n"


def _step_in_fresh_process(impl, threads, samples, torch_first=False, timeout=600):
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", _STEP_SCRIPT, impl, str(threads), str(samples),
                           "1" if torch_first else "0"],
                          capture_output=True, text=True, env=env, cwd=_PACKAGE_PARENT, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"ok": False, "reason": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(lines[-1])


def _median_of(results):
    times = [r["median_s"] for r in results if r.get("ok")]
    return statistics.median(times) if times else None


def _reason(results):
    return next((r["reason"] for r in results if not r.get("ok")), "")


def import_order(threads, quick=False, rounds=None):
    """The compiled step with torch imported first vs dlcore first, in fresh processes."""
    rounds = rounds or (1 if quick else 4)
    samples = 5 if quick else 15
    runs = {"dlcore first": [], "torch first": []}
    for i in range(rounds):
        # A B, then B A: a machine that speeds up or slows down during the case biases neither
        for torch_first in ((False, True) if i % 2 == 0 else (True, False)):
            key = "torch first" if torch_first else "dlcore first"
            runs[key].append(_step_in_fresh_process("cython", threads, samples, torch_first=torch_first))
    first, second = _median_of(runs["dlcore first"]), _median_of(runs["torch first"])
    return {
        "name": PROCESS_CASES[0], "threads": threads, "rounds": rounds,
        "dlcore_first_s": first, "torch_first_s": second,
        "ratio": second / first if first and second else None,
        "reason": _reason(runs["dlcore first"] + runs["torch first"]),
        "runs": runs,
    }


def _spinner():
    return subprocess.Popen([sys.executable, "-c", _SPIN_SCRIPT],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def busy_machine(threads, quick=False, rounds=None, with_torch=True):
    """The step (compiled, and torch's) quiet vs with one extra CPU-bound process."""
    rounds = rounds or (1 if quick else 2)
    samples = 5 if quick else 9
    impls = ["cython"] + (["torch"] if with_torch else [])
    runs = {f"{impl} {load}": [] for impl in impls for load in ("quiet", "busy")}
    for _ in range(rounds):
        for impl in impls:
            runs[f"{impl} quiet"].append(_step_in_fresh_process(impl, threads, samples))
            spinner = _spinner()
            try:
                time.sleep(0.2)  # the busy loop is running before the step starts
                runs[f"{impl} busy"].append(_step_in_fresh_process(impl, threads, samples))
            finally:
                spinner.kill()
                spinner.wait()
    out = {"name": PROCESS_CASES[1], "threads": threads, "rounds": rounds, "extra_processes": 1}
    for impl in impls:
        quiet, busy = _median_of(runs[f"{impl} quiet"]), _median_of(runs[f"{impl} busy"])
        out[impl] = {"quiet_s": quiet, "busy_s": busy, "ratio": busy / quiet if quiet and busy else None,
                     "reason": _reason(runs[f"{impl} quiet"] + runs[f"{impl} busy"])}
    out["runs"] = runs
    return out


def run_process_cases(threads, quick=False, filter=None, with_torch=True, show=None):
    """Both process-level cases (those whose name contains ``filter``), as a list of dicts."""
    out = []
    for name, fn in zip(PROCESS_CASES, (import_order, busy_machine)):
        if filter and filter.lower() not in name:
            continue
        if fn is import_order and not with_torch:
            out.append({"name": name, "ratio": None, "reason": "torch is not installed"})
            continue
        if show:
            show(f"{name}: timing the step in fresh processes")
        out.append(fn(threads, quick) if fn is import_order else fn(threads, quick, with_torch=with_torch))
    return out


def format_process_cases(results):
    """Text lines for the report (empty when there is nothing to show)."""
    lines = []
    for r in results:
        if r["name"] == PROCESS_CASES[0]:
            if r.get("ratio") is None:
                lines.append(f"{r['name']}: n/a ({r.get('reason')})")
                continue
            lines.append(f"{r['name']} (fresh processes, {r['threads']} threads): dlcore imported first "
                         f"{r['dlcore_first_s'] * 1e3:.2f} ms, torch imported first "
                         f"{r['torch_first_s'] * 1e3:.2f} ms per step; ratio {r['ratio']:.2f}")
        else:
            parts = []
            for impl, label in (("cython", "compiled"), ("torch", "torch")):
                m = r.get(impl)
                if not m:
                    continue
                if m.get("ratio") is None:
                    parts.append(f"{label} n/a ({m.get('reason')})")
                else:
                    parts.append(f"{label} {m['quiet_s'] * 1e3:.2f} ms quiet, {m['busy_s'] * 1e3:.2f} ms "
                                 f"busy (x{m['ratio']:.2f})")
            lines.append(f"{r['name']} (one extra CPU-bound process, {r['threads']} threads): "
                         + "; ".join(parts))
    return lines
