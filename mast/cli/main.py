"""The ``mast`` command line: one entry point, one sub-command per job.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed arguments and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from mast._version import __version__

SUBCOMMANDS = ("demo", "train", "centroids", "propagate", "evaluate", "visualize")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mast",
        description="Self-supervised dense correspondence learning from raw video "
        "(MAST / CorrFlow): pretrain, fine-tune, propagate masks, evaluate on DAVIS.",
    )
    parser.add_argument("--version", action="version", version=f"mast {__version__}")
    parser.set_defaults(command_line=None)  # filled in by main(); run records fall back to sys.argv
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"mast.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command line as given, for the run records (main() is also called with a list).
    args.command_line = ["mast", *(sys.argv[1:] if argv is None else argv)]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning(args.command)
        return int(args.func(args) or 0)


def _one_line_warning(command: str):
    """Warnings as ``mast COMMAND: warning: ...`` lines that do not break a progress bar."""
    from tqdm import tqdm

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        tqdm.write(f"mast {command}: warning: {message}", file=sys.stderr)

    return show


if __name__ == "__main__":
    sys.exit(main())
