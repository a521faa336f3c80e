"""The dlcore project's own speed targets, checked against a saved benchmark report.

``dlcore bench`` is a user's tool and prints measurements only; what the project aims
for lives here::

    dlcore bench --json bench.json            # or --quick
    python benchmarks/targets.py bench.json   # one line per target: met, GAP or n/a
    python benchmarks/targets.py bench.json --strict   # exit 1 when any target is a GAP

Each target is a ratio measured within one run (the machines are shared and noisy):

* LeNet-5 training step: compiled time / torch time <= 0.40 (torch with autograd and
  ``torch.optim.Adam``; the faster of torch in the bench's process and in its own process
  with its default settings), and at least 4x faster than the NumPy backend; the
  60,000-sample epoch <= 0.50x torch;
* convolution forward+backward (``conv2d.fb.*``): at least 3x faster than the NumPy twin
  on the LeNet shapes, 2.5x on the others;
* compute-bound cases (marked ``gemm`` in ``dlcore/bench/cases.py``): at least 70% of the
  GFLOP/s of NumPy's float32 GEMM measured in the same run;
* memory-bound cases (marked ``bandwidth``): at most 1.5x the time the bytes that must move
  take at the measured memory bandwidth (``bandwidth_gbs``: the median rate of the
  in-place ``a += b`` probe on arrays far past the cache, counted like the cases' bytes;
  see ``dlcore/bench/machine.py``), timed in turn with the case's own samples so that
  both see the same moments of a shared machine. Case times are medians too, so the ratio
  compares like with like;
* the process-level cases (``dlcore/bench/process.py``): the step with torch imported
  first <= 1.1x the step with dlcore first; with one extra CPU-bound process <= 2.5x the
  quiet step (torch's ratio under the same load is shown for comparison).
"""
import argparse
import json
import sys


def targets(report):
    """The targets for one report (a dict as ``dlcore bench --json`` writes), each a dict
    ``{"target", "value", "goal", "status": "met" | "GAP" | "n/a", "detail"}``."""
    cases = {c["key"]: c for c in report["cases"]}
    limits = report.get("limits") or {}
    out = []

    def add(name, value, goal, met, detail):
        out.append({"target": name, "value": value, "goal": goal,
                    "status": "n/a" if value is None else ("met" if met else "GAP"), "detail": detail})

    step = cases.get("lenet5.train_step.b64")
    if step:
        r = step["metrics"].get("cython/torch")
        add("LeNet-5 train step: compiled time / torch time", r, "<= 0.40",
            r is not None and r <= 0.40,
            "torch: autograd + torch.optim.Adam; the faster of in-process and own-process torch")
        r = step["metrics"].get("cython/numpy")
        speedup = 1 / r if r else None
        add("LeNet-5 train step: speedup over the NumPy backend", speedup, ">= 4x",
            speedup is not None and speedup >= 4, "numpy time / compiled time")
    epoch = cases.get("lenet5.epoch.60000")
    if epoch:
        r = epoch["metrics"].get("cython/torch")
        add("LeNet-5 epoch: compiled time / torch time", r, "<= 0.50", r is not None and r <= 0.50,
            "the faster of in-process and own-process torch")
    for p in report.get("process_cases") or []:
        if p["name"] == "lenet5 import order":
            r = p.get("ratio")
            add("LeNet-5 train step: torch imported first / dlcore imported first", r, "<= 1.1",
                r is not None and r <= 1.1, "compiled step, each order in fresh processes")
        elif p["name"] == "lenet5 busy machine":
            r = (p.get("cython") or {}).get("ratio")
            t = (p.get("torch") or {}).get("ratio")
            add("LeNet-5 train step: with one extra CPU-bound process / quiet", r, "<= 2.5",
                r is not None and r <= 2.5,
                f"compiled, {p['threads']} threads; torch under the same load: "
                + ("n/a" if t is None else f"x{t:.2f}"))
    for c in cases.values():
        if c["key"].startswith("conv2d.fb."):
            r = c["metrics"].get("cython/numpy")
            speedup = 1 / r if r else None
            goal = 3.0 if ".lenet" in c["key"] else 2.5
            add(f"{c['name']}: speedup over the NumPy twin", speedup, f">= {goal:g}x",
                speedup is not None and speedup >= goal, "numpy time / compiled time")
        if c.get("target") == "gemm":
            f = c["metrics"].get("fraction_of_gemm")
            add(f"{c['name']}: fraction of measured GEMM GFLOP/s", f, ">= 0.70", f is not None and f >= 0.70,
                f"{c['metrics'].get('gflops') or float('nan'):.1f} GFLOP/s vs GEMM "
                f"{limits.get('gemm_gflops') or float('nan'):.1f}")
        elif c.get("target") == "bandwidth":
            x = c["metrics"].get("times_floor")
            add(f"{c['name']}: time / memory-bandwidth floor", x, "<= 1.5", x is not None and x <= 1.5,
                f"{c['bytes'] / 1e6:.0f} MB must move; floor at "
                f"{c['metrics'].get('floor_gbs') or limits.get('bandwidth_gbs') or float('nan'):.1f} GB/s "
                f"(a+=b median, {c['metrics'].get('floor_measured', 'at the start of the run')})")
    return out


def format_targets(verdicts):
    lines = []
    for t in verdicts:
        shown = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"[{t['status']:>4}] {t['target']}: {shown} (goal {t['goal']}; {t['detail']})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="check dlcore's speed targets against a bench JSON report")
    parser.add_argument("report", help="a file written by `dlcore bench --json PATH`")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is a GAP")
    args = parser.parse_args(argv)
    with open(args.report) as fh:
        verdicts = targets(json.load(fh))
    print(format_targets(verdicts) if verdicts else "no targeted case in this report")
    return 1 if args.strict and any(t["status"] == "GAP" for t in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
