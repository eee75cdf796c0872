"""Propagate and score the real sample sequences of ../shared/data/davis_samples.

What each sequence allows (see ../shared/data/README.md):
* bmx-trees: DAVIS-2017 ids {1, 2} propagated from frame 0, scored as the
  union (pred > 0) against the DAVIS-2016 masks of all 80 frames (official
  frame rules: first and last frame not scored);
* caps: id 1 propagated from frame 0, scored on the annotated later frames
  14, 33, 43, 66 (portrait, non-DAVIS file names);
* gold-fish: 5 objects from frame 0; no later ground truth, so only which
  ids survive to the last frame is reported.

    python scripts/score_samples.py --out runs/samples [--checkpoint runs/x/backbone.pt [--cosine]]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mast.eval.davis import evaluate_sequence
from mast.common.masks import read_davis2016_mask, read_mask
from mast.eval.propagate import propagate_to_folder, results_folder
from mast.eval.sources import video_input
from mast.models.builder import load_tracker
from mast.models.protocol import COSINE

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis_samples"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--checkpoint", type=Path, help="backbone; default the LAB-pixel baseline")
    parser.add_argument("--protocol", choices=("quick", "mast"), default="quick",
                        help="quick: frame 0 + the 3 previous frames, 13x13, no ROI (fast on a CPU); "
                             "mast: the full MAST preset (refs 0, 5, t-1, t-3, t-5; 25x25; ROI)")
    parser.add_argument("--cosine", action="store_true",
                        help="with --checkpoint: cosine similarity, tau 0.05, top-16 (better for briefly trained backbones)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.cosine and not args.checkpoint:
        parser.error("--cosine needs --checkpoint (the pixel baseline compares by squared distance)")
    propagator = load_tracker("mast", args.checkpoint, args.protocol, **(COSINE.as_overrides() if args.cosine else {}))
    names = ("bmx-trees", "caps", "gold-fish")
    # The script's own folder: a rerun replaces what an earlier run wrote there.
    results = results_folder(args.out, propagator, overwrite=True, samples=str(args.samples.resolve()))
    results.start({"sequences": list(names)})
    report = {}
    for name in names:
        folder = args.samples / name
        first = sorted((folder / "Annotations").glob("*.png"))[0]
        result = propagate_to_folder(video_input(folder / "JPEGImages", first_mask=first), propagator, results)
        predictions = {p.stem: read_mask(p) for p in sorted(result.glob("*.png"))}
        stems = list(predictions)
        if name == "bmx-trees":
            truth = [read_davis2016_mask(folder / "Annotations_davis2016_binary" / f"{s}.png").astype(np.uint8) for s in stems]
            scores = evaluate_sequence(truth, [(predictions[s] > 0).astype(np.uint8) for s in stems], 1)
            report[name] = {"J": scores["J"].mean(), "F": scores["F"].mean(), "frames_scored": scores["J"].shape[1]}
        elif name == "caps":
            held_out = [p for p in sorted((folder / "Annotations").glob("*.png"))[1:]]
            j, f = [], []
            for path in held_out:
                truth = (read_mask(path) == 1).astype(np.uint8)
                pred = (predictions[path.stem] == 1).astype(np.uint8)
                scores = evaluate_sequence([truth, truth, truth], [None, pred, None], 1)
                j.append(scores["J"][0, 0])
                f.append(scores["F"][0, 0])
            report[name] = {"J": float(np.mean(j)), "F": float(np.mean(f)), "frames_scored": len(held_out),
                            "per_frame_J": dict(zip([p.stem for p in held_out], map(float, j)))}
        else:
            last = predictions[stems[-1]]
            report[name] = {"objects_in_first": sorted(int(i) for i in np.unique(read_mask(first)) if i),
                            "objects_in_last": sorted(int(i) for i in np.unique(last) if i)}
    print(f"features: {propagator.name}; protocol: {propagator.config}")
    for name, row in report.items():
        if "J" in row:
            print(f"{name:<10} J {row['J']:.3f}  F {row['F']:.3f}  J&F {(row['J'] + row['F']) / 2:.3f}  "
                  f"({row['frames_scored']} frames scored)")
        else:
            print(f"{name:<10} ids in frame 0: {row['objects_in_first']}, in the last frame: {row['objects_in_last']}")
    results.write_file("samples.json", lambda path: path.write_text(json.dumps(report, indent=2, default=float)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
