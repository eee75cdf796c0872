"""Benchmark of label propagation at 480p: frames per second and peak memory.

Runs the MAST protocol (references 0, 5, t-1, t-3, t-5; 25x25 windows; ROI
localisation for references more than 15 frames back) on a generated
854x480 video, for the LAB-pixel baseline and for the backbone (random
weights: speed does not depend on them), with the compiled kernels and with
the pure-PyTorch operators, side by side in one run, each case in a fresh
process.

    python -m benchmarks.propagate                       # CPU
    python -m benchmarks.propagate --device cuda --frames 60
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from benchmarks._measure import report, run_isolated

FEATURES = ("pixels", "backbone")
PATHS = ("extension", "pytorch")


def measure_case(case: dict) -> dict:
    """Propagates one generated video in this process; returns fps and peak memory."""

    import mast.ops as ops
    from benchmarks._measure import tracking_speed
    from mast.data.synthetic import translating_video
    from mast.models.backbone import ResNetBackbone
    from mast.models.extractors import BackboneExtractor, PixelExtractor
    from mast.models.propagation import PropagationConfig, Propagator

    device = torch.device(case["device"])
    frames, masks = translating_video(num_frames=case["frames"], height=480, width=854, num_objects=2)
    config = PropagationConfig.preset("mast")
    if case["features"] == "pixels":
        extractor = PixelExtractor()
        config = config.with_overrides(**PixelExtractor.propagation)
    else:
        extractor = BackboneExtractor(ResNetBackbone().to(device))
    propagator = Propagator(extractor, config, device)
    fps, memory = tracking_speed(propagator, frames, masks[0], device, warmup=5)
    return {**case, "backend": ops.backend(device), "fps": fps, "peak_bytes": memory}


def _run_case(case: dict) -> dict:
    if case["path"] == "pytorch":
        os.environ["MAST_DISABLE_EXTENSION"] = "1"
    try:
        return run_isolated("benchmarks.propagate", case)
    finally:
        os.environ.pop("MAST_DISABLE_EXTENSION", None)


def _table(rows: list[dict]) -> str:
    lines = [f"{'features':<9} {'path':<10} {'device':<6} {'frames/s':>9} {'peak MiB':>9} {'speed-up':>9}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['features']:<9} {row['path']:<10} {row['device']:<6} error: {row['error']}")
            continue
        speed = f"{row['speedup']:.2f}x" if "speedup" in row else ""
        lines.append(f"{row['features']:<9} {row['path']:<10} {row['device']:<6} {row['fps']:>9.2f} "
                     f"{row['peak_bytes'] / 2**20:>9.1f} {speed:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--frames", type=int, default=24, help="frames of the generated 480p video (default 24)")
    parser.add_argument("--features", default="pixels,backbone", help="comma-separated subset of: pixels, backbone")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/propagate-<device>.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0
    rows = []
    for features in args.features.split(","):
        if features not in FEATURES:
            parser.error(f"--features: unknown {features!r}; choose from {', '.join(FEATURES)}")
        for path in PATHS:
            rows.append(_run_case(dict(features=features, path=path, device=args.device, frames=args.frames)))
            print(f"  measured {features} / {path}", flush=True)
    by_key = {(r["features"], r["path"]): r for r in rows if "error" not in r}
    for (features, path), row in by_key.items():
        if path == "extension" and (features, "pytorch") in by_key:
            row["speedup"] = row["fps"] / by_key[(features, "pytorch")]["fps"]
    report("propagate", args.device, rows, _table(rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
