"""Checkpoint files: written atomically, read as weights only.

Every checkpoint of mast (backbones, training state, baselines) is saved by
:func:`save_checkpoint` and loaded by :func:`load_checkpoint`, which unpickles
only tensors, numbers, strings, lists, tuples and dicts
(``torch.load(weights_only=True)``), so a crafted file cannot run code.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mast.common.files import atomic_write_with


def save_checkpoint(payload: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary sibling, then rename over ``path``, so a
    crash never leaves a half-written checkpoint under the real name."""
    atomic_write_with(path, lambda temporary: torch.save(payload, temporary))


# How torch names a global it refused: "Unsupported global: GLOBAL x", or for a blocked module
# (os, posix, subprocess, ...) "unsupported GLOBAL x whose module y is blocked".
_UNSUPPORTED_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)")


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint",
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming ``what`` and ``path``.

    Only tensors, numbers, strings, lists, tuples and dicts unpickle, so a
    crafted file cannot run code; anything else is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = _UNSUPPORTED_GLOBAL.search(str(error))
        if found is None:
            raise ValueError(f"cannot read {what} {path}: not a PyTorch checkpoint, or a damaged one") from error
        raise ValueError(f"refusing {what} {path} as unsafe: it holds {found.group(1)}, not only tensors, "
                         f"numbers, strings, lists and dicts, and unpickling it could run code") from error
    except Exception as error:  # truncated zip archives, bad storages: torch raises several types
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise ValueError(f"cannot read {what} {path}: {lines[0]}") from error
