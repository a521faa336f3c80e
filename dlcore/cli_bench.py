"""``python -m dlcore bench``: the benchmark report (compiled vs NumPy vs torch).

    python -m dlcore bench --quick                  # about a minute
    python -m dlcore bench --json bench.json --plot bench.png
    python -m dlcore bench --filter conv2d --threads 1
    python -m dlcore bench --list
"""
import argparse
import sys

__all__ = ["add_parser", "run"]


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_parser(subparsers):
    """Register the ``bench`` subcommand; its handler returns the exit code."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark report: compiled vs NumPy vs PyTorch (table, JSON, plot)",
        description="Time every case on the compiled backend, the NumPy twin and torch "
        "(when installed) in one run, with the machine's measured limits. A full run takes "
        "under 15 minutes on 2 cores; --quick about one minute.",
    )
    p.add_argument("--quick", action="store_true",
                   help="a ~one-minute subset (the epoch is estimated from a fraction)")
    p.add_argument("--filter", metavar="SUBSTR", help="only cases whose name or key contains SUBSTR")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for the compiled kernels, BLAS and torch (default: dlcore.get_num_threads())")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of the ratios (needs matplotlib)")
    p.add_argument("--torch", dest="torch_mode", default="auto",
                   choices=("auto", "inprocess", "subprocess", "off"),
                   help="where the torch column runs (auto: in this process unless importing torch "
                   "measurably slows the compiled kernels)")
    p.add_argument("--budget", type=_positive_float, metavar="SECONDS",
                   help="timing budget per case (default 2 quick, 9 full)")
    p.add_argument("--max-minutes", type=_positive_float, metavar="M",
                   help="target for the whole run (default 13 full, 1.5 quick): budgets shrink "
                   "when the run falls behind")
    p.add_argument("--no-thread-column", dest="thread_column", action="store_false",
                   help="skip the compiled one-thread runs")
    p.add_argument("--process-cases", dest="process_cases", action="store_true", default=None,
                   help="also time the LeNet-5 step in fresh processes: import order (torch first vs "
                   "dlcore first) and a busy machine (one extra CPU-bound process); default in a full run")
    p.add_argument("--no-process-cases", dest="process_cases", action="store_false",
                   help="skip those process-level cases")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress line on stderr")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.set_defaults(func=run)
    return p


def run(args):
    from .bench import report as rep

    if args.list:
        print(rep.list_cases(quick=args.quick, filter=args.filter))
        return 0
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("dlcore bench: matplotlib is not installed (pip install matplotlib); "
                  "--plot will be skipped", file=sys.stderr)
    try:
        report = rep.run_bench(quick=args.quick, filter=args.filter, threads=args.threads,
                               torch_mode=args.torch_mode, budget=args.budget,
                               thread_column=args.thread_column, progress=args.progress,
                               max_minutes=args.max_minutes, process_cases=args.process_cases)
    except ValueError as exc:
        print(f"dlcore bench: {exc}", file=sys.stderr)
        return 2
    print(rep.format_report(report))
    if args.json:
        rep.write_json(report, args.json)
        print(f"\nJSON written to {args.json}")
    if args.plot:
        try:
            rep.plot_ratios(report, args.plot)
            print(f"plot written to {args.plot}")
        except rep.PlotUnavailable as exc:
            print(f"dlcore bench: {exc}", file=sys.stderr)
    failed = any(str(s).startswith("FAIL") for c in report["cases"] for s in c["checks"].values())
    return 1 if failed else 0
