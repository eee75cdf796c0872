"""Training checkpoints and run metadata, written atomically."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mast._version import __version__
from mast.models.backbone import save_checkpoint

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
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
    """A checkpoint written by :func:`write_training_checkpoint` (all of it: RNG
    states included, so not ``weights_only``: only resume runs you trust)."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(payload, dict) or "state" not in payload or "model" not in payload:
        raise ValueError(f"{path} is not a mast training checkpoint")
    return payload


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
        "command": sys.argv,
        **extra,
    }
    temporary = out_dir / ".run.json.tmp"
    temporary.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(temporary, out_dir / "run.json")
    if info["dirty"]:
        (out_dir / "git.diff").write_text(info["diff"])
