"""How much memory a piece of work takes: the rise of the peak above the level before it.

On CUDA, ``torch.cuda.max_memory_allocated``. On the CPU, the peak resident
set, read from the Linux kernel's per-process status (``VmHWM``), whose peak
is first reset to the current resident set through ``clear_refs``; where the
kernel offers neither (another system, a restricted container) the measure is
None. :mod:`mast.eval.compare` reports it per model; the benchmarks use it too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

#: The kernel's view of this process (Linux procfs): where the resident set and its peak are read.
_THIS_PROCESS = Path("/proc/self")


def peak_memory(device: torch.device, work: Callable[[], None]) -> tuple[int | None, str]:
    """Runs ``work()``; returns the bytes by which memory peaked above its level before (None
    where the system does not say), and what was measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base, "CUDA max allocated"
    try:
        (_THIS_PROCESS / "clear_refs").write_text("5")  # resets the peak resident set (VmHWM) to the current one
        base = _status_bytes("VmRSS")
    except OSError:
        work()
        return None, "CPU peak RSS growth"
    work()
    # The kernel updates the peak lazily: one that reads a little under the level before means no growth.
    return max(0, _status_bytes("VmHWM") - base), "CPU peak RSS growth"


def _status_bytes(field: str) -> int:
    """A ``kB`` field of this process's status, in bytes."""
    lines = (_THIS_PROCESS / "status").read_text().splitlines()
    return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(f"{field}:"))
