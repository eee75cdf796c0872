"""A training run's folder: a recorded output folder (:mod:`mast.common.outputs`) whose
record lists every file the run wrote, kept current as the run writes.

``OUT/run.json`` is the record of :class:`~mast.common.outputs.OutputFolder`:
its command (``pretrain``, ``finetune`` or ``train-baseline``), each
invocation's command line, time, inputs and environment (library version,
git SHA, torch, python, processes, what the task found), and ``files``: the
run's ``config.yaml``, ``git.diff``, ``centroids.json``, every checkpoint,
TensorBoard event file, ``validation.json``, ``validation.png`` and model file it wrote. The
output folder rules then hold for training too:

* a folder with files mast did not write, or the output of another command,
  is refused;
* a folder holding a run of this command is continued with ``resume``,
  replaced with ``overwrite`` (only the files its record lists go) or refused;
  a run killed before its first checkpoint is simply started again;
* ``resume`` needs a run of this command; resuming with other inputs (data,
  year, sequences) than the run started with warns, naming both;
* one process writes a folder at a time (the folder's lock).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from mast.common.errors import ArgumentError
from mast.common.files import atomic_write_text
from mast.common.outputs import OutputConflict, OutputFolder, check_separate, settings_difference
from mast.train import checkpoint as ckpt

#: Top-level files a run may write beside ``final_name`` and ``best-<final_name>``.
RUN_FILES = ("config.yaml", "git.diff", "centroids.json", "validation.json", "validation.png")
#: Top-level folders a run writes in (new names only, so a resumed run does not check them).
RUN_FOLDERS = (ckpt.CHECKPOINT_DIR, "tensorboard")


def training_command(task: Any) -> str:
    """The command a task's run belongs to: ``train-baseline`` for a baseline's model,
    ``finetune`` for a backbone started from ``init``, else ``pretrain``."""
    if task.final_name != "backbone.pt":
        return "train-baseline"
    return "finetune" if getattr(task, "init", None) is not None else "pretrain"


def run_inputs(task: Any) -> dict[str, Any]:
    """What a run reads, as its record keeps it: ``data`` (resolved paths), and ``year`` and
    ``sequences`` when the task has them (:meth:`~mast.train.tasks.TrainingTask.describe`)."""
    found = task.describe()
    return {"data": [str(Path(path).resolve()) for path in task.inputs],
            **{key: found[key] for key in ("year", "sequences") if key in found}}


def check_run_folder(out_dir: Path, inputs: list[str]) -> None:
    """Refuses an output folder that is an existing file, or is, contains or lies inside an input:
    training would write among (and clean temporaries out of) the videos. Reads only."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputConflict("out", f"{out_dir} is an existing file, not a run folder")
    check_separate(out_dir, {"data": inputs})


def check_resumable(out_dir: Path, command: str) -> dict:
    """The record of the run of ``command`` in ``out_dir`` that ``resume`` continues. Reads only.

    Raises:
        OutputConflict: ``out_dir`` holds files of another command, or a record mast did not write.
        ArgumentError: (of ``resume``) ``out_dir`` holds no run.
    """
    record = OutputFolder(out_dir, command, {}).read_record() if out_dir.is_dir() else None
    if record is None:
        raise ArgumentError("resume", f"{out_dir} holds no run to continue; drop resume", mentions=("resume",))
    return record


def _has_checkpoint(out_dir: Path) -> bool:
    folder = out_dir / ckpt.CHECKPOINT_DIR
    return (folder / ckpt.LAST).is_file() or bool(ckpt.step_checkpoints(folder))


class RunFolder:
    """The main process's view of a run folder: checked (and locked), then started, then each
    file recorded as it is written.

    Args:
        out_dir: the run folder.
        command: see :func:`training_command`.
        resume: continue the run in ``out_dir``.
        overwrite: replace the run in ``out_dir`` (only the files its record lists go).
        final_name: the task's model file (``backbone.pt``, ``model.pt``).
    """

    def __init__(self, out_dir: Path, command: str, resume: bool, overwrite: bool, final_name: str) -> None:
        self.out_dir, self.resume, self.final_name = out_dir, resume, final_name
        self.folder = OutputFolder(out_dir, command, {}, overwrite)

    def check(self) -> None:
        """Applies the rules of the module docstring; writes nothing but the folder's lock."""
        if self.resume and self.folder.overwrite:
            raise ArgumentError("overwrite", "resume continues the run and overwrite replaces it; choose one",
                                mentions=("resume", "overwrite"))
        if self.resume:
            check_resumable(self.out_dir, self.folder.command)
        self.folder.check()
        if not self.resume and self.folder.previous is not None and _has_checkpoint(self.out_dir) \
                and not self.folder.overwrite:
            self.folder.release()
            raise OutputConflict("out", f"{self.out_dir} already holds a run; add resume to continue it, overwrite "
                                        "to replace it, or choose another folder", mentions=("resume", "overwrite"))
        files = [*RUN_FILES, self.final_name, f"best-{self.final_name}"]
        for name in files if self.resume else [*files, *RUN_FOLDERS]:
            self.folder.check_entry(name)

    def start(self, inputs: dict[str, Any], details: dict[str, Any]) -> None:
        """The first write: the record (the previous run's files removed unless resuming), then
        ``git.diff`` when the checkout is dirty. ``inputs`` (data, year, sequences) are compared
        with those the run started with when resuming (one warning naming both)."""
        previous = self.folder.previous
        if self.resume and previous and previous.get("history"):
            started = previous["history"][0].get("inputs", {})
            difference = settings_difference(inputs, started)
            if difference:
                warnings.warn(f"resuming {self.out_dir} with other inputs than the run started with: "
                              f"{'; '.join(difference)}", RuntimeWarning, stacklevel=2)
        git = ckpt.git_info(Path(__file__).resolve().parent)
        environment = {"git_sha": git["sha"], "git_dirty": git["dirty"], "torch": torch.__version__,
                       "python": sys.version.split()[0]}
        self.folder.start({"inputs": inputs, **environment, **details}, start_over=not self.resume)
        if git["dirty"]:
            atomic_write_text(self.out_dir / "git.diff", git["diff"])
            self.record(self.out_dir / "git.diff")

    def record(self, *paths: Path) -> None:
        """Records files the run wrote (paths under the folder, as ``out_dir / name``)."""
        self.folder.record_files([str(path.relative_to(self.out_dir)) for path in paths])

    def files_under(self, name: str) -> set[Path]:
        """The files under the folder's entry ``name`` now."""
        entry = self.out_dir / name
        return {path for path in entry.rglob("*") if path.is_file()} if entry.is_dir() else set()

    def release(self) -> None:
        self.folder.release()
