"""Timing and peak-memory helpers shared by the benchmarks.

Every measurement runs in a fresh subprocess so that one implementation's
allocator caches cannot flatter or penalise the next one. Peak memory is the
rise of the peak resident set (CPU) or of ``torch.cuda.max_memory_allocated``
(CUDA) above the level before the call (:mod:`mast.common.memory`).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from mast.common.memory import peak_memory as measure_peak


def peak_memory(fn: Callable[[], None], device: str) -> int:
    """Bytes by which the peak memory rises while ``fn()`` runs (:func:`mast.common.memory.peak_memory`)."""
    peak, measured = measure_peak(torch.device(device), fn)
    if peak is None:
        raise RuntimeError(f"this system does not report the {measured} the benchmarks measure")
    return peak


def median_seconds(fn: Callable[[], None], device: str, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tracking_speed(tracker, frames, first_mask: torch.Tensor, device: torch.device, warmup: int) -> tuple[float, int]:
    """Frames/s after the first ``warmup`` frames, and the peak memory, of tracking ``frames``
    ((T, 3, H, W)) from ``first_mask`` ((H, W) ids) through the one tracker interface."""
    from mast.models.tracker import track

    timestamps = []

    def run() -> None:
        for _ in track(tracker, iter(frames), first_mask):
            if device.type == "cuda":
                torch.cuda.synchronize()
            timestamps.append(time.perf_counter())

    memory = peak_memory(run, device.type)
    warmup = min(warmup, len(timestamps) - 2)
    return (len(timestamps) - 1 - warmup) / (timestamps[-1] - timestamps[warmup]), memory


def run_isolated(module: str, case: dict, timeout: float = 1800) -> dict:
    """Runs ``python -m <module> --case <json>`` and returns the JSON it prints last."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-m", module, "--case", json.dumps(case)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    if result.returncode != 0:
        return {**case, "error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def environment(device: str) -> dict:
    """What the numbers were measured on."""
    import platform

    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
    }


def report(name: str, device: str, rows: list[dict], table: str, out: str | None = None, **extra) -> str:
    """Prints ``table`` and writes ``{"environment", **extra, "results": rows}`` as JSON
    (default ``benchmarks/results/<name>-<device>.json``, atomically); returns the path.

    Independent of the package on purpose: the benchmarks also measure older checkouts.
    """
    print(table)
    path = out or f"benchmarks/results/{name}-{device}.json"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        json.dump({"environment": environment(device), **extra, "results": rows}, handle, indent=2)
    os.replace(temporary, path)
    print(f"wrote {path}")
    return path
