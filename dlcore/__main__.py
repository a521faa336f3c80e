"""Command line: ``python -m dlcore info | train | bench``."""
import argparse
import sys


def _info(args):
    from . import build_info

    info = build_info()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def main(argv=None):
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="python -m dlcore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dlcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print build_info() as a table").set_defaults(func=_info)
    try:
        from .cli_train import add_parser as add_train
        add_train(sub)
    except ImportError:
        pass
    try:
        from .cli_bench import add_parser as add_bench
        add_bench(sub)
    except ImportError:
        pass
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
