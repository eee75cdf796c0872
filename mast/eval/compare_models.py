"""The models file of ``mast compare``: a YAML list of named trackers, checked whole up front.

Each entry is ``{name: ..., model: <a name of mast.models.builder.TRACKERS>,
checkpoint: PATH}`` plus, optionally, ``preset``, ``supervision`` and the
model's own settings (the keyword arguments of
:func:`mast.models.builder.load_tracker`, e.g. ``window: 13``). A relative
checkpoint path is read from the models file's folder; ``checkpoint: cpu-hour``
names the backbone shipped with mast. Every entry's tracker
is loaded here, so an unknown setting or a bad checkpoint is found before
anything is written, and reported in one line naming the file and the entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from mast.common.checkpoints import load_checkpoint
from mast.common.config import read_yaml
from mast.common.errors import ArgumentError, MissingPathError
from mast.models.builder import TRACKERS, load_tracker
from mast.models.published import detect
from mast.models.shipped import checkpoint_path
from mast.models.tracker import Tracker

#: What a model was trained with, as the table says it.
SELF_SUPERVISED, SUPERVISED, PIXELS, NONE = "self-supervised", "supervised", "none (pixels)", "none"
SUPERVISIONS = (SELF_SUPERVISED, SUPERVISED, PIXELS, NONE)
#: The one model of TRACKERS trained without labels (docs/algorithm.md); every other is a
#: supervised baseline trained on masks (docs/baselines.md).
MEMORY_PROPAGATOR = "mast"
#: The model of TRACKERS that learns nothing: the first-frame mask on every frame (zero motion).
ZERO_MOTION = "static"
#: An entry's name is a folder name and part of the page's links: letters, digits, ``._+-``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: Keys of an entry that are not the model's settings.
ENTRY_KEYS = ("name", "model", "checkpoint", "preset", "supervision")


@dataclass(frozen=True)
class ModelEntry:
    """One entry of a models file.

    Attributes:
        name: the entry's folder name (``DIR/<name>``) and its name in the table.
        model: a name of :data:`~mast.models.builder.TRACKERS`.
        checkpoint: the checkpoint file (None: the LAB-pixel baseline).
        preset: the memory propagator's preset, or None.
        settings: the model's other settings (``load_tracker`` keyword arguments).
        supervision: the user's override of :func:`supervision`, or None.
        where: ``<file>: entry <i> (<name>)``, the start of every error about it.
    """

    name: str
    model: str
    checkpoint: Path | None
    preset: str | None
    where: str
    settings: dict[str, Any] = field(default_factory=dict)
    supervision: str | None = None

    def error(self, message: str) -> ArgumentError:
        """A one-line error of argument ``models`` naming the file and this entry."""
        return ArgumentError("models", f"{self.where}: {message}")


def read_models(path: str | Path, reserved: frozenset[str] = frozenset()) -> list[ModelEntry]:
    """The entries of a models file, every entry checked (``reserved``: names an entry may not take,
    the files the comparison writes beside the model folders).

    Raises:
        ArgumentError: of ``models``, one line naming the file (and the entry): not a non-empty
            YAML list of mappings, a missing, duplicate or unplain name, an unknown model or
            supervision, a checkpoint that is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingPathError("models", f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArgumentError("models", f"{path} is not readable YAML: {first}") from None
    if not isinstance(data, list) or not data:
        raise ArgumentError("models", f"{path} must be a YAML list of models (- name: ..., model: ..., "
                                      f"checkpoint: ...), got {'an empty list' if data == [] else type(data).__name__}")
    entries = [_entry(item, index, path, reserved) for index, item in enumerate(data, start=1)]
    seen: dict[str, ModelEntry] = {}
    for entry in entries:
        if entry.name in seen:
            raise entry.error(f"the name {entry.name!r} is taken by {seen[entry.name].where.split(': ', 1)[1]}; "
                              "names must differ (each is a folder)")
        seen[entry.name] = entry
    return entries


def _entry(item: Any, index: int, path: Path, reserved: frozenset[str]) -> ModelEntry:
    """Entry ``index`` (1-based) of the list in ``path``, checked."""
    where = f"{path}: entry {index}"
    if not isinstance(item, dict):
        raise ArgumentError("models", f"{where}: is {type(item).__name__}, not a mapping {{name: ..., model: ...}}")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in reserved:
        why = ("has no name" if name is None else f"name {name!r} is a file the comparison writes" if name in reserved
               else f"name {name!r} is not a plain folder name (letters, digits, '.', '_', '+', '-'; not first '.')")
        raise ArgumentError("models", f"{where}: {why}")
    where = f"{where} ({name})"
    model = item.get("model")
    if model not in TRACKERS:
        raise ArgumentError("models", f"{where}: {'no model' if model is None else f'unknown model {model!r}'}; "
                                      f"choose from {', '.join(TRACKERS)}")
    supervision = item.get("supervision")
    if supervision is not None and supervision not in SUPERVISIONS:
        raise ArgumentError("models", f"{where}: supervision {supervision!r} is none of {', '.join(SUPERVISIONS)}")
    preset = item.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ArgumentError("models", f"{where}: preset must be a name, got {preset!r}")
    settings = {key: value for key, value in item.items() if key not in ENTRY_KEYS}
    return ModelEntry(name, model, _checkpoint(item.get("checkpoint"), path, where), preset, where,
                      settings, supervision)


def _checkpoint(value: Any, path: Path, where: str) -> Path | None:
    """The checkpoint of an entry, relative to the models file's folder (or a shipped backbone's
    name, where no such file is there); it must be a file."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ArgumentError("models", f"{where}: checkpoint must be a file path, got {value!r}")
    checkpoint = checkpoint_path(value, path.parent)
    if not checkpoint.is_file():
        raise ArgumentError("models", f"{where}: checkpoint {checkpoint} "
                                      f"{'is not a file' if checkpoint.exists() else 'does not exist'}")
    return checkpoint


def load_entry(entry: ModelEntry, device: torch.device) -> Tracker:
    """The entry's tracker through :func:`~mast.models.builder.load_tracker`.

    Raises:
        ArgumentError: of ``models``, naming the entry: an unknown setting, a checkpoint that is
            not the model's or cannot be read.
    """
    try:
        return load_tracker(entry.model, entry.checkpoint, entry.preset, device, **entry.settings)
    except (ValueError, OSError) as error:
        raise entry.error(str(error)) from None


def supervision(entry: ModelEntry) -> str:
    """What the entry's model was trained with: the entry's own ``supervision`` if it has one;
    else by the model and the checkpoint's kind: zero motion (``static``, which learns nothing),
    a supervised baseline (every other model but the memory propagator), an ImageNet ResNet
    (torchvision layout), the LAB-pixel baseline (no checkpoint) or a self-supervised backbone
    (mast's ``backbone.pt``, MAST, CorrFlow, CRW)."""
    if entry.supervision is not None:
        return entry.supervision
    if entry.model == ZERO_MOTION:
        return NONE
    if entry.model != MEMORY_PROPAGATOR:
        return SUPERVISED
    if entry.checkpoint is None:
        return PIXELS
    payload = load_checkpoint(entry.checkpoint, "backbone checkpoint")
    return SUPERVISED if detect(payload) == "torchvision" else SELF_SUPERVISED
