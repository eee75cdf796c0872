"""Benchmark of label propagation at 480p: frames per second and peak memory.

Propagates a generated 854x480 video under the protocol presets (``mast``:
references 0, 5, t-1, t-3, t-5, 25x25 windows, ROI localisation for
references more than 15 frames back; ``quick``; ``crw``), for the LAB-pixel
baseline and for the backbone (random weights: speed does not depend on
them). Side by side in one run, each case in a fresh process:

* ``extension``: the compiled kernels;
* ``pytorch``: the pure-PyTorch operators (``MAST_DISABLE_EXTENSION=1``);
* ``gather-all`` (where the protocol keeps the top-k keys): the compiled
  kernels, but top-k reads every window's values and then gathers the k
  selected, as the engine did before it read the selected keys only.

    python -m benchmarks.propagate                       # CPU, mast preset
    python -m benchmarks.propagate --presets mast,quick,crw
    python -m benchmarks.propagate --device cuda --frames 60 --presets mast,quick
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from benchmarks._measure import report, run_isolated

FEATURES = ("pixels", "backbone")
PRESETS = ("mast", "quick", "crw")


def tracker(features: str, preset: str, device: str = "cpu"):
    """The tracker a case runs: pixels (under their own knobs) or a ResNet-18 at random init."""
    from mast.models.backbone import ResNetBackbone
    from mast.models.builder import load_tracker

    return load_tracker("mast", None if features == "pixels" else ResNetBackbone(), preset, device)


def paths(features: str, preset: str) -> tuple[str, ...]:
    """The implementations a case is measured with (``gather-all`` only where top-k applies)."""
    return ("extension", "pytorch") + (("gather-all",) if tracker(features, preset).config.engine.topk else ())


def _gather_all_values(engine, plans, centers, index):
    """The values ``(B, K, k, rows, w)`` at ``index`` read the way top-k did
    before it read the selected keys only: every window sampled, then gathered."""
    values = engine._sample_windows(plans, centers)
    return values.gather(2, index.unsqueeze(1).expand(-1, values.shape[1], -1, -1, -1))


def measure_case(case: dict) -> dict:
    """Propagates one generated video in this process; returns fps and peak memory."""

    import mast.ops as ops
    from benchmarks._measure import tracking_speed
    from mast.data.synthetic import translating_video
    from mast.models.engine import ReconstructionEngine

    device = torch.device(case["device"])
    frames, masks = translating_video(num_frames=case["frames"], height=480, width=854, num_objects=2)
    if case["path"] == "gather-all":
        ReconstructionEngine._sample_selected = _gather_all_values
    propagator = tracker(case["features"], case["preset"], case["device"])
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
    head = f"{'features':<9} {'preset':<6} {'path':<10} {'device':<6} {'frames/s':>9} {'peak MiB':>9}"
    lines = [head + f" {'extension is':>13}"]
    for row in rows:
        start = f"{row['features']:<9} {row['preset']:<6} {row['path']:<10} {row['device']:<6}"
        if "error" in row:
            lines.append(f"{start} error: {row['error']}")
            continue
        relative = f"{row['extension_speedup']:.2f}x faster" if "extension_speedup" in row else ""
        lines.append(f"{start} {row['fps']:>9.2f} {row['peak_bytes'] / 2**20:>9.1f} {relative:>13}")
    return "\n".join(lines)


def _add_speedups(rows: list[dict]) -> None:
    """Each non-extension row gets ``extension_speedup``: the extension's fps over its own."""
    extension = {(r["features"], r["preset"]): r for r in rows if r["path"] == "extension" and "error" not in r}
    for row in rows:
        reference = extension.get((row["features"], row["preset"]))
        if row["path"] != "extension" and "error" not in row and reference:
            row["extension_speedup"] = reference["fps"] / row["fps"]


def _choices(parser: argparse.ArgumentParser, flag: str, text: str, known: tuple[str, ...]) -> list[str]:
    chosen = [item for item in text.split(",") if item]
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        parser.error(f"{flag}: {text!r} is not a comma-separated list of {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--frames", type=int, default=24, help="frames of the generated 480p video (default 24)")
    parser.add_argument("--features", default="pixels,backbone",
                        help="comma-separated subset of: " + ", ".join(FEATURES))
    parser.add_argument("--presets", default="mast", help="comma-separated subset of: " + ", ".join(PRESETS))
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/propagate-<device>.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0
    if args.frames < 8:
        parser.error(f"--frames must be >= 8 (5 warm-up frames, then the timed ones), got {args.frames}")
    features = _choices(parser, "--features", args.features, FEATURES)
    presets = _choices(parser, "--presets", args.presets, PRESETS)
    rows = []
    for feature in features:
        for preset in presets:
            for path in paths(feature, preset):
                case = dict(features=feature, preset=preset, path=path, device=args.device, frames=args.frames)
                rows.append(_run_case(case))
                print(f"  measured {feature} / {preset} / {path}", flush=True)
    _add_speedups(rows)
    report("propagate", args.device, rows, _table(rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
