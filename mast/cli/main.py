"""The ``mast`` command line: one entry point, one sub-command per job.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed arguments and returning an exit code). This module adds
what every command shares: ``--threads`` on each one that computes, one-line
warnings and messages, one line (exit status 130) on Ctrl-C, and no traceback when
the reader of its output goes away.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import os
import sys
import warnings
from collections.abc import Iterator

from mast._version import __version__
from mast.cli import error_text
from mast.common.errors import ArgumentError

SUBCOMMANDS = ("demo", "train", "centroids", "propagate", "evaluate", "visualize", "config", "info", "convert",
               "compare", "extract_frames")

#: Commands that only print something quickly; every other command computes, and takes --threads.
QUICK_COMMANDS = ("config", "info")

#: The exit statuses of a command ended by Ctrl-C (SIGINT) and by a closed output pipe (SIGPIPE),
#: as shells report them: 128 + the signal's number.
INTERRUPTED, READER_GONE = 130, 141


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
    for name, command in subparsers.choices.items():
        if name not in QUICK_COMMANDS:
            _add_threads_option(command)
    return parser


def _add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch and OpenCV (default: torch's choice, one per core); "
                             "give each of several jobs sharing a machine its share of the cores")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command line as given, for the run records (main() is also called with a list).
    args.command_line = ["mast", *(sys.argv[1:] if argv is None else argv)]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mast.common.locks import release_all

    ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        status = _run(args)
        sys.stdout.flush()  # a reader gone shows here, not as an error at exit
        return status
    except KeyboardInterrupt:  # Ctrl-C is the user's choice, not a fault: one line, no traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the clean-up below
        _write_line(f"mast {args.command}: interrupted")
        return INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (`mast config list | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return READER_GONE
    finally:
        release_all()  # the output folders' locks last as long as the command
        signal.signal(signal.SIGINT, ctrl_c)  # main() may be called again in this process


def _run(args: argparse.Namespace) -> int:
    """The parsed command, under its threads, with its warnings and messages as one-line reports."""
    with contextlib.ExitStack() as context:
        try:
            context.enter_context(_threads(args))
        except ArgumentError as error:  # checked before the command's first step
            _write_line(f"mast {args.command}: error: {error_text(error)}")
            return 2
        context.enter_context(warnings.catch_warnings())
        context.enter_context(_library_messages(args.command))
        warnings.showwarning = _one_line_warning(args.command)
        return int(args.func(args) or 0)


@contextlib.contextmanager
def _threads(args: argparse.Namespace) -> Iterator[None]:
    """The command's ``--threads`` for its duration (and in its run records); none given: torch's choice."""
    if getattr(args, "threads", None) is None:
        yield
        return
    from mast.common.threads import using_threads

    with using_threads(args.threads):
        yield


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
