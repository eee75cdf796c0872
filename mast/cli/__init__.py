"""Command-line interface (``mast COMMAND --help``)."""
from __future__ import annotations

import re


def flag_name(argument: str, flags: dict[str, str] | None = None) -> str:
    """The command-line flag of a library argument: ``flags[argument]`` when a command
    names it otherwise, else ``first_box`` -> ``--first-box``."""
    return (flags or {}).get(argument) or "--" + argument.replace("_", "-")


def error_text(error: BaseException, flags: dict[str, str] | None = None) -> str:
    """An error's message as the command line shows it: a library
    :class:`~mast.common.errors.ArgumentError` under the command's flag for its argument."""
    from mast.common.errors import ArgumentError

    if not isinstance(error, ArgumentError):
        return str(error)
    message = error.message
    for name in error.mentions:
        # A whole word only: not part of another name, a flag, a file name (model.pt) or a path (runs/data/x).
        message = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w/-]|\.\w)", flag_name(name, flags), message)
    return f"{flag_name(error.argument, flags)}: {message}"
