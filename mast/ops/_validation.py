"""Argument checks shared by the operators: bad input fails loudly and by name."""
from __future__ import annotations

import math

import torch

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_tensor(name: str, value: object, rank: int, layout: str) -> torch.Tensor:
    """Checks ``value`` is a floating tensor of ``rank`` dims with a supported dtype."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(value).__name__}")
    if value.dim() != rank:
        raise ValueError(f"{name} must have shape {layout} ({rank} dims), got shape {tuple(value.shape)}")
    supported = _CUDA_DTYPES if value.device.type == "cuda" else _CPU_DTYPES
    if value.dtype not in supported:
        names = ", ".join(str(d).replace("torch.", "") for d in supported)
        raise ValueError(f"{name} has unsupported dtype {value.dtype} on {value.device.type}; expected one of {names}")
    return value


def check_same_device(names: tuple[str, str], first: torch.Tensor, second: torch.Tensor) -> None:
    if first.device != second.device:
        raise ValueError(f"{names[0]} is on {first.device} but {names[1]} is on {second.device}; put both on one device")


def check_window(window: object) -> int:
    if isinstance(window, bool) or not isinstance(window, int):
        raise ValueError(f"window must be an odd int >= 1, got {window!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 1 (window = 2r + 1), got {window}")
    return window


def check_dilation(dilation: object) -> int:
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be an int >= 1, got {dilation!r}")
    return dilation


def check_spacing(spacing: object) -> float:
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)):
        raise ValueError(f"spacing must be a float > 0, got {spacing!r}")
    if not math.isfinite(spacing) or spacing <= 0:
        raise ValueError(f"spacing must be a finite float > 0, got {spacing}")
    return float(spacing)
