"""Benchmark of the supervised baselines' tracking at 480p: frames per second and peak memory.

Tracks a generated 854x480 video (one object) through the one tracker
interface with SiamMask (three branches, the mask head), SiamMask-2B (two
branches), RANet and the detection-based tracker of "Learning to Track Any
Object" (docs/baselines.md §7.4), each built from its packaged config (``configs/``)
with random weights (speed does not depend on them), side by side in one
run, each case in a fresh process. The memory propagator with the LAB-pixel
baseline (the mast preset) is measured beside them for scale.

    python -m benchmarks.baselines                      # CPU
    python -m benchmarks.baselines --device cuda --frames 60
"""
from __future__ import annotations

import argparse
import json

import torch

from benchmarks._measure import report, run_isolated

MODELS = ("siammask", "siammask-2b", "ranet", "detector", "mast-pixels")


def _packaged_config(baseline: str, overrides: list[str]):
    """The packaged config of a registered baseline (:mod:`mast.train.baselines`), with ``overrides``."""
    from pathlib import Path

    from mast.train.baselines import baseline as registered
    from mast.train.config import load_config

    chosen = registered(baseline)
    return load_config(Path(__file__).resolve().parents[1] / "configs" / chosen.config_file, overrides, chosen.schema)


def build_tracker(model: str, device: torch.device):
    """A tracker of ``model`` with random weights, as its packaged config builds it."""
    if model.startswith("siammask"):
        from mast.models.siammask.model import SiamMask
        from mast.models.siammask.tracker import SiamMaskTracker

        overrides = ["siammask.branches=2"] if model == "siammask-2b" else []
        config = _packaged_config("siammask", overrides)
        return SiamMaskTracker(SiamMask(config.model, config.siammask), config.tracker, device)
    if model == "ranet":
        from mast.models.ranet.model import RANet
        from mast.models.ranet.tracker import RANetTracker

        config = _packaged_config("ranet", [])
        return RANetTracker(RANet(config.model, config.ranet), device)
    if model == "detector":
        from mast.models.detector.model import Detector
        from mast.models.detector.tracker import DetectorTracker

        config = _packaged_config("detector", [])
        return DetectorTracker(Detector(config.model, config.detector), config.tracker, device)
    from mast.models.builder import load_tracker

    return load_tracker("mast", None, "mast", device)  # raw LAB pixels under their own knobs


def measure_case(case: dict) -> dict:
    """Tracks one generated video in this process; returns fps and peak memory."""
    from benchmarks._measure import tracking_speed
    from mast.data.synthetic import translating_video

    device = torch.device(case["device"])
    torch.manual_seed(0)
    frames, masks = translating_video(num_frames=case["frames"], height=480, width=854, num_objects=1)
    tracker = build_tracker(case["model"], device)
    fps, memory = tracking_speed(tracker, frames, masks[0], device, warmup=3)
    return {**case, "fps": fps, "peak_bytes": memory}


def _table(rows: list[dict]) -> str:
    lines = [f"{'model':<12} {'device':<6} {'frames/s':>9} {'peak MiB':>9}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['model']:<12} {row['device']:<6} error: {row['error']}")
        else:
            lines.append(f"{row['model']:<12} {row['device']:<6} {row['fps']:>9.2f} {row['peak_bytes'] / 2**20:>9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--frames", type=int, default=12, help="frames of the generated 480p video (default 12)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/baselines-<device>.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0
    if args.frames < 6:
        parser.error("--frames must be >= 6 (the first frames warm up)")
    rows = []
    for model in args.models.split(","):
        if model not in MODELS:
            parser.error(f"--models: unknown {model!r}; choose from {', '.join(MODELS)}")
        rows.append(run_isolated("benchmarks.baselines", dict(model=model, device=args.device, frames=args.frames)))
        print(f"  measured {model}", flush=True)
    report("baselines", args.device, rows, _table(rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
