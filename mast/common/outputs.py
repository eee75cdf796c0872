"""Output folders that never destroy what mast did not write.

Every output folder of a command that writes results (``mast propagate``,
``mast visualize``) holds a ``run.json`` record: the command, the settings
that made the results, the library version, each invocation's command line,
and every file the command wrote there. The record makes these rules
checkable before anything is written:

* an output may not be, contain or lie inside an input folder
  (:func:`check_separate`);
* a folder without a record must be empty (or not exist): mast never writes
  among files it did not write;
* a folder whose record holds other settings is refused unless
  ``overwrite=True``; then the files of the previous run (those its record
  lists, and those of records in sub-folders) are removed, nothing else;
* an entry (a sequence folder) is replaced only when every file in it is
  listed in the record, and its name is a plain name (:func:`is_plain_name`);
* a record (or one in a sub-folder) naming a file outside its folder is
  foreign, whatever else it holds: nothing outside the folder is ever removed;
* temporaries left in the folder by a killed run are removed at the start
  (:func:`mast.common.files.remove_stale_temporaries`);
* one process writes a folder at a time: :meth:`OutputFolder.check` (or
  :meth:`OutputFolder.start`, for a folder made then) takes its lock
  (:mod:`mast.common.locks`) until the command ends; the lock file is
  neither a result nor a foreign file.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from mast.common.errors import ArgumentError
from mast.common.files import (
    PathLike, atomic_directory, atomic_write_text, atomic_write_with, is_temporary, remove_stale_temporaries,
)
from mast.common.locks import is_lock_file, lock_folder, unlock_folder
from mast.common.threads import threads_in_use

RECORD_NAME = "run.json"
RECORD_FORMAT = 1


class OutputConflict(ArgumentError):
    """An output folder (argument ``out`` unless said otherwise) that cannot be written without
    losing or mixing files."""


def _resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def is_plain_name(name: str) -> bool:
    """Whether ``name`` names an entry of a folder: not empty, ``.``, ``..`` or holding a path separator."""
    separators = {"/", os.sep, os.altsep} - {None}
    return name not in ("", ".", "..") and not any(sep in name for sep in separators)


def _inside(folder: Path, name: str) -> bool:
    """Whether the relative path ``name`` names something in ``folder``: no ``..``, and its parent
    folders, links resolved, inside ``folder`` (a last component that is a link is itself in it)."""
    path = Path(name)
    if not name or path.is_absolute() or ".." in path.parts:
        return False
    return (folder / path).parent.resolve().is_relative_to(folder.resolve())


def foreign_record_entries(folder: Path) -> list[str]:
    """``record: name`` for every name the records in ``folder`` and its sub-folders list outside
    their own folder (or a record whose folder resolves outside ``folder``); ``[]`` when all is inside."""
    foreign = []
    for record in sorted(folder.rglob(RECORD_NAME)) if folder.is_dir() else []:
        if not record.parent.resolve().is_relative_to(folder.resolve()):
            foreign.append(f"{record}: its folder is a link out of {folder}")
            continue
        foreign += [f"{record}: {name}" for name in _listed(record.parent) or [] if not _inside(record.parent, name)]
    return foreign


def check_separate(output: PathLike, inputs: Mapping[str, PathLike | Sequence[PathLike] | None],
                   argument: str = "out", may_hold_output: frozenset[str] = frozenset()) -> None:
    """Refuses an output that is, contains or lies inside an input.

    Args:
        output: the folder (or file) the command writes, given as ``argument``.
        inputs: ``{argument: path or paths}`` of what the command reads (folders
            or files; None entries are ignored). Symbolic links are resolved first.
        may_hold_output: arguments of input folders the output may lie inside
            (as a new sub-folder; the caller checks it collides with nothing read).

    Raises:
        OutputConflict: naming both arguments and paths.
    """
    out = _resolved(output)
    for name, given in inputs.items():
        for path in [given] if isinstance(given, (str, os.PathLike)) else given or []:
            source = _resolved(path)
            relation = ("is" if out == source else "contains" if out in source.parents
                        else "lies inside" if source in out.parents and name not in may_hold_output else None)
            if relation is not None:
                raise OutputConflict(argument, f"{output} {relation} the input {name} {path}; write elsewhere",
                                     mentions=(name,))


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file (checkpoints are identified by content, not name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def settings_difference(ours: dict, theirs: dict) -> list[str]:
    """``key: ours vs theirs`` for every dotted key whose values differ."""
    a, b = _flatten(ours), _flatten(theirs)
    return [f"{key}: {a.get(key)!r} now, {b.get(key)!r} there" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def _normalised(settings: dict) -> dict:
    """Settings as they read back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(settings, default=str))


def _files_under(folder: Path, root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and not is_lock_file(p))


class OutputFolder:
    """A command's output folder, checked up front and recorded in ``run.json``.

    Use: ``folder = OutputFolder(path, "propagate", settings, overwrite).check()``,
    then :meth:`check_entry` for every entry the command will write, then
    :meth:`start` (the first write), then :meth:`entry` / :meth:`write_file`.

    Args:
        path: the folder.
        command: the command writing it (a folder is never shared by two commands).
        settings: JSON-able settings that made the results; a folder made with
            other settings is refused unless ``overwrite``.
        overwrite: allow replacing the previous run's files (only those).
        argument: the caller's argument naming ``path``, for errors.
    """

    def __init__(self, path: PathLike, command: str, settings: dict, overwrite: bool = False,
                 argument: str = "out") -> None:
        self.path, self.command, self.argument = Path(path), command, argument
        self.settings, self.overwrite = _normalised(settings), overwrite
        self.previous: dict | None = None
        self.replace_previous = False
        self.files: set[str] = set()
        self.entries: dict[str, dict] = {}
        self.record: dict = {}
        self.locked = False

    # -- checks (nothing written) -------------------------------------------

    def _conflict(self, message: str) -> OutputConflict:
        return OutputConflict(self.argument, message)

    def check(self) -> "OutputFolder":
        """Validates the folder and, when it exists, takes its lock (released again when it is
        refused); removes only stale temporaries of killed runs."""
        if self.path.exists() and not self.path.is_dir():
            raise self._conflict(f"{self.path} is an existing file, not a folder")
        self._check_writable()
        if not self.path.is_dir():
            return self
        self._lock()
        try:
            return self._check_contents()
        except BaseException:
            self.release()
            raise

    def _check_contents(self) -> "OutputFolder":
        self.previous = self.read_record()
        self._check_record_entries()
        remove_stale_temporaries(self.path)  # only now: a foreign folder is left as it is
        if self.previous is None:
            foreign = [p.name for p in sorted(self.path.iterdir()) if not (is_temporary(p) or is_lock_file(p))]
            if foreign:
                raise self._conflict(
                    f"{self.path} holds files mast did not write ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}) and no {RECORD_NAME}; choose an empty or new folder")
            return self
        self.files = set(self.previous.get("files", []))
        entries = self.previous.get("entries")
        self.entries = entries if isinstance(entries, dict) else {}
        difference = settings_difference(self.settings, self.previous.get("settings", {}))
        if difference and not self.overwrite:
            raise OutputConflict(
                self.argument, f"{self.path} holds results of other settings ({'; '.join(difference[:4])}"
                f"{'; ...' if len(difference) > 4 else ''}); set overwrite to replace them, or choose another folder",
                mentions=("overwrite",))
        self.replace_previous = bool(difference)
        return self

    def _check_record_entries(self) -> None:
        """Refuses records that name files outside their folder: mast never wrote them, and
        removing what they list (an overwrite, derived files) would reach outside."""
        foreign = foreign_record_entries(self.path)
        if foreign:
            raise self._conflict(f"records in {self.path} name files outside it ({'; '.join(foreign[:3])}"
                                 f"{'; ...' if len(foreign) > 3 else ''}), so mast did not write them; "
                                 f"choose another folder")

    def _check_writable(self) -> None:
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise self._conflict(f"{self.path}: {existing} is a file, so the folder cannot be made")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise self._conflict(f"{self.path}: {existing} is not writable")

    def read_record(self) -> dict | None:
        """The folder's record; None without one; :class:`OutputConflict` for a record
        mast did not write or one of another command."""
        path = self.path / RECORD_NAME
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise self._conflict(f"{path} is not a readable mast record ({error}); choose another folder") from None
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or _listed(self.path) is None:
            raise self._conflict(f"{path} was not written by mast; choose another folder")
        if record.get("command") != self.command:
            raise self._conflict(f"{self.path} holds the output of `mast {record.get('command')}`, "
                                 f"not of `mast {self.command}`; choose another folder")
        return record

    def check_entry(self, name: str) -> None:
        """Refuses to write entry ``name`` over a file or folder mast did not write there, or
        anywhere but in the folder (``name`` must be a plain name)."""
        if not is_plain_name(name):
            raise self._conflict(f"{name!r} is not a plain file or folder name, so it would not be "
                                 f"written in {self.path}")
        target = self.path / name
        if not target.exists():
            return
        present = _files_under(target, self.path) if target.is_dir() else [name]
        known = self.files | recorded_files(target, prefix=f"{name}/")
        foreign = [f for f in present if f not in known]
        if foreign:
            raise self._conflict(f"{target} holds files mast did not write ({', '.join(foreign[:3])}); "
                                 f"move them away or choose another folder")

    # -- writing --------------------------------------------------------------

    def start(self, details: dict | None = None, start_over: bool = False) -> None:
        """The first write: clears the previous run's files when replacing them, then the record.

        ``details`` (JSON-able) join this invocation's history entry; its
        ``argv`` defaults to ``sys.argv``. ``start_over``: replace the previous
        run's files even when its settings were the same (a command that
        remakes everything it wrote, such as the demo).
        """
        self.replace_previous = self.replace_previous or (start_over and self.previous is not None)
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.locked:  # made since check(): another writer may have made it too
            self._lock()
            if self.previous is None and any(not (is_temporary(p) or is_lock_file(p)) for p in self.path.iterdir()):
                self.release()
                raise self._conflict(f"{self.path} was written by another process while this one checked it; "
                                     f"choose another folder or run again")
        if self.replace_previous:
            remove_recorded_files(self.path)
            self.files, self.entries = set(), {}
        for name in self.previous.get("derived", []) if self.previous and not self.replace_previous else []:
            (self.path / name).unlink(missing_ok=True)  # about results about to change
        history = list(self.previous.get("history", [])) if self.previous and not self.replace_previous else []
        now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        details = {key: value for key, value in (details or {}).items() if value is not None}
        history.append({"argv": list(sys.argv), "time": now, "threads": threads_in_use(), **_normalised(details)})
        from mast._version import __version__  # the package root only defines the version

        self.record = {"format": RECORD_FORMAT, "command": self.command, "mast_version": __version__,
                       "settings": self.settings, "history": history, "files": []}
        self._save()

    @contextlib.contextmanager
    def entry(self, name: str, details: dict | None = None) -> Iterator[Path]:
        """Yields a staging folder that replaces ``path/name`` (and its record) on success.

        ``details`` (JSON-able: what the entry was made from) are recorded with it, for
        :meth:`entry_details`; the entry and its details are saved together, after its files.
        """
        with atomic_directory(self.path / name) as staging:
            yield staging
            written = [f"{name}/{rel}" for rel in _files_under(staging, staging)]
        self.files = {f for f in self.files if not f.startswith(f"{name}/")} | set(written)
        self.entries[name] = _normalised(details or {})
        self._save()

    def entry_details(self, name: str) -> dict | None:
        """The details recorded with entry ``name`` (:meth:`entry`) when it is complete: written
        under these settings, and every file recorded for it still there. None otherwise (never
        written, written before entries were recorded, about to be replaced, or files gone)."""
        details = self.entries.get(name) if not self.replace_previous else None
        files = [f for f in self.files if f.startswith(f"{name}/")]
        if not isinstance(details, dict) or not files or not all((self.path / f).is_file() for f in files):
            return None
        return details

    def write_file(self, name: str, write: Callable[[Path], None]) -> Path:
        """Writes one file atomically through ``write(temporary_path)`` and records it."""
        atomic_write_with(self.path / name, write)
        self.files.add(name)
        self._save()
        return self.path / name

    def record_files(self, names: Sequence[str]) -> None:
        """Records files written in the folder by other means (relative paths, e.g. a training
        run's checkpoints): they are the run's from now on."""
        self.files |= set(names)
        self._save()

    def _lock(self) -> None:
        lock_folder(self.path, self.argument)
        self.locked = True

    def release(self) -> None:
        """Gives back the folder's lock (the command's end releases it anyway)."""
        if self.locked:
            unlock_folder(self.path)
            self.locked = False

    def __del__(self) -> None:
        # A library call given a path (propagate_to_folder, visualize) drops its folder on return.
        try:
            self.release()
        except Exception:  # at interpreter exit, when the lock module may be gone (release_all ran)
            pass

    def finish(self, details: dict) -> None:
        """Adds ``details`` (JSON-able: counts, speed) to this invocation's history entry."""
        self.record["history"][-1].update(_normalised(details))
        self._save()

    def _save(self) -> None:
        self.record["files"] = sorted(self.files)
        self.record["entries"] = dict(sorted(self.entries.items()))
        atomic_write_text(self.path / RECORD_NAME, json.dumps(self.record, indent=1) + "\n")


def record_derived_files(folder: PathLike, names: list[str]) -> bool:
    """Records files another command derived from a recorded folder's results
    (``mast evaluate``'s CSVs in a results folder): they are removed when the
    folder is overwritten and whenever the results change, since they then describe
    results that are gone.

    Returns False when ``folder`` has no mast record (nothing to add to).
    """
    path = Path(folder) / RECORD_NAME
    if _listed(Path(folder)) is None:
        return False
    lock_folder(folder, "results")  # not while a command writes the folder
    try:
        record = json.loads(path.read_text())
        record["derived"] = sorted(set(record.get("derived", [])) | set(names))
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    finally:
        unlock_folder(folder)
    return True


def _names(value: Any) -> list[str] | None:
    """``value`` if it is a list of strings (as a record lists files), else None."""
    return value if isinstance(value, list) and all(isinstance(name, str) for name in value) else None


def _listed(folder: Path) -> list[str] | None:
    """The files (derived ones included) the record of ``folder`` lists; None without a record
    or with one that does not list them as mast does."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "files" not in record:
        return None
    files, derived = _names(record["files"]), _names(record.get("derived", []))
    return None if files is None or derived is None else files + derived


def recorded_files(folder: Path, prefix: str = "") -> set[str]:
    """The files the records in ``folder`` and its sub-folders list (records included),
    relative to ``folder`` and prefixed by ``prefix``."""
    known: set[str] = set()
    for record in folder.rglob(RECORD_NAME) if folder.is_dir() else []:
        base = record.parent.relative_to(folder)
        listed = _listed(record.parent)
        if listed is not None:
            known |= {prefix + str(base / name) for name in listed + [RECORD_NAME]}
    return known


def remove_recorded_files(folder: Path) -> None:
    """Removes the files ``folder/run.json`` lists and those of records in sub-folders,
    then the folders that became empty; files mast did not record stay."""
    record_path = folder / RECORD_NAME
    listed = _listed(folder)
    if listed is None:
        return
    for nested in sorted(folder.rglob(RECORD_NAME)):
        if nested != record_path:
            remove_recorded_files(nested.parent)
    for name in listed:
        target = folder / name
        if _inside(folder, name) and (target.is_file() or target.is_symlink()):
            target.unlink()
    record_path.unlink(missing_ok=True)
    for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only empty folders go
