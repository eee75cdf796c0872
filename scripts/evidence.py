"""Evidence that self-supervised training helps, measured on videos training never saw.

1. Trains a backbone with a config (default configs/evidence.yaml) for
   --minutes of training time on unlabelled video: the videos/folders of
   --data plus the frames of --train-sequences of the DAVIS-2016-layout
   folder --davis (their masks are never read). --validate-sequences (never
   scored ones; best held out of training too, so that checkpoint choice and
   early stopping measure transfer) are scored during training (mast
   pretrain --validate).
   --evaluate-only scores the backbone an earlier run left in OUT/run.
2. Propagates the first-frame masks of --score-sequences, which training
   never read (overlap with --train-sequences or a --data folder holding
   one of them is refused), with (a) the trained backbone (the best by
   validation J&F when the run validated, else the last) under the
   propagation knobs saved in it, and with raw dot products (MAST's default)
   and cosine similarity (tau 0.05, top-16), (b) the same architecture at
   random initialisation, both ways, and (c) raw LAB pixels, under
   --pixel-presets; scores each as `mast evaluate --sequences` does.
   Rows use the quick preset; the saved knobs are also scored under each of
   --saved-presets (and the pixels under --pixel-presets), so that every kind
   of features can be compared at its best protocol.
   --rows picks some of (a), (b), (c); saved is (a) under the saved knobs only;
   --rows pixels alone trains nothing. --evaluate-only keeps the rows of
   OUT/evidence.json it does not score again.
3. Prints a table and writes OUT/evidence.json.

    python scripts/evidence.py --davis ../shared/data/davis2016 --split dev \\
        --train-sequences blackswan,breakdance,car-roundabout,dog,libby \\
        --score-sequences bmx-trees,car-shadow,dance-twirl,drift-straight,soapbox \\
        --data ../shared/data/raw_videos ../shared/data/raw_videos_more --minutes 60 --out runs/evidence
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mast.common.config import comma_names
from mast.common.config import to_dict
from mast.common.files import atomic_write_text
from mast.eval.davis import evaluate_davis
from mast.eval.propagate import propagate_to_folder, results_folder
from mast.eval.sources import davis_inputs
from mast.models.backbone import ResNetBackbone
from mast.models.builder import load_tracker
from mast.models.protocol import COSINE, PRESETS, PropagationKnobs
from mast.models.tracker import Tracker
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask
from mast.train.validation import Validator

ROOT = Path(__file__).resolve().parents[1]


def propagate_and_score(name: str, tracker: Tracker, args: argparse.Namespace) -> dict:
    results = args.out / "results" / name.replace("/", "-")
    inputs = davis_inputs(args.davis, args.split, 2016, args.score_sequences)
    # The script's own folder: a rerun replaces what an earlier run wrote there.
    folder = results_folder(results, tracker, overwrite=True, davis=str(args.davis.resolve()), year=2016)
    folder.start({"sequences": [item.name for item in inputs]})
    start, frames = time.perf_counter(), 0
    for item in inputs:
        propagate_to_folder(item, tracker, folder)
        frames += (item.num_frames or 1) - 1
    seconds = time.perf_counter() - start
    table, per_object = evaluate_davis(args.davis, results, args.split, year=2016, processes=2,
                                       sequences=args.score_sequences)
    print(f"  {name:<15} J&F {table['J&F-Mean']:.4f}  J {table['J-Mean']:.4f}  F {table['F-Mean']:.4f}  "
          f"({frames / seconds:.1f} frames/s)", flush=True)
    return {"features": name, **table, "frames_per_second": frames / seconds,
            "per_sequence": {row["Sequence"]: (row["J-Mean"] + row["F-Mean"]) / 2 for row in per_object}}


def check_split(args: argparse.Namespace) -> list[Path]:
    """The training inputs: ``--data`` plus the frame folders of ``--train-sequences``.

    Raises:
        ValueError: a sequence both trained on and scored, a validation sequence that is
            scored, or a ``--data`` path that is, holds or lies inside a scored sequence's frames.
    """
    scored_validation = sorted(set(args.validate_sequences) & set(args.score_sequences))
    if scored_validation:
        raise ValueError(f"--validate-sequences and --score-sequences share {', '.join(scored_validation)}: "
                         "choosing checkpoints on the scored videos would tune on them")
    overlap = sorted(set(args.train_sequences) & set(args.score_sequences))
    if overlap:
        raise ValueError(f"--train-sequences and --score-sequences share {', '.join(overlap)}: "
                         "scores must come from videos training never read")
    frames = args.davis / "JPEGImages" / "480p"
    scored = {name: (frames / name).resolve() for name in args.score_sequences}
    for path in args.data or []:
        path = path.resolve()
        for name, folder in scored.items():
            if path == folder or folder.is_relative_to(path) or path.is_relative_to(folder):
                raise ValueError(f"--data {path} holds the frames of scored sequence {name} ({folder}); "
                                 "train on --train-sequences and other folders only")
    missing = [name for name in args.train_sequences if not (frames / name).is_dir()]
    if missing:
        raise ValueError(f"--train-sequences {', '.join(missing)} not found in {frames}")
    return [*(args.data or []), *(frames / name for name in args.train_sequences)]


def train(args: argparse.Namespace, inputs: list[Path], run_dir: Path):
    """Trains (or resumes) OUT/run for ``--minutes``; returns the config and the run's summary."""
    config = load_config(args.config, [*args.set, f"train.time_budget_minutes={args.minutes}"])
    validator = None
    if args.validate_sequences:
        validator = Validator.from_config(config.validation, args.davis, args.split, 2016, args.validate_sequences)
    print(f"training for {args.minutes} min on {len(inputs)} inputs -> {run_dir}", flush=True)
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    task = ReconstructionTask(config, [str(p) for p in inputs])
    return config, Trainer(task, run_dir, resume=resume, validator=validator).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016-layout folder")
    parser.add_argument("--split", default="dev", help="split file listing every sequence used (default dev)")
    parser.add_argument("--train-sequences", type=comma_names, default=[], help="sequences whose frames are trained on")
    parser.add_argument("--score-sequences", type=comma_names, required=True, help="sequences scored (never trained on)")
    parser.add_argument("--validate-sequences", type=comma_names, default=[],
                        help="sequences scored during training (validation.* of the config); not scored ones, "
                             "best not trained on either")
    parser.add_argument("--data", type=Path, nargs="+", help="more unlabelled videos/folders to train on")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "evidence.yaml")
    parser.add_argument("--set", action="append", default=[], help="config overrides key=value")
    parser.add_argument("--minutes", type=float, default=40.0, help="training time budget")
    parser.add_argument("--window", type=int, default=13, help="propagation window")
    parser.add_argument("--pixel-presets", type=comma_names, default=["quick"],
                        help="presets the pixel baseline is scored with (best reported), e.g. quick,mast,crw")
    parser.add_argument("--saved-presets", type=comma_names, default=["quick"],
                        help="presets the trained backbone's saved knobs are scored with (row trained/saved for "
                             "quick, trained/saved/<preset> for the others), e.g. quick,crw")
    parser.add_argument("--rows", type=comma_names, default=list(ROWS),
                        help="rows to score: saved (the trained backbone under its saved knobs: best-backbone.pt "
                             "if the run validated, else backbone.pt), trained (saved, dot and cosine), random "
                             "(the same architecture at random init), pixels (default: all)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--evaluate-only", action="store_true",
                        help="skip training; score the backbone an earlier run left in OUT/run")
    args = parser.parse_args()
    try:
        inputs = check_split(args)
    except ValueError as error:
        parser.error(str(error))
    unknown = [row for row in args.rows if row not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    for flag, presets in (("--pixel-presets", args.pixel_presets), ("--saved-presets", args.saved_presets)):
        if not presets or set(presets) - set(PRESETS):
            parser.error(f"{flag}: {','.join(presets)} is not a list of presets ({', '.join(PRESETS)})")
    run_dir = args.out / "run"
    pixels_only = args.rows == ["pixels"]  # nothing to train or load
    if pixels_only:
        config, summary = load_config(args.config, args.set), {"steps": 0, "losses": []}
    elif args.evaluate_only:
        if not scored_checkpoint(run_dir).is_file():
            parser.error(f"--evaluate-only: {run_dir / 'backbone.pt'} does not exist; train first")
        config = load_config(run_dir / "config.yaml")
        summary = json.loads((args.out / "evidence.json").read_text()) if (args.out / "evidence.json").is_file() else {}
        summary = {"steps": summary.get("training_steps"), "losses": summary.get("first_losses", []) + summary.get("last_losses", [])}
    else:
        if not inputs:
            parser.error("give --data and/or --train-sequences to train on, or --evaluate-only")
        config, summary = train(args, inputs, run_dir)
    rows = score_all(args, config)
    if args.evaluate_only and (args.out / "evidence.json").is_file():
        rows = merged_rows(json.loads((args.out / "evidence.json").read_text()).get("results", []), rows)
    minutes = None if pixels_only else config.train.time_budget_minutes
    report = {"training_steps": summary["steps"], "minutes": minutes,
              "train_sequences": args.train_sequences, "validate_sequences": args.validate_sequences,
              "score_sequences": args.score_sequences,
              "data": [str(p) for p in args.data or []], "config": to_dict(config), "results": rows,
              "scored_checkpoint": str(scored_checkpoint(run_dir)) if {"saved", "trained"} & set(args.rows) else None,
              "first_losses": summary["losses"][:20], "last_losses": summary["losses"][-20:]}
    atomic_write_text(args.out / "evidence.json", json.dumps(report, indent=2, default=str))
    print(f"{'features':<22} {'J&F':>7} {'J':>7} {'F':>7}")
    for row in rows:
        print(f"{row['features']:<22} {row['J&F-Mean']:>7.4f} {row['J-Mean']:>7.4f} {row['F-Mean']:>7.4f}")
    print(f"wrote {args.out / 'evidence.json'} ({summary['steps']} training steps)")
    return 0


ROWS = ("saved", "trained", "random", "pixels")


def scored_checkpoint(run_dir: Path) -> Path:
    """The backbone scored: the best by validation J&F when the run validated, else the last."""
    best = run_dir / "best-backbone.pt"
    return best if best.is_file() else run_dir / "backbone.pt"


def merged_rows(earlier: list[dict], scored: list[dict]) -> list[dict]:
    """An earlier report's rows with those scored again replaced (same features name), new ones last."""
    fresh = {row["features"]: row for row in scored}
    kept = [fresh.pop(row["features"], row) for row in earlier]
    return kept + list(fresh.values())


def scoring_knobs(preset: str, window: int) -> PropagationKnobs:
    """A preset as the table scores it: quick with ``--window``, the others as they are."""
    return PropagationKnobs(window=window) if preset == "quick" else PropagationKnobs()


def score_all(args: argparse.Namespace, config) -> list[dict]:
    """The rows of the table that ``--rows`` asks for, on the scoring sequences."""
    # The quick preset (frame 0 + 3 previous, attended directly): cheap enough for
    # a CPU, and the same references for every kind of features. Raw dot products
    # at the preset's temperature over every key, whatever knobs a checkpoint saved.
    dot = PropagationKnobs(window=args.window, normalize=False, temperature=1.0, topk=0)
    cosine = COSINE.over(dot)
    rows = []
    if "saved" in args.rows or "trained" in args.rows:
        checkpoint = scored_checkpoint(args.out / "run")
        print(f"propagating and scoring {', '.join(args.score_sequences)} with {checkpoint}:", flush=True)
        saved = {}
        for preset in args.saved_presets:
            name = "trained/saved" if preset == "quick" else f"trained/saved/{preset}"
            tracker = load_tracker("mast", checkpoint, preset, **scoring_knobs(preset, args.window).as_overrides())
            saved[tracker.config] = propagate_and_score(name, tracker, args)
            rows.append(saved[tracker.config])
        for name, knobs in (("trained/dot", dot), ("trained/cosine", cosine)) if "trained" in args.rows else ():
            tracker = load_tracker("mast", checkpoint, "quick", **knobs.as_overrides())
            # The saved knobs are usually one of the two protocols: its row is not propagated twice.
            rows.append({**saved[tracker.config], "features": name} if tracker.config in saved else
                        propagate_and_score(name, tracker, args))
    if "random" in args.rows:
        torch.manual_seed(0)
        random_init = ResNetBackbone(config.model)
        rows += [propagate_and_score(f"random/{name}", load_tracker("mast", random_init, "quick", **knobs.as_overrides()),
                                     args) for name, knobs in (("dot", dot), ("cosine", cosine))]
    for preset in args.pixel_presets if "pixels" in args.rows else ():
        pixels = load_tracker("mast", None, preset, **scoring_knobs(preset, args.window).as_overrides())
        rows.append(propagate_and_score(f"pixels/{preset}", pixels, args))
    return rows


if __name__ == "__main__":
    sys.exit(main())
