"""Predicted mask area against the ground truth's, frame by frame: does a tracker's mask shrink?

For each sequence of a results folder (``mast propagate --out RESULTS``), the
fraction of the frame each predicted mask covers (any object id) beside the
ground truth's, drawn as one chart per sequence stacked in a PNG, with a table:
the mean ratio of predicted to true area, and the first frame where the
prediction covers less than half the truth.

    python scripts/mask_area.py runs/siammask/results --davis ../shared/data/davis2016 --year 2016 \\
        --sequences drift-straight,soapbox --out runs/siammask/area.png

The PNG's numbers are also written to a JSON beside it (same name, ``.json``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from mast.common.files import atomic_open, atomic_write_text
from mast.common.masks import read_mask
from mast.data.davis import DavisDataset
from mast.eval.line_plot import line_plot


def sequence_areas(results: Path, davis: DavisDataset, name: str) -> dict[str, list[float]]:
    """Per frame: ``predicted`` and ``truth``, the fractions of the frame covered (0..1)."""
    predicted, truth = [], []
    for frame in davis.frame_paths(name):
        result = results / name / f"{frame.stem}.png"
        if not result.is_file():
            raise FileNotFoundError(f"no result for frame {frame.stem} of {name}: {result}")
        truth_ids = davis.read_ids(davis.mask_path(name, frame.stem))
        predicted.append(float((read_mask(result) > 0).mean()))
        truth.append(float((truth_ids > 0).mean()))
    return {"predicted": predicted, "truth": truth}


def summary(areas: dict[str, list[float]]) -> dict[str, float | int | None]:
    """Mean predicted/true area over frames with an object, and the first frame under half the truth."""
    predicted, truth = np.array(areas["predicted"]), np.array(areas["truth"])
    present = truth > 0
    ratio = float((predicted[present] / truth[present]).mean()) if present.any() else float("nan")
    under = np.flatnonzero(present & (predicted < 0.5 * truth))
    return {"mean_area_ratio": ratio, "first_frame_under_half": int(under[0]) if under.size else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results folder of mast propagate (RESULTS/<sequence>/*.png)")
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS folder with the ground truth")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2017, help="mask format of --davis")
    parser.add_argument("--sequences", required=True, help="comma-separated sequence names")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write (and a .json beside it)")
    args = parser.parse_args(argv)
    davis = DavisDataset.at(args.davis, args.year)
    names = [name for name in args.sequences.split(",") if name]
    try:
        areas = {name: sequence_areas(args.results, davis, name) for name in names}
    except (OSError, ValueError) as error:
        print(f"mask_area: {error}", file=sys.stderr)
        return 2
    charts = []
    print(f"{'sequence':<20} {'mean predicted/true area':>25} {'first frame < half':>19}")
    for name, values in areas.items():
        numbers = summary(values)
        values.update(numbers)
        print(f"{name:<20} {numbers['mean_area_ratio']:>25.3f} {str(numbers['first_frame_under_half']):>19}")
        frames = list(range(len(values["truth"])))
        charts.append(line_plot({"ground truth": (frames, [100 * a for a in values["truth"]]),
                                 "prediction": (frames, [100 * a for a in values["predicted"]])},
                                f"{name}: mask area, {args.results.name}", "frame", "% of the frame",
                                y_range=(0, 100 * max(max(values["truth"]), max(values["predicted"]), 0.01))))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _, png = cv2.imencode(".png", np.concatenate(charts))
    with atomic_open(args.out, "wb") as file:
        file.write(png.tobytes())
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(areas, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
