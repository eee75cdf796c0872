"""Training checkpoints and run metadata, written atomically.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so that
they load with ``torch.load(weights_only=True)``: resuming or fine-tuning
from a file never runs code stored in it.
"""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mast._version import __version__
from mast.common.files import atomic_write_text
from mast.common.checkpoints import load_checkpoint, save_checkpoint
from mast.common.errors import ArgumentError, MissingPathError
from mast.common.threads import threads_in_use
from mast.models.backbone import BackboneConfig, ResNetBackbone, saved_backbone_config

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
#: What a training checkpoint must hold to be resumed.
REQUIRED_KEYS = ("model", "optimizer", "scheduler", "scaler", "state", "rng")
# Temporaries are hidden (".step-...mast-tmp-..."), so they never match.
_STEP_NAME = re.compile(r"^step-(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch, CUDA, numpy and python as tensors, numbers and lists."""
    kind, key, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["key"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_training_checkpoint(out_dir: Path, step: int, payload: dict[str, Any]) -> Path:
    """Writes ``out_dir/checkpoints/step-<step, 8 digits>.pt`` (e.g. ``step-00001500.pt``),
    then the same payload as ``last.pt``; returns the first path."""
    folder = out_dir / CHECKPOINT_DIR
    path = folder / f"step-{step:08d}.pt"
    save_checkpoint(payload, path)
    save_checkpoint(payload, folder / LAST)
    return path


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`write_training_checkpoint` (``weights_only``)."""
    payload = load_checkpoint(path, "training checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in payload] if isinstance(payload, dict) else REQUIRED_KEYS
    if missing:
        raise ValueError(f"{path} is not a mast training checkpoint (no {', '.join(missing)})")
    return payload


def step_checkpoints(folder: Path) -> list[Path]:
    """The ``step-*.pt`` files of ``folder``, newest (highest step) first."""
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if (match := _STEP_NAME.match(path.name)) and path.is_file()]
    return [path for _, path in sorted(found, reverse=True)]


def read_resume_checkpoint(out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``out_dir/checkpoints/last.pt``, or, when it is missing or unreadable, the
    newest readable ``step-*.pt`` (with a warning naming what was passed over).

    Returns ``(path, payload)``; raises ValueError when no checkpoint is readable.
    """
    folder = out_dir / CHECKPOINT_DIR
    problems = []
    for path in [folder / LAST, *step_checkpoints(folder)]:
        try:
            payload = read_training_checkpoint(path)
        except (FileNotFoundError, ValueError) as error:
            problems.append(str(error))
            continue
        if problems:
            warnings.warn(f"{'; '.join(problems)}; resuming from {path} instead", RuntimeWarning, stacklevel=2)
        return path, payload
    raise ValueError(f"cannot resume: no readable checkpoint in {folder} ({'; '.join(problems)})")


def _read_init(path: Path) -> Any:
    """The payload of checkpoint ``path`` given as a task's ``init``; a missing or unreadable
    file is an :class:`~mast.common.errors.ArgumentError` of ``init``."""
    try:
        return load_checkpoint(path, "checkpoint")
    except FileNotFoundError as error:
        raise MissingPathError("init", str(error)) from error
    except ValueError as error:
        raise ArgumentError("init", str(error)) from error


def read_init_weights(path: Path, backbone: ResNetBackbone) -> dict[str, torch.Tensor]:
    """The weights of ``backbone.pt`` or of a training checkpoint, to start ``backbone`` from
    (a task's ``init``); a checkpoint of another architecture is a one-line ValueError."""
    payload = _read_init(path)
    state = payload.get("state_dict", payload.get("model")) if isinstance(payload, dict) else None
    if state is None:
        raise ArgumentError("init", f"{path} holds no backbone weights (expected backbone.pt or a training "
                                    "checkpoint)")
    if payload.get("backbone_config") is not None:
        check_architecture(path, payload["backbone_config"], backbone, "this run's model.* settings build")
    return matching_state(path, state, backbone)


def read_backbone_init(path: Path, output_stride: int) -> tuple[BackboneConfig, dict[str, torch.Tensor]]:
    """A ``mast pretrain`` backbone (``backbone.pt`` or a training checkpoint) for a baseline's
    ``init``: its config with ``output_stride`` set to the baseline's (the stride changes no
    weight shape), and its weights."""
    payload = _read_init(path)
    saved = payload.get("backbone_config") if isinstance(payload, dict) else None
    state = payload.get("state_dict", payload.get("model")) if isinstance(payload, dict) else None
    if saved is None or state is None:
        raise ArgumentError("init", f"{path} is not a mast backbone (expected backbone.pt of mast "
                                    "pretrain/finetune or one of its training checkpoints)")
    config = replace(saved_backbone_config(saved, path), output_stride=output_stride)
    backbone = ResNetBackbone(config)
    return config, matching_state(path, with_identity_shortcuts(state, backbone), backbone)


def with_identity_shortcuts(state: Any, backbone: ResNetBackbone) -> Any:
    """``state`` with the shortcut weights a stride change adds filled in as the identity.

    A block whose stride becomes 2 (output stride 4 -> 8) between equal widths gains a 1x1 conv
    and BatchNorm shortcut where the source block added its input unchanged. With an identity
    conv (a strided 1x1 conv: the input subsampled) and a BatchNorm of unit scale and statistics,
    the block computes what the source's shortcut did, subsampled. Other keys are left as given.
    """
    if not isinstance(state, dict):
        return state
    filled = dict(state)
    for key, own in backbone.state_dict().items():
        if key in state or ".shortcut." not in key:
            continue
        if own.dim() == 4 and own.shape[0] == own.shape[1] and own.shape[2:] == (1, 1):  # the 1x1 conv
            filled[key] = torch.eye(own.shape[0], dtype=own.dtype).view_as(own)
        elif key.endswith(("weight", "running_var")):  # the BatchNorm: unit scale, unit variance
            filled[key] = torch.ones_like(own)
        else:  # bias, running_mean, num_batches_tracked
            filled[key] = torch.zeros_like(own)
    return filled


def restore_model(model: torch.nn.Module, path: Path, payload: dict[str, Any], configs: dict[str, Any],
                  what: str) -> None:
    """Loads a baseline's training checkpoint ``payload`` (read from ``path``) into ``model``.

    ``configs`` maps payload keys (``backbone_config``, ...) to this run's config dicts:
    a checkpoint of other settings, or weights that do not fit, are one-line ValueErrors
    naming ``what`` the model is.
    """
    theirs = {key: payload.get(key) for key in configs}
    if theirs != configs:
        raise ValueError(f"{path} holds a {what} of {theirs}, but this run's config "
                         f"({path.parent.parent / 'config.yaml'}) builds {configs}")
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"{path} does not match this run's {what}: {error}") from error


def check_architecture(path: Path, saved: Any, backbone: ResNetBackbone, ours: str) -> None:
    """One line naming both :class:`BackboneConfig` when checkpoint ``path`` holds another backbone;
    ``ours`` says where ``backbone``'s config came from."""
    theirs = saved_backbone_config(saved, path)
    if theirs != backbone.config:
        raise ValueError(f"{path} holds backbone {theirs}, but {ours} {backbone.config}; "
                         "set model.* to match the checkpoint")


def matching_state(path: Path, state: Any, backbone: ResNetBackbone) -> dict[str, torch.Tensor]:
    """``state`` when it has exactly the backbone's keys and shapes (else a one-line error)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no backbone weights (a mapping of names to tensors)")
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(f"{path} does not match the backbone architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {mismatched[:3]})")
    return state


def git_info(source: Path) -> dict[str, Any]:
    """SHA, dirtiness and diff of the git checkout holding ``source``, if any."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=20,
                              check=True).stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None, "diff": ""}
    return {"sha": sha, "dirty": bool(diff.strip()), "diff": diff}


def write_run_metadata(out_dir: Path, extra: dict[str, Any]) -> None:
    """``run.json`` (library version, git SHA, command, environment) and ``git.diff`` when dirty."""
    info = git_info(Path(__file__).resolve().parent)
    meta = {
        "mast_version": __version__,
        "git_sha": info["sha"],
        "git_dirty": info["dirty"],
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": threads_in_use(),
        "command": sys.argv,
        **extra,
    }
    atomic_write_text(out_dir / "run.json", json.dumps(meta, indent=2, default=str))
    if info["dirty"]:
        atomic_write_text(out_dir / "git.diff", info["diff"])
