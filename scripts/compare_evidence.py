"""The honest split of issue 26: the supervised baselines beside zero motion, pixels and self-supervision.

The protocol of docs/evidence.md ("All models side by side"), on a
DAVIS-2016-layout folder split by name into three disjoint sets (an overlap of
any two is refused):

- --train-sequences: each baseline of --baselines trains on their masks with
  ``mast train-baseline NAME``, from --init (default cpu-hour, the backbone
  shipped with mast, which never read a DAVIS frame: docs/cpu-hour.md), for at
  most --minutes of training time, under its recipe: configs/<NAME>-cpu.yaml
  where it exists (configs/ranet-cpu.yaml), else the packaged
  configs/<NAME>.yaml; --config NAME=FILE gives another.
- --validate-sequences: held out and scored during training (``--validate``):
  the recipe's ``validation`` section stops a run whose J&F stops improving,
  and the run keeps its best weights (best-model.pt) and its learning curve
  (validation.png), which starts at step 0 (the --init backbone, untrained
  heads): every run is validated before its first step.
- --score-sequences: read by no training and no validation; one ``mast
  compare`` scores on them zero motion (model ``static``), the LAB-pixel
  baseline under each --pixel-presets, the --init backbone under each
  --backbone-presets and each baseline's best-model.pt.

With --refit each baseline is then trained again on the training and validation
sequences together for as many steps as its best validation (standard practice
once the held-out set has chosen the step count: the final model sees all the
data there is), and scored too, as NAME-refit; the scored sequences stay unread.

The jobs run one after another, each with --threads. OUT/runs/<NAME>/ holds
each training run, OUT/models.yaml the models compared, OUT/compare/ the
comparison (table, plot, page), OUT/<NAME>-validation.png each run's learning
curve, OUT/evidence.md the table beside each run's steps, best validation and
curve, and OUT/compare_evidence.json each training's settings, steps and wall
time. A rerun reuses finished work: a finished training is not run again, an
interrupted one goes on with ``--resume`` (with what its time budget has
left), and ``mast compare`` reuses the rows it finished. A training made with
other settings (sequences, minutes, recipe, init, overrides) is refused.

    python scripts/compare_evidence.py --davis ../shared/data/davis2016 --out runs/compare-evidence
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mast.common.config import comma_names
from mast.common.files import atomic_write_text, atomic_write_with
from mast.eval.sources import davis_inputs
from mast.models.protocol import PRESETS
from mast.models.shipped import SHIPPED, checkpoint_path
from mast.train.baselines import names as baseline_names
from mast.train.checkpoint import step_checkpoints

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "blackswan,car-roundabout,car-shadow,dance-twirl,libby"
VALIDATE = "breakdance,dog"
SCORE = "bmx-trees,drift-straight,soapbox"
RECORD = "compare_evidence.json"
SUMMARY = "evidence.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016-layout folder (masks on every frame)")
    parser.add_argument("--split", default="dev", help="split file under ImageSets/2016/ listing every sequence used")
    parser.add_argument("--train-sequences", default=TRAIN, help=f"sequences trained on (default {TRAIN})")
    parser.add_argument("--validate-sequences", default=VALIDATE,
                        help=f"held-out sequences validated on during training (default {VALIDATE})")
    parser.add_argument("--score-sequences", default=SCORE, help=f"sequences scored (default {SCORE})")
    parser.add_argument("--baselines", default=",".join(baseline_names()),
                        help="comma-separated supervised baselines to train and score (default: all registered)")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=FILE",
                        help="the recipe of baseline NAME (default configs/NAME-cpu.yaml if it exists, "
                             "else configs/NAME.yaml)")
    parser.add_argument("--init", default="cpu-hour",
                        help="backbone the baselines start from and the self-supervised rows score "
                             "(default cpu-hour, shipped with mast)")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="training time budget of each baseline (default 30)")
    parser.add_argument("--pixel-presets", default="quick", help="presets of the LAB-pixel rows (default quick)")
    parser.add_argument("--backbone-presets", default="quick",
                        help="presets of the self-supervised rows (default quick; crw is about 8 times slower)")
    parser.add_argument("--refit", action="store_true",
                        help="also train each baseline again on the training and validation sequences together "
                             "for the steps its validation chose, and score that model as NAME-refit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override given to every baseline's training")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each job (default 2)")
    parser.add_argument("--out", type=Path, required=True,
                        help=f"output folder: runs/, models.yaml, compare/, {SUMMARY} and {RECORD}")
    args = parser.parse_args(argv)
    for name in ("train_sequences", "validate_sequences", "score_sequences", "baselines", "pixel_presets",
                 "backbone_presets"):
        setattr(args, name, comma_names(getattr(args, name)))
    check_choices(parser, args)
    args.recipes = recipes(parser, args)
    args.init = init_backbone(parser, args.init)
    try:  # every sequence exists and has its masks, before anything is written
        davis_inputs(args.davis, args.split, 2016, args.train_sequences + args.validate_sequences
                     + args.score_sequences)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return args


def check_choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses unknown names, overlapping sets, non-positive numbers and a foreign --out."""
    for flag, chosen, known in (("--baselines", args.baselines, baseline_names()),
                                ("--pixel-presets", args.pixel_presets, PRESETS),
                                ("--backbone-presets", args.backbone_presets, PRESETS)):
        unknown = [name for name in chosen if name not in known]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    groups = {"--train-sequences": args.train_sequences, "--validate-sequences": args.validate_sequences,
             "--score-sequences": args.score_sequences}
    for later, (flag, chosen) in enumerate(groups.items()):
        for other, given in list(groups.items())[:later]:
            overlap = sorted(set(chosen) & set(given))
            if overlap:
                parser.error(f"{flag} overlap {other}: {', '.join(overlap)}")
    if not args.validate_sequences:
        parser.error("--validate-sequences: give the held-out sequences that pick each run's best step")
    for flag in ("minutes", "threads"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be > 0, got {getattr(args, flag)}")
    if args.out.exists() and any(args.out.iterdir()) and not (args.out / RECORD).is_file():
        parser.error(f"--out: {args.out} holds files this script did not write; give a new or empty folder")


def recipes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Path]:
    """Each baseline's config file: --config NAME=FILE, else its CPU recipe, else its packaged config."""
    chosen = {}
    for item in args.config:
        name, _, file = item.partition("=")
        if name not in args.baselines or not file:
            parser.error(f"--config: expected NAME=FILE with NAME one of --baselines ({', '.join(args.baselines)}), "
                         f"got {item!r}")
        if not Path(file).is_file():
            parser.error(f"--config: {file} is not a file")
        chosen[name] = Path(file).resolve()
    for name in args.baselines:
        recipe = ROOT / "configs" / f"{name}-cpu.yaml"
        chosen.setdefault(name, recipe if recipe.is_file() else ROOT / "configs" / f"{name}.yaml")
    return chosen


def init_backbone(parser: argparse.ArgumentParser, value: str) -> str:
    """--init as the commands take it: a shipped backbone's name as given, else the file's absolute path."""
    path = checkpoint_path(value)
    if not path.is_file():
        parser.error(f"--init: {value} is not a file")
    return value if value in SHIPPED and not Path(value).exists() else str(path.resolve())


def mast(*arguments: str) -> None:
    """Runs one ``mast`` command in a subprocess, as a user would; a failure stops the script."""
    print("  $ mast " + " ".join(map(str, arguments)), flush=True)
    subprocess.run([sys.executable, "-m", "mast", *map(str, arguments)], check=True, cwd=ROOT)


def training_command(name: str, args: argparse.Namespace, refit_steps: int | None = None) -> list[str]:
    """The ``mast`` arguments that train baseline ``name`` from ``--init``, validating on the held-out
    sequences; with ``refit_steps``, on the training and validation sequences together for that
    many steps, without validation (the held-out sequences chose the step count)."""
    budget = f"train.time_budget_minutes={args.minutes}"
    command = ["train-baseline", name, "--config", args.recipes[name], "--init", args.init, "--data", args.davis,
               "--year", "2016"]
    if refit_steps is not None:
        sequences = ",".join(args.train_sequences + args.validate_sequences)
        return [*command, "--sequences", sequences, *sets([budget, *args.set, f"phases.0.steps={refit_steps}"])]
    return [*command, "--sequences", ",".join(args.train_sequences),
            "--validate", args.davis, "--validate-year", "2016", "--validate-split", args.split,
            "--validate-sequences", ",".join(args.validate_sequences),
            # validating at step 0 too: a run its budget ends early still has a best-model.pt to score
            *sets([budget, "validation.at_start=true", *args.set])]


def sets(overrides: list[str]) -> list[str]:
    return [item for value in overrides for item in ("--set", value)]


def training_settings(name: str, args: argparse.Namespace) -> dict:
    """What makes a training's weights: a rerun may reuse the training only under the same."""
    return {"davis": str(args.davis.resolve()), "train_sequences": args.train_sequences,
            "validate_sequences": args.validate_sequences, "config": str(args.recipes[name]),
            "init": args.init, "minutes": args.minutes, "overrides": args.set}


def check_earlier_trainings(args: argparse.Namespace, record: dict) -> None:
    """Refuses, before anything runs, a training an earlier run made with other settings."""
    for name in args.baselines:
        earlier = record.get(name, {}).get("settings")
        if earlier is not None and earlier != training_settings(name, args):
            raise SystemExit(f"compare_evidence.py: error: {args.out / 'runs' / name} was trained with other "
                             f"settings ({args.out / RECORD}); give another --out")


def train(name: str, args: argparse.Namespace, record: dict) -> None:
    """Trains ``name`` unless its final weights exist; records its settings, steps, best validation and
    wall time, and copies its learning curve to OUT/<name>-validation.png."""
    run = args.out / "runs" / name
    entry = record.setdefault(name, {"settings": training_settings(name, args), "wall_seconds": 0.0})
    if not (run / "model.pt").is_file():
        save_record(args, record)  # the settings first, so that a stopped run is checked on its rerun
        print(f"{name}: training", flush=True)
        start = time.monotonic()
        resume = ["--resume"] if (run / "checkpoints" / "last.pt").is_file() else []
        mast(*training_command(name, args), "--out", run, "--threads", args.threads, *resume)
        entry["wall_seconds"] += time.monotonic() - start
    entry["steps"] = steps_reached(run)
    validation = json.loads((run / "validation.json").read_text())
    entry["best_step"], entry["best_score"] = validation["best_step"], validation["best_score"]
    atomic_write_with(args.out / f"{name}-validation.png", lambda path: shutil.copyfile(run / "validation.png", path))
    save_record(args, record)


def refit(name: str, args: argparse.Namespace, record: dict) -> None:
    """Trains ``name`` again as OUT/runs/<name>-refit (unless its model.pt exists): on the training and
    validation sequences together, for the steps of its best validation; none when that was step 0."""
    entry = record[name]
    if entry["best_step"] < 1:
        print(f"{name}: no refit (its best validation was its starting model, step 0)", flush=True)
        entry["refit"] = None
        return
    run = args.out / "runs" / f"{name}-refit"
    refitted = entry.get("refit") or {"steps": entry["best_step"], "wall_seconds": 0.0}
    entry["refit"] = refitted
    if not (run / "model.pt").is_file():
        print(f"{name}: refit on {', '.join(args.train_sequences + args.validate_sequences)} for "
              f"{refitted['steps']} steps", flush=True)
        start = time.monotonic()
        resume = ["--resume"] if (run / "checkpoints" / "last.pt").is_file() else []
        mast(*training_command(name, args, refitted["steps"]), "--out", run, "--threads", args.threads, *resume)
        refitted["wall_seconds"] += time.monotonic() - start
    save_record(args, record)


def steps_reached(run: Path) -> int:
    """The global step a finished training ended at: the loop checkpoints it last, as ``step-<N>.pt``
    (none when its time budget ran out before the first step)."""
    found = step_checkpoints(run / "checkpoints")
    return int(found[0].stem.removeprefix("step-")) if found else 0


def save_record(args: argparse.Namespace, record: dict) -> None:
    atomic_write_text(args.out / RECORD, json.dumps(record, indent=2))


def models_file(args: argparse.Namespace) -> list[dict]:
    """The entries of OUT/models.yaml (run checkpoints relative to OUT, where the file lies)."""
    entries = [{"name": "static", "model": "static"}]
    entries += [{"name": f"pixels-{preset}", "model": "mast", "preset": preset} for preset in args.pixel_presets]
    entries += [{"name": f"self-supervised-{preset}", "model": "mast", "checkpoint": args.init,
                 "preset": preset} for preset in args.backbone_presets]
    entries += [{"name": name, "model": name, "checkpoint": f"runs/{name}/best-model.pt"} for name in args.baselines]
    entries += [{"name": f"{name}-refit", "model": name, "checkpoint": f"runs/{name}-refit/model.pt"}
                for name in args.baselines if args.refit and has_refit(args, name)]
    return entries


def has_refit(args: argparse.Namespace, name: str) -> bool:
    """Whether baseline ``name`` has a refit model to score."""
    return (args.out / "runs" / f"{name}-refit" / "model.pt").is_file()


def summary(args: argparse.Namespace, record: dict) -> str:
    """OUT/evidence.md: the comparison's table, then each baseline's training and learning curve."""
    lines = [f"# Scored on {', '.join(args.score_sequences)}", "",
             (args.out / "compare" / "compare.md").read_text(encoding="utf-8").rstrip(), "",
             f"Trained on the masks of {', '.join(args.train_sequences)} from {Path(args.init).name}, "
             f"validated on {', '.join(args.validate_sequences)}; the best validation's weights are scored.", ""]
    for name in args.baselines:
        entry = record[name]
        lines += [f"## {name}", "", f"{entry['steps']} steps in {entry['wall_seconds'] / 60:.1f} min "
                  f"({Path(entry['settings']['config']).name}); best validation J&F {entry['best_score']:.3f} "
                  f"at step {entry['best_step']}.", "",
                  f"![{name}: validation J&F against steps]({name}-validation.png)", ""]
        if args.refit and entry.get("refit"):
            lines += [f"{name}-refit: the same recipe on {', '.join(args.train_sequences + args.validate_sequences)} "
                      f"for {entry['refit']['steps']} steps, {entry['refit']['wall_seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = json.loads((args.out / RECORD).read_text()) if (args.out / RECORD).is_file() else {}
    check_earlier_trainings(args, record)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.baselines:
        train(name, args, record)
        if args.refit:
            refit(name, args, record)
    atomic_write_text(args.out / "models.yaml", yaml.safe_dump(models_file(args), sort_keys=False))
    mast("compare", "--models", args.out / "models.yaml", "--davis", args.davis, "--year", "2016",
         "--split", args.split, "--sequences", ",".join(args.score_sequences), "--out", args.out / "compare",
         "--threads", args.threads)
    atomic_write_text(args.out / SUMMARY, summary(args, record))
    print("\n".join(f"{name}: {record[name]['steps']} steps in {record[name]['wall_seconds'] / 60:.1f} min, "
                    f"best validation J&F {record[name]['best_score']:.3f} at step {record[name]['best_step']}"
                    for name in args.baselines))
    print(f"summary {args.out / SUMMARY}, table {args.out / 'compare' / 'compare.md'}, "
          f"page {args.out / 'compare' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
