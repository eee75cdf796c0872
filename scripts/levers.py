"""Which training levers make self-supervised features generalise: one table, one split, one budget.

Each lever is one change to the base recipe (--config, default
configs/evidence.yaml, trained on --data plus the frames of --train-sequences).
Every lever trains for the same --minutes with ``scripts/evidence.py`` (which
refuses a scored sequence among the training inputs), validates on
--validate-sequences (never scored ones) to choose its propagation knobs, and
is scored on --score-sequences under the knobs saved in its checkpoint. The
base run also scores the base architecture at random initialisation, and
OUT/pixels-<preset> the pixel baseline under each of --pixel-presets (the best
is the bar every lever's gain is measured against).

Levers (--levers, default all):
  base            the recipe as it is
  extra-clips     also trains on --extra-data (more unlabelled clips)
  memory-phase    MAST's phase 2: after --pairs-steps steps of pairs, the long/short-term memory
  cosine-training the engine attends with L2-normalised features and temperature 0.05 in
                  training too, the protocol the features are used with
  kmeans-ce       k-means pseudo-labels and cross-entropy instead of the LAB Huber loss
  crop-256        256x256 crops (four times the pixels per clip) at batch 4
  wide            widths 64-128-256-256 instead of 32-64-128-128

Prints the table, writes OUT/levers.json; each lever keeps OUT/<lever>/ (a rerun
skips levers whose evidence.json exists and resumes an interrupted training).

    python scripts/levers.py --davis ../shared/data/davis2016 \\
        --data ../shared/data/raw_videos --extra-data ../shared/data/raw_videos_more \\
        --minutes 10 --out runs/levers
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mast.common.config import comma_names
from mast.common.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "blackswan,breakdance,car-roundabout,dog,libby"
SCORE = "bmx-trees,car-shadow,dance-twirl,drift-straight,soapbox"

#: lever -> config overrides (the extra clips and the memory phase are added in lever_arguments)
LEVERS: dict[str, tuple[str, ...]] = {
    "base": (),
    "extra-clips": (),
    "memory-phase": (),
    "cosine-training": ("engine.normalize=true", "engine.temperature=0.05"),
    "kmeans-ce": ("objective.name=kmeans-ce",),
    "crop-256": ("data.size=256", "train.batch_size=4"),
    "wide": ("model.widths=[64,128,256,256]",),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016-layout folder")
    parser.add_argument("--split", default="dev", help="split file listing every sequence used (default dev)")
    parser.add_argument("--train-sequences", default=TRAIN, help=f"sequences whose frames are trained on ({TRAIN})")
    parser.add_argument("--score-sequences", default=SCORE, help=f"sequences scored, never trained on ({SCORE})")
    parser.add_argument("--validate-sequences", default="blackswan,dog",
                        help="sequences (not scored ones) that choose each lever's propagation knobs (blackswan,dog)")
    parser.add_argument("--data", type=Path, nargs="+", default=[], help="unlabelled videos/folders of the base recipe")
    parser.add_argument("--extra-data", type=Path, nargs="+", default=[], help="the extra-clips lever's additional videos")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "evidence.yaml", help="the base recipe")
    parser.add_argument("--set", action="append", default=[], help="config override of every lever, key=value")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time of every lever (default 10)")
    parser.add_argument("--pairs-steps", type=int, default=300, help="memory-phase: pairs steps before the memory phase")
    parser.add_argument("--pixel-presets", default="quick,mast,crw", help="presets of the pixel bar (best counts; default all three)")
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated levers (default: all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.levers = comma_names(args.levers)
    unknown = [name for name in args.levers if name not in LEVERS]
    if unknown:
        parser.error(f"--levers: unknown {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    if "extra-clips" in args.levers and not args.extra_data:
        parser.error("the extra-clips lever needs --extra-data")
    if args.minutes <= 0 or args.pairs_steps < 1:
        parser.error("--minutes must be > 0 and --pairs-steps >= 1")
    return args


def lever_arguments(name: str, args: argparse.Namespace) -> list[str]:
    """The ``scripts/evidence.py`` arguments of lever ``name``."""
    data = [*args.data, *(args.extra_data if name == "extra-clips" else [])]
    sets = [*LEVERS[name], *args.set]
    if name == "memory-phase":
        sets.append(f"phases=[{{name: pairs, mode: pairs, steps: {args.pairs_steps}, lr: 1.0e-3}}, "
                    "{name: memory, mode: memory, steps: 1000000, lr: 1.0e-4}]")
    rows = "saved,random" if name == "base" else "saved"
    return ["--davis", str(args.davis), "--split", args.split, "--train-sequences", args.train_sequences,
            "--score-sequences", args.score_sequences, "--validate-sequences", args.validate_sequences,
            "--config", str(args.config), "--minutes", str(args.minutes), "--rows", rows,
            "--out", str(args.out / name),
            *(["--data", *map(str, data)] if data else []), *[item for s in sets for item in ("--set", s)]]


def pixel_arguments(preset: str, args: argparse.Namespace) -> list[str]:
    """The ``scripts/evidence.py`` arguments that score the pixel baseline under ``preset``."""
    return ["--davis", str(args.davis), "--split", args.split, "--score-sequences", args.score_sequences,
            "--rows", "pixels", "--pixel-presets", preset, "--out", str(args.out / f"pixels-{preset}")]


def run_report(folder: str, arguments: list[str], args: argparse.Namespace) -> dict:
    """OUT/<folder>/evidence.json, running ``scripts/evidence.py arguments`` unless an earlier run did."""
    report = args.out / folder / "evidence.json"
    if not report.is_file():
        command = [sys.executable, str(ROOT / "scripts" / "evidence.py"), *arguments]
        print(f"{folder}: {' '.join(command[2:])}", flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
    return json.loads(report.read_text())


def references(base: dict, args: argparse.Namespace) -> list[dict]:
    """The rows every lever is compared with: the base architecture at random init (from the
    base run) and the pixel baseline under each of --pixel-presets (OUT/pixels-<preset>; a
    preset the base run already scored, as earlier versions of this script did, is reused)."""
    rows = [row for row in base["results"] if not row["features"].startswith("trained/")]
    scored = {row["features"] for row in rows}
    for preset in comma_names(args.pixel_presets):
        if f"pixels/{preset}" not in scored:
            rows += run_report(f"pixels-{preset}", pixel_arguments(preset, args), args)["results"]
    return rows


def table(levers: dict[str, dict], bar: float) -> tuple[str, list[dict]]:
    """Rows of the lever table (trained/saved of each lever) and its text, against the pixel ``bar``."""
    rows = []
    for name, report in levers.items():
        saved = next(row for row in report["results"] if row["features"] == "trained/saved")
        rows.append({"lever": name, "steps": report["training_steps"], "J&F": saved["J&F-Mean"],
                     "J": saved["J-Mean"], "F": saved["F-Mean"], "gain_over_pixels": saved["J&F-Mean"] - bar})
    lines = [f"{'lever':<16} {'steps':>6} {'J&F':>7} {'J':>7} {'F':>7} {'vs pixels':>10}"]
    lines += [f"{r['lever']:<16} {r['steps']:>6} {r['J&F']:>7.3f} {r['J']:>7.3f} {r['F']:>7.3f} "
              f"{r['gain_over_pixels']:>+10.3f}" for r in rows]
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ["base", *(name for name in args.levers if name != "base")]  # base scores the references
    levers = {name: run_report(name, lever_arguments(name, args), args) for name in names}
    compared = references(levers["base"], args)
    bar = max(row["J&F-Mean"] for row in compared if row["features"].startswith("pixels/"))
    text, rows = table({name: levers[name] for name in names if name in args.levers or name == "base"}, bar)
    atomic_write_text(args.out / "levers.json", json.dumps(
        {"minutes": args.minutes, "score_sequences": comma_names(args.score_sequences), "pixel_bar": bar,
         "levers": rows, "references": [{key: row[key] for key in ("features", "J&F-Mean", "J-Mean", "F-Mean")}
                                        for row in compared]}, indent=2))
    print(text)
    for row in compared:
        print(f"{row['features']:<16} {'':>6} {row['J&F-Mean']:>7.3f} {row['J-Mean']:>7.3f} {row['F-Mean']:>7.3f}")
    print(f"wrote {args.out / 'levers.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
