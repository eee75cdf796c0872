"""Evidence for the supervised baselines on real video, beside pixels and self-supervision.

The protocol of docs/baselines.md §7.5: every variant of SiamMask and RANet is
trained with ``mast train-baseline`` for the same number of steps on the masks of
--train-sequences of a DAVIS-2016-layout folder, the first-frame masks of
--score-sequences (which training never reads; overlap is refused) are
propagated with ``mast propagate``, and each result folder is scored as
``mast evaluate --sequences`` scores it. Beside them, on the same sequences:
the raw-LAB-pixel baseline and the self-supervised memory propagator with the
backbone of --ss-checkpoint under the knobs saved in it, both with the --preset
protocol. ``/untrained`` rows are
the packaged architecture with its random initial weights, never trained; a
trained model has to beat them. ``/init`` rows start the backbone from
--ss-checkpoint (``mast train-baseline --init``).

Prints one table (J&F, J, F, tracking frames/s) and writes OUT/baseline_evidence.json.
A rerun reuses what an earlier run finished in OUT (its model.pt and scores), so
an interrupted run goes on where it stopped; a row folder made with other
settings (steps, overrides, sequences, checkpoint, preset) is refused.

    python scripts/baseline_evidence.py --davis ../shared/data/davis2016 \\
        --ss-checkpoint runs/evidence/run/backbone.pt --out runs/baselines
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from mast.common.config import comma_names
from mast.common.files import atomic_write_text
from mast.common.outputs import file_sha256
from mast.eval.davis import evaluate_davis
from mast.eval.sources import davis_inputs
from mast.train import baselines
from mast.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "blackswan,breakdance,car-roundabout,car-shadow,dance-twirl,dog,libby"
SCORE = "bmx-trees,drift-straight,soapbox"

#: name -> (baseline, start of the backbone: untrained | random | init, config overrides)
VARIANTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "siammask/untrained": ("siammask", "untrained", ()),
    "siammask/random": ("siammask", "random", ()),
    "siammask/init": ("siammask", "init", ()),
    "ranet/untrained": ("ranet", "untrained", ()),
    "ranet/random-bce": ("ranet", "random", ("loss=bce",)),
    "ranet/init-bce": ("ranet", "init", ("loss=bce",)),
    "ranet/init-soft-iou": ("ranet", "init", ("loss=soft-iou",)),
}
REFERENCES = ("pixels", "self-supervised")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016-layout folder (masks on every frame)")
    parser.add_argument("--split", default="dev", help="split file under ImageSets/2016/ listing every sequence used")
    parser.add_argument("--train-sequences", default=TRAIN, help=f"sequences trained on (default {TRAIN})")
    parser.add_argument("--score-sequences", default=SCORE, help=f"sequences scored (default {SCORE})")
    parser.add_argument("--ss-checkpoint", type=Path, required=True,
                        help="a mast pretrain backbone.pt: the --init of /init rows and the self-supervised row")
    parser.add_argument("--variants", default=",".join((*VARIANTS, *REFERENCES)),
                        help="comma-separated rows to produce (default: all): " + ", ".join((*VARIANTS, *REFERENCES)))
    parser.add_argument("--siammask-steps", type=int, default=200, help="training steps of each SiamMask variant")
    parser.add_argument("--ranet-steps", type=int, default=100, help="training steps of each RANet variant")
    parser.add_argument("--preset", default="quick", choices=("quick", "mast", "crw"),
                        help="protocol of the pixels and self-supervised rows (default quick: frame 0 + the 3 "
                             "previous, what the self-supervised backbone was validated with; mast is 4-5x slower)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override given to every training run")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per row)")
    args = parser.parse_args(argv)
    args.train_sequences, args.score_sequences = comma_names(args.train_sequences), comma_names(args.score_sequences)
    args.variants = comma_names(args.variants)
    unknown = [name for name in args.variants if name not in VARIANTS and name not in REFERENCES]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}")
    overlap = sorted(set(args.train_sequences) & set(args.score_sequences))
    if overlap:
        parser.error(f"--score-sequences overlap --train-sequences: {', '.join(overlap)}")
    if not args.ss_checkpoint.is_file():
        parser.error(f"--ss-checkpoint: {args.ss_checkpoint} is not a file")
    for flag in ("siammask_steps", "ranet_steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    try:  # every sequence exists and has its masks, before anything is written
        davis_inputs(args.davis, args.split, 2016, args.train_sequences + args.score_sequences)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return args


def mast(*arguments: str) -> None:
    """Runs one ``mast`` command in a subprocess, as a user would; a failure stops the script."""
    command = [sys.executable, "-m", "mast", *map(str, arguments)]
    print("  $ mast " + " ".join(map(str, arguments)), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def write_untrained(baseline: str, path: Path) -> None:
    """``model.pt`` of the packaged architecture at its seeded random initialisation."""
    chosen = baselines.baseline(baseline)
    config = load_config(ROOT / "configs" / chosen.config_file, [], chosen.schema)
    torch.manual_seed(0)
    if baseline == "siammask":
        from mast.models.siammask.model import SiamMask

        SiamMask(config.model, config.siammask).save(path, tracker=asdict(config.tracker))
    else:
        from mast.models.ranet.model import RANet

        RANet(config.model, config.ranet).save(path)


def model_for(name: str, args: argparse.Namespace, folder: Path) -> tuple[list[str], int]:
    """Trains (or writes) the model of row ``name``; returns its propagate arguments and steps."""
    baseline, start, overrides = VARIANTS[name]
    model = folder / "run" / "model.pt"
    steps = 0 if start == "untrained" else getattr(args, f"{baseline}_steps")
    if not model.is_file():
        if start == "untrained":
            model.parent.mkdir(parents=True, exist_ok=True)
            write_untrained(baseline, model)
        else:
            train = ["train-baseline", baseline, "--data", args.davis, "--year", "2016",
                     "--sequences", ",".join(args.train_sequences), "--out", folder / "run"]
            if (folder / "run" / "checkpoints" / "last.pt").is_file():  # an interrupted earlier run
                mast(*train, "--resume")
            else:
                sets = [f"phases.0.steps={steps}", *overrides, *args.set]
                init = ["--init", args.ss_checkpoint] if start == "init" else []
                mast(*train, *init, *[item for value in sets for item in ("--set", value)])
    return ["--model", baseline, "--checkpoint", model], steps


def row_folder(name: str, args: argparse.Namespace) -> Path:
    return args.out / name.replace("/", "-")


def row_settings(name: str, args: argparse.Namespace) -> dict:
    """Everything that makes row ``name``'s numbers: a rerun may reuse the row only under the same."""
    settings = {"davis": str(args.davis.resolve()), "split": args.split, "score_sequences": args.score_sequences}
    if name in VARIANTS:
        baseline, start, overrides = VARIANTS[name]
        settings.update(train_sequences=args.train_sequences, steps=getattr(args, f"{baseline}_steps"),
                        overrides=[*overrides, *args.set])
        if start == "untrained":
            settings.update(steps=0, overrides=[], train_sequences=[])
    if name == "self-supervised" or (name in VARIANTS and VARIANTS[name][1] == "init"):
        settings["ss_checkpoint"] = file_sha256(args.ss_checkpoint)
    if name in REFERENCES:
        settings["preset"] = args.preset
    return settings


def check_earlier_rows(args: argparse.Namespace) -> None:
    """Refuses, before anything runs, a row folder an earlier run made with other settings."""
    for name in args.variants:
        recorded = row_folder(name, args) / "settings.json"
        if recorded.is_file() and json.loads(recorded.read_text()) != row_settings(name, args):
            raise SystemExit(f"baseline_evidence.py: error: {recorded.parent} holds row {name} made with other "
                             f"settings ({recorded}); give another --out")


def score_row(name: str, args: argparse.Namespace) -> dict:
    """Propagates and scores one row; its folder OUT/<name> keeps the model, results and score."""
    folder = row_folder(name, args)
    done = folder / "score.json"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "settings.json", json.dumps(row_settings(name, args), indent=2))
    if done.is_file():
        return json.loads(done.read_text())
    steps = 0
    if name == "pixels":
        propagate = ["--preset", args.preset]
    elif name == "self-supervised":
        propagate = ["--checkpoint", args.ss_checkpoint, "--preset", args.preset]
    else:
        propagate, steps = model_for(name, args, folder)
    results = folder / "results"
    mast("propagate", "--davis", args.davis, "--year", "2016", "--split", args.split,
         "--sequences", ",".join(args.score_sequences), *propagate, "--out", results, "--overwrite")
    # The speed mast propagate measured and recorded: frames after the first, model loading excluded.
    speed = json.loads((results / "run.json").read_text())["history"][-1]["frames_per_second"]
    table, per_object = evaluate_davis(args.davis, results, args.split, year=2016, processes=2,
                                       sequences=args.score_sequences)
    row = {"row": name, "training_steps": steps, "J&F": table["J&F-Mean"], "J": table["J-Mean"],
           "F": table["F-Mean"], "frames_per_second": speed,
           "per_object": {item["Sequence"]: (item["J-Mean"] + item["F-Mean"]) / 2 for item in per_object}}
    atomic_write_text(done, json.dumps(row, indent=2))
    return row


def table(rows: list[dict]) -> str:
    lines = [f"{'row':<22} {'steps':>6} {'J&F':>7} {'J':>7} {'F':>7} {'frames/s':>9}"]
    for row in rows:
        lines.append(f"{row['row']:<22} {row['training_steps']:>6} {row['J&F']:>7.3f} {row['J']:>7.3f} "
                     f"{row['F']:>7.3f} {row['frames_per_second']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_earlier_rows(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        print(f"{name}:", flush=True)
        rows.append(score_row(name, args))
        print(table(rows[-1:]).splitlines()[1], flush=True)
    report = {"train_sequences": args.train_sequences, "score_sequences": args.score_sequences, "preset": args.preset,
              "ss_checkpoint": str(args.ss_checkpoint), "overrides": args.set, "rows": rows}
    atomic_write_text(args.out / "baseline_evidence.json", json.dumps(report, indent=2))
    print(table(rows))
    print(f"wrote {args.out / 'baseline_evidence.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
