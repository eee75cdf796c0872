"""Atomic file writing and the temporaries it leaves when a process is killed.

Every file or folder mast writes is first written under a hidden temporary
name beside its target and renamed over it when complete, so a reader never
sees half a file. Temporary names follow one rule,
``.<target name>.mast-tmp-<pid>-<random>[.<suffix>]``, so that

* readers can ignore them (:func:`is_temporary`), and
* the next run of a command on the same folder can remove those whose
  process is gone (:func:`remove_stale_temporaries`) without ever touching a
  file mast did not write, or one a concurrent run is still writing.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import IO, Callable, Iterator

PathLike = str | os.PathLike

TEMPORARY_MARK = ".mast-tmp-"
# The optional suffix is the target's own (see atomic_write_with).
_TEMPORARY_NAME = re.compile(r"^\..+\.mast-tmp-(\d+)-[0-9a-f]{8}(\.[A-Za-z0-9]+)?$")


def temporary_sibling(path: PathLike) -> Path:
    """A fresh hidden temporary name in ``path``'s folder, owned by this process."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temporary(path: PathLike) -> bool:
    """Whether ``path`` is named like a temporary of :func:`temporary_sibling`."""
    return _TEMPORARY_NAME.match(Path(path).name) is not None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Removes the temporaries directly in ``folder`` whose writing process is gone.

    Returns the removed paths (empty when ``folder`` does not exist). Files
    and folders not named by :func:`temporary_sibling` are never touched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _TEMPORARY_NAME.match(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Opens a temporary sibling of ``path`` for writing; renames it over ``path`` on success.

    On an exception the temporary is removed and ``path`` is left untouched.
    Parent folders are created. ``mode`` is ``"w"`` or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        # 'x': never follow a planted file; the usual umask permissions apply.
        with open(temporary, mode.replace("w", "x"), **kwargs) as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_with(path: PathLike, write: Callable[[Path], None]) -> None:
    """Calls ``write(temporary_path)``, then renames the result over ``path``.

    For writers that want a file name rather than a handle (``torch.save``,
    ``cv2.imwrite``, video writers): the temporary keeps ``path``'s suffix
    so that writers choosing a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    temporary = temporary.with_name(temporary.name + path.suffix) if path.suffix else temporary
    try:
        write(temporary)
        if not temporary.exists():
            raise OSError(f"writing {path} produced no file")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yields a temporary folder beside ``path``; on success it replaces ``path``.

    A previous ``path`` is moved aside first and deleted only once the new
    folder is in place, so a failure at any point leaves either the old or the
    new folder, never a mix. Callers must only pass a ``path`` they own (see
    :mod:`mast.common.outputs`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(path)
    staging.mkdir()
    try:
        yield staging
        previous = temporary_sibling(path) if path.exists() else None
        if previous is not None:
            os.replace(path, previous)
        os.replace(staging, path)
        if previous is not None:
            _remove(previous)
    except BaseException:
        _remove(staging)
        raise
