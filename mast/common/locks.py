"""One writer per output folder: an exclusive lock held for the whole command.

A command that writes a folder first takes the folder's lock: ``fcntl.flock``
on ``<folder>/.mast-lock``, a file holding the writer's PID. A second process
asking for the same folder is refused with one line naming that PID. The
operating system drops the lock when its process ends, however it ends, so
a lock file left by a killed process is simply locked again; a normal end
removes the file.

Within one process a lock is shared: taking a folder's lock again (a command
called twice from Python, a library function given a path) counts up, and
:func:`unlock_folder` counts down, releasing at zero. :func:`release_all`
releases every lock of the process (the end of a command, and interpreter exit).

The lock file is no result: output folder checks ignore it (:func:`is_lock_file`).
"""
from __future__ import annotations

import atexit
import fcntl
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from mast.common.errors import ArgumentError

LOCK_NAME = ".mast-lock"
_PID_TEXT = re.compile(r"^\d*\n?$")  # what a lock file holds: a PID, or nothing yet


class FolderInUse(ArgumentError, OSError):
    """The folder given as ``argument`` is being written by another process (PID in the message)."""


@dataclass
class _Held:
    descriptor: int
    path: Path
    owner: int  # the PID that took it: a forked child does not hold its parent's locks
    count: int = 1


_held: dict[Path, _Held] = {}


def is_lock_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as a folder's lock file."""
    return Path(path).name == LOCK_NAME


def _holder(path: Path) -> str:
    """The PID written in lock file ``path`` (its holder writes it just after locking)."""
    for _ in range(40):
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def _open_locked(path: Path, folder: Path, argument: str) -> int:
    """A descriptor of ``path`` holding its exclusive lock, or :class:`FolderInUse`."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderInUse(argument, f"{folder} is being written by another mast process (PID "
                                        f"{_holder(path)}); wait for it to end or choose another folder") from None
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)  # its holder removed the file as it released it: lock the new one


def lock_folder(folder: str | os.PathLike, argument: str = "out") -> None:
    """Takes the exclusive lock of the existing ``folder`` for this process (see the module docstring).

    Raises:
        FolderInUse: another process holds it; the message names its PID.
        ArgumentError: ``folder`` holds a ``.mast-lock`` that is no lock file of mast's.
    """
    key = Path(folder).resolve()
    held = _held.get(key)
    if held is not None and held.owner == os.getpid():
        held.count += 1
        return
    path = key / LOCK_NAME
    descriptor = _open_locked(path, Path(folder), argument)
    if not _PID_TEXT.match(os.pread(descriptor, 64, 0).decode(errors="replace")):
        os.close(descriptor)
        raise ArgumentError(argument, f"{path} is not a mast lock file; move it away or choose another folder")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _held[key] = _Held(descriptor, path, os.getpid())


def unlock_folder(folder: str | os.PathLike) -> None:
    """Gives back one :func:`lock_folder` of this process; the last one releases the lock."""
    key = Path(folder).resolve()
    held = _held.get(key)
    if held is None or held.owner != os.getpid():
        return
    held.count -= 1
    if held.count == 0:
        _release(key)


def _release(key: Path) -> None:
    held = _held.pop(key)
    try:  # removed while still locked, so that no one locks the old file after us (see _open_locked)
        if os.path.samestat(os.fstat(held.descriptor), os.stat(held.path, follow_symlinks=False)):
            os.unlink(held.path)
    except OSError:
        pass  # the folder is gone or read-only now: the file stays, and the next writer locks it
    os.close(held.descriptor)


def release_all() -> None:
    """Releases every folder lock this process holds (a command's end, interpreter exit)."""
    for key in [key for key, held in _held.items() if held.owner == os.getpid()]:
        _release(key)


atexit.register(release_all)
