"""Backbones that ship inside the package, used by name wherever a checkpoint is taken.

The commands' checkpoint and init arguments, a ``mast compare`` models file,
``mast.load_backbone("cpu-hour")`` and ``mast.load_tracker("mast",
checkpoint="cpu-hour")`` all read the file named here. A file of that name in the working folder wins over the shipped
one: an existing path always means itself. docs/cpu-hour.md is the model card.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Shipped backbone name -> its file under :data:`WEIGHTS`.
SHIPPED = {"cpu-hour": "cpu-hour.pt"}
#: The package folder holding the shipped files (package data, see pyproject.toml).
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def shipped_file(name: str) -> Path:
    """The file of shipped backbone ``name`` (a key of :data:`SHIPPED`)."""
    return WEIGHTS / SHIPPED[name]


def checkpoint_path(value: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """``value`` as a file path (a relative one under ``folder`` when given): that path when it
    exists or ``value`` is no shipped name, else the shipped file."""
    path = Path(value).expanduser()
    path = path if folder is None or path.is_absolute() else Path(folder) / path
    if path.exists() or str(value) not in SHIPPED:
        return path
    return shipped_file(str(value))
