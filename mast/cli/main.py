"""The ``mast`` command line: one entry point, one sub-command per job.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed arguments and returning an exit code).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import warnings
from collections.abc import Iterator

from mast._version import __version__

SUBCOMMANDS = ("demo", "train", "centroids", "propagate", "evaluate", "visualize", "config", "info", "extract_frames")


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
    with warnings.catch_warnings(), _library_messages(args.command):
        warnings.showwarning = _one_line_warning(args.command)
        return int(args.func(args) or 0)


def _write_line(text: str) -> None:
    """One line on stderr that does not break a progress bar (stderr looked up per line:
    a caller or a test may have replaced it)."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def _one_line_warning(command: str):
    """Warnings as ``mast COMMAND: warning: ...`` lines."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        _write_line(f"mast {command}: warning: {message}")

    return show


class _LineHandler(logging.Handler):
    """The library's log records (logger ``mast``) as ``mast COMMAND: message`` lines."""

    def __init__(self, command: str) -> None:
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        _write_line(f"mast {self.command}: {record.getMessage()}")


@contextlib.contextmanager
def _library_messages(command: str) -> Iterator[None]:
    """Shows the library's INFO messages for the duration of one command, whichever it is."""
    logger = logging.getLogger("mast")
    handler, level = _LineHandler(command), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
