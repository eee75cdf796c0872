"""Command-line interface (``mast COMMAND --help``)."""
from __future__ import annotations


def comma_names(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``: the names of a comma-separated argument (None -> [])."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def flag_name(argument: str, flags: dict[str, str] | None = None) -> str:
    """The command-line flag of a library argument: ``flags[argument]`` when a command
    names it otherwise, else ``first_box`` -> ``--first-box``."""
    return (flags or {}).get(argument) or "--" + argument.replace("_", "-")


def error_text(error: BaseException, flags: dict[str, str] | None = None) -> str:
    """An error's message as the command line shows it: a library
    :class:`~mast.common.errors.ArgumentError` under the command's flag for its argument."""
    from mast.common.errors import ArgumentError

    if isinstance(error, ArgumentError):
        return f"{flag_name(error.argument, flags)}: {error.message}"
    return str(error)
