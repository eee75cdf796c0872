"""Several training runs' validation curves on one chart: which variant of a recipe learns?

Each ``--run LABEL=FOLDER`` is a ``mast train-baseline`` (or ``mast pretrain``) run folder
trained with ``--validate``; its ``validation.json`` gives the J&F at every validated step
(the best of its variants). The chart draws them together with the zero-motion bar (the first
mask on every frame, recorded by runs validated from step 0). Each ``--scalar TAG`` adds a
chart of that TensorBoard scalar of every run (``train/mask_predicted_fraction``, say), so
the curves can be read beside what the training did.

    python scripts/learning_curves.py --run recipe=runs/siammask-cpu \\
        --run "mask loss balanced=runs/siammask-balanced" \\
        --scalar train/mask_predicted_fraction --out curves.png

A table of each run's step-0, best and last J&F is printed, and the charts' numbers are
written to a JSON beside the PNG (same name, ``.json``). Nothing is written inside a run folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from mast.common.files import atomic_open, atomic_write_text
from mast.eval.line_plot import line_plot
from mast.train.validation import zero_motion_line


def parse_run(value: str) -> tuple[str, Path]:
    """``LABEL=FOLDER`` -> ``(label, folder)``."""
    label, separator, folder = value.partition("=")
    if not separator or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=FOLDER, got {value!r}")
    return label, Path(folder)


def validation_curve(folder: Path) -> dict:
    """``{"steps", "scores", "zero_motion"}`` of a run folder's ``validation.json``: at every
    validated step the J&F of its best variant."""
    path = folder / "validation.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: was {folder} trained with --validate?")
    try:
        record = json.loads(path.read_text())
        history = record["history"]
        scores = [entry[entry["best"]]["J&F"] for entry in history]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a mast validation record ({error!r})") from None
    return {"steps": [entry["step"] for entry in history], "scores": scores,
            "zero_motion": record.get("zero_motion")}


def tensorboard_scalar(folder: Path, tag: str) -> dict:
    """``{"steps", "values"}`` of scalar ``tag`` in a run folder's ``tensorboard/`` events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = folder / "tensorboard"
    if not events.is_dir():
        raise FileNotFoundError(f"{events} does not exist: {folder} is not a mast run folder")
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        raise ValueError(f"{events} has no scalar {tag!r}; it has {', '.join(sorted(accumulator.Tags()['scalars']))}")
    scalars = accumulator.Scalars(tag)
    return {"steps": [event.step for event in scalars], "values": [event.value for event in scalars]}


def summary(curve: dict) -> dict:
    """Step-0 (the first validated step's), best and last J&F of a :func:`validation_curve`."""
    scores = curve["scores"]
    best = int(np.argmax(scores))
    return {"first": scores[0], "best": scores[best], "best_step": curve["steps"][best], "last": scores[-1]}


def charts(runs: dict[str, dict], scalars: dict[str, dict[str, dict]]) -> np.ndarray:
    """The validation chart and one chart per scalar, stacked: ``(H, 900, 3)`` BGR."""
    series = {label: (run["steps"], run["scores"]) for label, run in runs.items()}
    bars = [run["zero_motion"] for run in runs.values() if run["zero_motion"] is not None]
    if bars:
        series.update([zero_motion_line([step for run in runs.values() for step in run["steps"]], bars[0])])
    images = [line_plot(series, "validation J&F", "training step", "J&F")]
    for tag, values in scalars.items():
        images.append(line_plot({label: (value["steps"], value["values"]) for label, value in values.items()},
                                tag, "training step", tag.rsplit("/", 1)[-1]))
    return np.concatenate(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=parse_run, action="append", required=True, metavar="LABEL=FOLDER",
                        help="a run folder with validation.json, and its label on the chart (repeat)")
    parser.add_argument("--scalar", action="append", default=[], metavar="TAG",
                        help="a TensorBoard scalar of every run to chart below (repeat)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write (and a .json beside it)")
    args = parser.parse_args(argv)
    labels = [label for label, _ in args.run]
    if len(set(labels)) != len(labels):
        parser.error(f"--run: each label once, got {', '.join(labels)}")
    for _, folder in args.run:
        if args.out.resolve().is_relative_to(folder.resolve()):
            parser.error(f"--out: {args.out} is inside the run folder {folder}; write it elsewhere")
    try:
        runs = {label: validation_curve(folder) for label, folder in args.run}
        scalars = {tag: {label: tensorboard_scalar(folder, tag) for label, folder in args.run} for tag in args.scalar}
    except (OSError, ValueError) as error:
        print(f"learning_curves: {error}", file=sys.stderr)
        return 2
    print(f"{'run':<32} {'first':>7} {'best':>7} {'at step':>8} {'last':>7}")
    for label, run in runs.items():
        run.update(summary(run))
        print(f"{label:<32} {run['first']:>7.3f} {run['best']:>7.3f} {run['best_step']:>8} {run['last']:>7.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _, png = cv2.imencode(".png", charts(runs, scalars))
    with atomic_open(args.out, "wb") as file:
        file.write(png.tobytes())
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"runs": runs, "scalars": scalars}, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
