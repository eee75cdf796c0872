"""Evidence that self-supervised training helps: J&F after a short training budget.

1. Trains a backbone with a config (default configs/evidence.yaml) on the
   unlabelled frames/videos given with --data, for --minutes of training time
   (--evaluate-only: score the backbone an earlier run left in OUT/run).
2. Propagates the first-frame masks of a DAVIS-2016-layout folder with
   (a) the trained backbone, (b) the same architecture at random
   initialisation, each compared by raw dot products (MAST's default) and by
   cosine similarity (tau 0.05, top-16, the CRW knobs), and (c) raw LAB
   pixels; scores each as `mast evaluate` does.
3. Prints a table and writes OUT/evidence.json.

    python scripts/evidence.py --davis ../shared/data/davis2016 --split dev \\
        --data ../shared/data/davis2016/JPEGImages ../shared/data/raw_videos --minutes 40 --out runs/evidence
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mast.common.config import to_dict
from mast.common.files import atomic_write_text
from mast.eval.davis import evaluate_davis
from mast.eval.propagate import propagate_to_folder, results_folder
from mast.eval.sources import davis_inputs
from mast.models.backbone import ResNetBackbone
from mast.models.extractors import BackboneExtractor, PixelExtractor
from mast.models.propagation import COSINE_KNOBS, PropagationConfig, Propagator
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask

ROOT = Path(__file__).resolve().parents[1]


def propagate_and_score(name, extractor, config, args, device) -> dict:
    results = args.out / "results" / name.replace("/", "-")
    inputs = davis_inputs(args.davis, args.split, 2016)
    propagator = Propagator(extractor, config, device)
    # The script's own folder: a rerun replaces what an earlier run wrote there.
    folder = results_folder(results, propagator, overwrite=True, davis=str(args.davis.resolve()), year=2016)
    folder.start({"sequences": [item.name for item in inputs]})
    start, frames = time.perf_counter(), 0
    for item in inputs:
        propagate_to_folder(item, propagator, folder)
        frames += (item.num_frames or 1) - 1
    seconds = time.perf_counter() - start
    table, per_object = evaluate_davis(args.davis, results, args.split, year=2016, processes=2)
    print(f"  {name:<15} J&F {table['J&F-Mean']:.4f}  J {table['J-Mean']:.4f}  F {table['F-Mean']:.4f}  "
          f"({frames / seconds:.1f} frames/s)", flush=True)
    return {"features": name, **table, "frames_per_second": frames / seconds,
            "per_sequence": {row["Sequence"]: (row["J-Mean"] + row["F-Mean"]) / 2 for row in per_object}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016-layout folder to score on")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--data", nargs="+", help="unlabelled videos to train on")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "evidence.yaml")
    parser.add_argument("--set", action="append", default=[], help="config overrides key=value")
    parser.add_argument("--minutes", type=float, default=40.0, help="training time budget")
    parser.add_argument("--window", type=int, default=13, help="propagation window")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--evaluate-only", action="store_true",
                        help="skip training; score OUT/run/backbone.pt from an earlier run")
    args = parser.parse_args()

    run_dir = args.out / "run"
    if args.evaluate_only:
        if not (run_dir / "backbone.pt").is_file():
            parser.error(f"--evaluate-only: {run_dir / 'backbone.pt'} does not exist; train first")
        config = load_config(run_dir / "config.yaml")
        summary = json.loads((args.out / "evidence.json").read_text()) if (args.out / "evidence.json").is_file() else {}
        summary = {"steps": summary.get("training_steps"), "losses": summary.get("first_losses", []) + summary.get("last_losses", [])}
    else:
        if not args.data:
            parser.error("--data is required unless --evaluate-only")
        config = load_config(args.config, [*args.set, f"train.time_budget_minutes={args.minutes}"])
        print(f"training for {args.minutes} min -> {run_dir}", flush=True)
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        summary = Trainer(ReconstructionTask(config, [str(p) for p in args.data]), run_dir, resume=resume).run()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # The quick preset (frame 0 + 3 previous, attended directly): cheap enough for
    # a CPU, and the same references for every kind of features.
    dot = PropagationConfig.preset("quick", window=args.window)
    cosine = dot.with_overrides(**COSINE_KNOBS)
    trained = BackboneExtractor.from_checkpoint(run_dir / "backbone.pt", device)
    torch.manual_seed(0)
    random_init = BackboneExtractor(ResNetBackbone(config.model).to(device))
    print("propagating and scoring:", flush=True)
    rows = [
        propagate_and_score("trained/dot", trained, dot, args, device),
        propagate_and_score("trained/cosine", trained, cosine, args, device),
        propagate_and_score("random/dot", random_init, dot, args, device),
        propagate_and_score("random/cosine", random_init, cosine, args, device),
        propagate_and_score("pixels", PixelExtractor(), dot.with_overrides(**PixelExtractor.propagation), args, device),
    ]
    report = {"training_steps": summary["steps"], "minutes": config.train.time_budget_minutes, "device": str(device),
              "config": to_dict(config), "protocols": {"dot": dot.__dict__, "cosine": cosine.__dict__}, "results": rows,
              "first_losses": summary["losses"][:20], "last_losses": summary["losses"][-20:]}
    atomic_write_text(args.out / "evidence.json", json.dumps(report, indent=2, default=str))
    print(f"{'features':<15} {'J&F':>7} {'J':>7} {'F':>7}")
    for row in rows:
        print(f"{row['features']:<15} {row['J&F-Mean']:>7.4f} {row['J-Mean']:>7.4f} {row['F-Mean']:>7.4f}")
    print(f"wrote {args.out / 'evidence.json'} ({summary['steps']} training steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
