"""Every model side by side on real video: trains what is missing, then one ``mast compare``.

The protocol of docs/evidence.md ("All models side by side"), on a
DAVIS-2016-layout folder split by name:

- --score-sequences are propagated from their first mask and scored; no
  training run reads them (an overlap with --train-sequences is refused).
- The supervised baselines (--baselines: SiamMask, RANet, the detection-based
  tracker) train with ``mast train-baseline NAME`` and their packaged configs
  on the masks of --train-sequences, from random weights, each for --minutes.
- The self-supervised backbone trains with ``mast pretrain --config
  configs/cpu-hour.yaml`` on the frames only of --train-sequences (each
  sequence's JPEG folder is a --data input; masks are never read) for
  --backbone-minutes, and is scored under the knobs saved in it with each of
  --backbone-presets.
- The LAB-pixel baseline is scored with each of --pixel-presets.

The jobs run one after another, each with --threads. The models file goes to
OUT/models.yaml, the comparison (table, plot, page) to OUT/compare/, the steps
each training reached and its wall time to OUT/compare_evidence.json.
A rerun reuses finished work: a finished training is not run again, an
interrupted one goes on with ``--resume`` (with what its time budget has left),
and ``mast compare`` reuses the rows it finished. A training made with other
settings (sequences, minutes, overrides) is refused.

    python scripts/compare_evidence.py --davis ../shared/data/davis2016 --out runs/compare-evidence
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mast.common.config import comma_names
from mast.common.files import atomic_write_text
from mast.eval.sources import davis_inputs
from mast.models.protocol import PRESETS
from mast.train.baselines import names as baseline_names
from mast.train.checkpoint import step_checkpoints

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "blackswan,breakdance,car-roundabout,car-shadow,dance-twirl,dog,libby"
SCORE = "bmx-trees,drift-straight,soapbox"
BACKBONE = "self-supervised"  # the pretrain run's name: its folder and its rows
RECORD = "compare_evidence.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016-layout folder (masks on every frame)")
    parser.add_argument("--split", default="dev", help="split file under ImageSets/2016/ listing every sequence used")
    parser.add_argument("--train-sequences", default=TRAIN, help=f"sequences trained on (default {TRAIN})")
    parser.add_argument("--score-sequences", default=SCORE, help=f"sequences scored (default {SCORE})")
    parser.add_argument("--baselines", default=",".join(baseline_names()),
                        help="comma-separated supervised baselines to train and score (default: all registered)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time of each baseline (default 5)")
    parser.add_argument("--backbone-minutes", type=float, default=8.0,
                        help="training time of the self-supervised backbone (default 8)")
    parser.add_argument("--pixel-presets", default="quick", help="presets of the LAB-pixel rows (default quick)")
    parser.add_argument("--backbone-presets", default="quick",
                        help="presets of the self-supervised rows (default quick; crw is about 8 times slower)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override given to every baseline's training")
    parser.add_argument("--backbone-set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override given to the backbone's training")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each job (default 2)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: runs/, models.yaml, compare/ and " + RECORD)
    args = parser.parse_args(argv)
    for name in ("train_sequences", "score_sequences", "baselines", "pixel_presets", "backbone_presets"):
        setattr(args, name, comma_names(getattr(args, name)))
    check_choices(parser, args)
    try:  # every sequence exists and has its masks, before anything is written
        davis_inputs(args.davis, args.split, 2016, args.train_sequences + args.score_sequences)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return args


def check_choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses unknown names, an overlapping split, non-positive numbers and a foreign --out."""
    for flag, chosen, known in (("--baselines", args.baselines, baseline_names()),
                                ("--pixel-presets", args.pixel_presets, PRESETS),
                                ("--backbone-presets", args.backbone_presets, PRESETS)):
        unknown = [name for name in chosen if name not in known]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    overlap = sorted(set(args.train_sequences) & set(args.score_sequences))
    if overlap:
        parser.error(f"--score-sequences overlap --train-sequences: {', '.join(overlap)}")
    for flag in ("minutes", "backbone_minutes", "threads"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    if args.out.exists() and any(args.out.iterdir()) and not (args.out / RECORD).is_file():
        parser.error(f"--out: {args.out} holds files this script did not write; give a new or empty folder")


def mast(*arguments: str) -> None:
    """Runs one ``mast`` command in a subprocess, as a user would; a failure stops the script."""
    print("  $ mast " + " ".join(map(str, arguments)), flush=True)
    subprocess.run([sys.executable, "-m", "mast", *map(str, arguments)], check=True, cwd=ROOT)


def training_command(name: str, args: argparse.Namespace) -> list[str]:
    """The ``mast`` arguments that train ``name`` (a baseline, or the backbone) from scratch."""
    if name == BACKBONE:
        frames = [args.davis / "JPEGImages" / "480p" / sequence for sequence in args.train_sequences]
        return ["pretrain", "--config", ROOT / "configs" / "cpu-hour.yaml", "--data", *frames,
                *sets([f"train.time_budget_minutes={args.backbone_minutes}", *args.backbone_set])]
    return ["train-baseline", name, "--data", args.davis, "--year", "2016",
            "--sequences", ",".join(args.train_sequences),
            *sets([f"train.time_budget_minutes={args.minutes}", *args.set])]


def sets(overrides: list[str]) -> list[str]:
    return [item for value in overrides for item in ("--set", value)]


def training_settings(name: str, args: argparse.Namespace) -> dict:
    """What makes a training's weights: a rerun may reuse the training only under the same."""
    minutes, overrides = (args.backbone_minutes, args.backbone_set) if name == BACKBONE else (args.minutes, args.set)
    return {"davis": str(args.davis.resolve()), "train_sequences": args.train_sequences,
            "minutes": minutes, "overrides": overrides}


def trainings(args: argparse.Namespace) -> list[str]:
    """The runs to train, in order: the baselines, then the backbone when a row scores it."""
    return [*args.baselines, *([BACKBONE] if args.backbone_presets else [])]


def check_earlier_trainings(args: argparse.Namespace, record: dict) -> None:
    """Refuses, before anything runs, a training an earlier run made with other settings."""
    for name in trainings(args):
        earlier = record.get(name, {}).get("settings")
        if earlier is not None and earlier != training_settings(name, args):
            raise SystemExit(f"compare_evidence.py: error: {args.out / 'runs' / name} was trained with other "
                             f"settings ({args.out / RECORD}); give another --out")


def train(name: str, args: argparse.Namespace, record: dict) -> None:
    """Trains ``name`` unless its final weights exist; records its settings, steps and wall time."""
    run = args.out / "runs" / name
    final = run / ("backbone.pt" if name == BACKBONE else "model.pt")
    entry = record.setdefault(name, {"settings": training_settings(name, args), "wall_seconds": 0.0})
    if not final.is_file():
        save_record(args, record)  # the settings first, so that a stopped run is checked on its rerun
        print(f"{name}: training", flush=True)
        start = time.monotonic()
        resume = ["--resume"] if (run / "checkpoints" / "last.pt").is_file() else []
        mast(*training_command(name, args), "--out", run, "--threads", args.threads, *resume)
        entry["wall_seconds"] += time.monotonic() - start
    entry["steps"] = steps_reached(run)
    save_record(args, record)


def steps_reached(run: Path) -> int:
    """The global step a finished training ended at: the loop checkpoints it last, as ``step-<N>.pt``
    (none when its time budget ran out before the first step)."""
    found = step_checkpoints(run / "checkpoints")
    return int(found[0].stem.removeprefix("step-")) if found else 0


def save_record(args: argparse.Namespace, record: dict) -> None:
    atomic_write_text(args.out / RECORD, json.dumps(record, indent=2))


def models_file(args: argparse.Namespace) -> list[dict]:
    """The entries of OUT/models.yaml (checkpoints relative to OUT, where the file lies)."""
    entries = [{"name": f"pixels-{preset}", "model": "mast", "preset": preset} for preset in args.pixel_presets]
    entries += [{"name": f"{BACKBONE}-{preset}", "model": "mast", "checkpoint": f"runs/{BACKBONE}/backbone.pt",
                 "preset": preset} for preset in args.backbone_presets]
    entries += [{"name": name, "model": name, "checkpoint": f"runs/{name}/model.pt"} for name in args.baselines]
    return entries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = json.loads((args.out / RECORD).read_text()) if (args.out / RECORD).is_file() else {}
    check_earlier_trainings(args, record)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in trainings(args):
        train(name, args, record)
    atomic_write_text(args.out / "models.yaml", yaml.safe_dump(models_file(args), sort_keys=False))
    mast("compare", "--models", args.out / "models.yaml", "--davis", args.davis, "--year", "2016",
         "--split", args.split, "--sequences", ",".join(args.score_sequences), "--out", args.out / "compare",
         "--threads", args.threads)
    print("\n".join(f"{name}: {record[name]['steps']} steps in {record[name]['wall_seconds'] / 60:.1f} min"
                    for name in trainings(args)))
    compare = args.out / "compare"
    print(f"table {compare / 'compare.md'}, plot {compare / 'compare.png'}, page {compare / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
