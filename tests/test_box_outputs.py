"""Boxes are outputs too: the writer's boxes.json and ``mast evaluate --boxes`` scoring the tracker's own boxes."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mast.cli.main import main as cli_main
from mast.data.synthetic import translating_video
from mast.eval.box_outputs import BOXES_FILE, rotated_record
from mast.eval.propagate import PropagationInput, propagate_to_folder
from mast.models.detector.tracker import DetectorTracker
from mast.models.detector.tracker import TrackerConfig as DetectorTrackerConfig
from mast.models.siammask.geometry import rotated_box
from mast.models.siammask.tracker import SiamMaskTracker, TrackerConfig
from mast.models.tracker import TrackerStep
from tests.test_detector import _untrained as untrained_detector
from tests.test_evaluate import draw, write_dataset
from tests.test_siammask import _untrained

SHAPE = (40, 48)
NAN = float("nan")


class FakeBoxTracker:
    """A tracker that says what it is told: frame ``t``'s labels, boxes and rotated boxes (the writer
    must not care which tracker it drives)."""

    name = "fake-boxes"

    def __init__(self, labels: list[np.ndarray], boxes: list | None = None, rotated: list | None = None) -> None:
        self.labels, self.boxes, self.rotated, self.t = labels, boxes, rotated, 0

    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        self.count, self.t = int(labels.max()) + 1, 0

    def step(self, frame: torch.Tensor) -> TrackerStep:
        self.t += 1
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(self.labels[self.t]).long(), self.count)
        pick = lambda values: None if values is None else torch.tensor(values[self.t], dtype=torch.float32)
        return TrackerStep(one_hot.permute(2, 0, 1).float(), pick(self.boxes), pick(self.rotated))

    def settings(self) -> dict:
        return {"model": "fake"}


def propagate(out, tracker, first_ids: np.ndarray, count: int, name: str = "seq"):
    """Runs the one writer on ``count`` blank frames named ``00000``...; returns the sequence folder."""
    frames = lambda: ((f"{t:05d}", torch.zeros(3, *first_ids.shape)) for t in range(count))
    return propagate_to_folder(PropagationInput(name, frames, first_ids, "first.png"), tracker, out)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def test_a_tracker_with_boxes_writes_them_per_frame_and_object(tmp_path):
    """Ids 2 and 7 are labels 1 and 2; frame 0's boxes are the annotation's min-max boxes, later
    frames the tracker's, a NaN row is null; no rotated boxes from a tracker that gives none."""
    first = draw(SHAPE, {2: (5, 6, 10, 8), 7: (20, 30, 4, 12)})  # (top, left, height, width)
    labels = [None, np.where(first == 2, 1, np.where(first == 7, 2, 0)), np.zeros(SHAPE, np.int64)]
    boxes = [None, [[6.5, 5.0, 8.0, 10.0], [30.0, 20.0, 12.0, 4.0]], [[7.25, 5.0, 8.0, 10.0], [NAN] * 4]]
    sequence = propagate(tmp_path / "out", FakeBoxTracker(labels, boxes), first, 3)
    content = json.loads((sequence / BOXES_FILE).read_text())
    assert (content["format"], content["source"], content["objects"], content["rotated"]) == (1, "fake-boxes",
                                                                                              [2, 7], False)
    assert content["frames"] == [
        {"frame": "00000", "boxes": {"2": [6, 5, 8, 10], "7": [30, 20, 12, 4]}},
        {"frame": "00001", "boxes": {"2": [6.5, 5.0, 8.0, 10.0], "7": [30.0, 20.0, 12.0, 4.0]}},
        {"frame": "00002", "boxes": {"2": [7.25, 5.0, 8.0, 10.0], "7": None}},
    ]
    # written inside the sequence's entry: recorded with it, so resume and overwrite cover it
    assert "seq/boxes.json" in json.loads((tmp_path / "out" / "run.json").read_text())["files"]


def test_a_tracker_without_boxes_writes_no_boxes_json(tmp_path):
    first = draw(SHAPE, {1: (5, 6, 10, 8)})
    sequence = propagate(tmp_path / "out", FakeBoxTracker([None, first, first]), first, 3)
    assert sorted(p.name for p in sequence.iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_rotated_record_corners_and_sides():
    """Centre (10, 20), sides 4 x 2: at 0 degrees the corners are the axis-aligned rectangle's; at
    90 degrees the sides swap; NaN (no box) is null."""
    flat = rotated_record(10, 20, 4, 2, 0)
    assert (flat["centre"], flat["size"], flat["angle"]) == ([10, 20], [4, 2], 0)
    assert sorted(map(tuple, flat["corners"])) == [(8, 19), (8, 21), (12, 19), (12, 21)]
    turned = rotated_record(10, 20, 4, 2, 90)
    assert sorted(map(tuple, turned["corners"])) == [(9, 18), (9, 22), (11, 18), (11, 22)]  # kept to 1/1000 px
    assert rotated_record(NAN, 20, 4, 2, 0) is None


def _siammask_boxes(tmp_path, box_from: str) -> dict:
    frames, masks = translating_video(num_frames=4, height=64, width=72, num_objects=2, seed=1)
    # Two-branch: an untrained three-branch net's box deltas can overflow (a tracker matter, not the writer's).
    tracker = SiamMaskTracker(_untrained(branches=2), TrackerConfig(lost_score=0.0, box_from=box_from))
    first = masks[0].numpy().astype(np.uint8)
    item = PropagationInput("seq", lambda: ((f"{t:05d}", f) for t, f in enumerate(frames)), first, "first")
    sequence = propagate_to_folder(item, tracker, tmp_path / box_from)
    return json.loads((sequence / BOXES_FILE).read_text()), first


def test_siammask_writes_rotated_boxes_only_in_rotated_mode(tmp_path, one_thread):
    plain, _ = _siammask_boxes(tmp_path, "minmax")
    assert plain["source"] == "siammask" and plain["rotated"] is False
    assert len(plain["frames"]) == 4 and all("rotated" not in frame for frame in plain["frames"])
    assert all(len(box) == 4 for frame in plain["frames"] for box in frame["boxes"].values())

    rotated, first = _siammask_boxes(tmp_path, "rotated")
    assert rotated["rotated"] is True and all(set(f["rotated"]) == {"1", "2"} for f in rotated["frames"])
    for object_id in (1, 2):  # the first frame's rotated box is its annotation's minimum-area rectangle
        cx, cy, w, h, angle = rotated_box(torch.from_numpy(first == object_id))
        record = rotated["frames"][0]["rotated"][str(object_id)]
        assert record["centre"] == pytest.approx([cx, cy], abs=1e-3) and record["size"] == pytest.approx([w, h], abs=1e-3)
        corners = np.array(record["corners"])
        assert corners.mean(axis=0) == pytest.approx([cx, cy], abs=1e-2)
        assert sorted(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1)) == pytest.approx(
            sorted([w, w, h, h]), abs=1e-2)
    for frame in rotated["frames"][1:]:
        for record in frame["rotated"].values():
            assert record is None or (len(record["corners"]) == 4 and -45 <= record["angle"] < 45)


def test_the_detector_writes_its_boxes(tmp_path, one_thread):
    frames, masks = translating_video(num_frames=3, height=72, width=88, num_objects=2, seed=1)
    tracker = DetectorTracker(untrained_detector(), DetectorTrackerConfig(input_size=72, lost_score=0.0))
    first = masks[0].numpy().astype(np.uint8)
    item = PropagationInput("seq", lambda: ((f"{t:05d}", f) for t, f in enumerate(frames)), first, "first")
    content = json.loads((propagate_to_folder(item, tracker, tmp_path / "out") / BOXES_FILE).read_text())
    assert content["source"] == "detector" and content["objects"] == [1, 2] and content["rotated"] is False
    assert [frame["frame"] for frame in content["frames"]] == ["00000", "00001", "00002"]
    assert all(box[2] > 0 and box[3] > 0 for frame in content["frames"] for box in frame["boxes"].values())


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------

#: Ground truth and predicted masks: a 10 x 10 square (rows 10..19, columns 10..19) on all 5 frames.
SQUARE = (10, 10, 10, 10)
#: The tracker's box: shifted 5 px right of the mask's, so IoU 50 / 150 = 1/3 and centre error 5.
SHIFTED = [15.0, 10.0, 10.0, 10.0]


@pytest.fixture
def scored(tmp_path):
    """``(davis_root, results)``: results written by the writer, masks equal to the ground truth,
    boxes shifted from the masks' boxes."""
    gts = [draw(SHAPE, {1: SQUARE}) for _ in range(5)]
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, {"seq": gts})
    labels = [gt.astype(np.int64) for gt in gts]
    propagate(results, FakeBoxTracker(labels, [None] + [[SHIFTED]] * 4), gts[0], 5)
    return root, results


def evaluate(root, results) -> int:
    return cli_main(["evaluate", "--davis", str(root), "--results", str(results), "--processes", "1", "--boxes"])


def _per_object_row(results) -> dict:
    with open(results / "per-sequence_results-val.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    return row


def test_evaluate_scores_the_tracker_boxes_and_says_so(scored, capsys):
    """IoU 1/3 on the 3 scored frames: mean 1/3, success above t = 0..0.30 only (7 of 21), centre error
    5 <= 20; the masks' boxes would score 1."""
    root, results = scored
    assert evaluate(root, results) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[-4:] == ["0.333", "0.333", "1.000", "tracker"]
    row = _per_object_row(results)
    assert [float(row[c]) for c in ("Box-IoU-Mean", "Success-AUC", "Precision@20")] == pytest.approx([1 / 3, 1 / 3, 1])
    assert row["Box-Source"] == "tracker" and float(row["J-Mean"]) == 1

    (results / "seq" / BOXES_FILE).unlink()  # without boxes.json: the masks' boxes, which are the ground truth's
    assert evaluate(root, results) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-4:] == ["1.000", "0.952", "1.000", "mask"]
    assert _per_object_row(results)["Box-Source"] == "mask"


def _edit(key: str, value):
    def damage(content: dict) -> dict:
        content[key] = value
        return content
    return damage


def _rename_frame(content: dict) -> dict:
    content["frames"][2]["frame"] = "00009"
    return content


def _negative_width(content: dict) -> dict:
    content["frames"][1]["boxes"]["1"] = [15, 10, -1, 10]
    return content


def _other_object(content: dict) -> dict:
    content["objects"] = [2]
    for frame in content["frames"]:
        frame["boxes"] = {"2": frame["boxes"]["1"]}
    return content


@pytest.mark.parametrize("damage,says", [
    (None, "cannot be read as JSON"),
    (_edit("format", 2), "format 2"),
    (_edit("frames", {}), "list of 'frames'"),
    (_edit("objects", [1, 1]), "distinct object ids"),
    (_rename_frame, "no PNG for 00009; no box for 00002"),
    (_negative_width, "w, h > 0"),
    (_other_object, "holds objects 1"),
])
def test_a_damaged_boxes_json_is_one_line_and_nothing_is_written(scored, capsys, damage, says):
    root, results = scored
    path = results / "seq" / BOXES_FILE
    path.write_text("{not json" if damage is None else json.dumps(damage(json.loads(path.read_text()))))
    before = sorted(p.name for p in results.iterdir())
    assert evaluate(root, results) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert str(path) in captured.err and says in captured.err
    assert sorted(p.name for p in results.iterdir()) == before  # no CSV
