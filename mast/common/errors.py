"""Errors of the library that name what the caller got wrong.

Library code is called from Python as often as from the ``mast`` command, so
its messages name arguments by their Python names (``first_box``,
``checkpoint``), never by a command-line flag. :class:`ArgumentError` carries
the argument's name beside the message; the command line shows the same
message under its own flag (:func:`mast.cli.error_text`).
"""
from __future__ import annotations


class ArgumentError(ValueError):
    """A value the caller passed for ``argument`` (a Python parameter or setting name) is wrong.

    ``str(error)`` is ``"<argument>: <message>"``; :attr:`message` is the text alone.
    ``mentions``: other arguments the message names as words (``"set overwrite to replace
    them"``), which the command line also shows as its flags.
    """

    def __init__(self, argument: str, message: str, mentions: tuple[str, ...] = ()) -> None:
        self.argument, self.message, self.mentions = argument, message, tuple(mentions)
        super().__init__(f"{argument}: {message}")

    def __reduce__(self):  # picklable across processes (DataLoader workers, process pools)
        return type(self), (self.argument, self.message, self.mentions)


class MissingPathError(ArgumentError, FileNotFoundError):
    """The file or folder given as ``argument`` does not exist (also a ``FileNotFoundError``)."""
