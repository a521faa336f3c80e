"""Command line: ``python -m dlcore info | train | bench | verify | doctor``."""
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
    # A subcommand module that fails to import is a bug to see, not a command to hide.
    from .cli_bench import add_parser as add_bench
    from .cli_train import add_parser as add_train
    from .doctor import add_parser as add_doctor
    from .verify import add_parser as add_verify

    add_train(sub)
    add_bench(sub)
    add_verify(sub)
    add_doctor(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
