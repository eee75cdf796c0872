"""Device names (a ``device`` argument, ``train.device``) to ``torch.device``, checked up front."""
from __future__ import annotations

import torch

from mast.common.errors import ArgumentError


def resolve_device(name: str, what: str = "device") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ArgumentError: of argument ``what`` (a ``ValueError``), for an unknown name, CUDA on a machine or
            torch build without it, or a CUDA index that does not exist.
    """
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ArgumentError(what, f"{name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ArgumentError(what, f"{name!r}: mast runs on cpu or cuda devices only")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ArgumentError(what, f"{name!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                                  f"{build}); use cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ArgumentError(what, f"{name!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return device
