"""Tests of the box metrics (mast.eval.boxes) and ``mast evaluate --boxes``.

Hand-built boxes and masks with values worked out by hand, then a tiny
synthetic DAVIS-layout folder (builders from test_evaluate).
"""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from mast.cli.main import main as cli_main
from mast.eval import boxes, davis
from tests.test_evaluate import draw, write_dataset, write_results
from tests.test_evaluate_safety import ids_1_and_5

SHAPE = (40, 60)


# --------------------------------------------------------------------------
# Boxes and per-frame measures
# --------------------------------------------------------------------------


def test_mask_box_is_the_pixel_inclusive_min_max_box():
    ids = np.zeros(SHAPE, np.uint8)
    assert boxes.mask_box(ids, 1) is None  # empty
    ids[7, 3] = 1
    assert boxes.mask_box(ids, 1) == (3, 7, 1, 1)  # a single pixel: w = h = 1
    ids[12, 9] = 1  # an L of two pixels: the box spans both
    ids[0:2, 50:60] = 2  # another id, touching the border
    assert boxes.mask_box(ids, 1) == (3, 7, 7, 6)
    assert boxes.mask_box(ids, 2) == (50, 0, 10, 2)
    assert boxes.mask_box(draw(SHAPE, {1: (5, 5, 10, 12)}), 1) == (5, 5, 12, 10)  # draw takes (top, left, h, w)
    assert all(isinstance(v, int) for v in boxes.mask_box(ids, 2))


def test_box_iou():
    a = (10, 20, 10, 10)
    assert boxes.box_iou(a, a) == 1.0
    assert boxes.box_iou(a, (40, 20, 10, 10)) == 0.0  # disjoint
    assert boxes.box_iou(a, (20, 20, 10, 10)) == 0.0  # sharing an edge: pixel-inclusive boxes do not overlap
    assert boxes.box_iou(a, (15, 20, 10, 10)) == pytest.approx(1 / 3)  # half of each: 50 / 150
    assert boxes.box_iou(a, (10, 20, 5, 10)) == 0.5  # one inside the other
    assert boxes.box_iou((3, 7, 1, 1), (3, 7, 1, 1)) == 1.0
    with pytest.raises(ValueError, match="positive width and height"):
        boxes.box_iou(a, (0, 0, 0, 5))


def test_centre_and_centre_error():
    assert boxes.box_centre((3, 7, 1, 1)) == (3.0, 7.0)  # a single pixel is its own centre
    assert boxes.box_centre((10, 20, 10, 5)) == (14.5, 22.0)  # midway between pixels 10..19 and 20..24
    assert boxes.centre_error((0, 0, 4, 4), (3, 4, 4, 4)) == 5.0
    assert boxes.centre_error((0, 0, 4, 4), (1, 1, 2, 2)) == 0.0  # same centre, other size


def test_frame_scores_absent_ground_truth_and_missed_object():
    box = (0, 0, 4, 4)
    iou, error = boxes.frame_scores(None, box)
    assert math.isnan(iou) and math.isnan(error)  # not scored, predicted or not
    assert all(math.isnan(v) for v in boxes.frame_scores(None, None))
    assert boxes.frame_scores(box, None) == (0.0, math.inf)  # a failure at every threshold
    assert boxes.frame_scores(box, (2, 0, 4, 4)) == (pytest.approx(1 / 3), 2.0)


# --------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------


def test_success_curve_and_auc_on_known_values():
    assert boxes.SUCCESS_THRESHOLDS.shape == (21,) and boxes.SUCCESS_THRESHOLDS[[0, 10, 20]].tolist() == [0, 0.5, 1]
    ious = [1.0, 1 / 3, 0.0]
    curve = boxes.success_curve(ious)
    # IoU > t: two frames for t = 0..0.30 (7 thresholds), one for t = 0.35..0.95 (13), none at t = 1
    assert curve.tolist() == [2 / 3] * 7 + [1 / 3] * 13 + [0.0]
    assert boxes.success_auc(ious) == pytest.approx((7 * 2 / 3 + 13 / 3) / 21) == pytest.approx(3 / 7)
    # strictly above: an IoU of exactly 0.5 fails the 0.5 threshold, a perfect one fails t = 1
    assert boxes.success_curve([0.5])[[9, 10]].tolist() == [1.0, 0.0]
    assert boxes.success_curve([1.0])[-1] == 0.0
    assert boxes.success_auc([1.0] * 4) == pytest.approx(20 / 21)


def test_precision_curve_and_precision_at_20():
    errors = [0.0, 5.0, 20.0, 20.5, math.inf]
    curve = boxes.precision_curve(errors)
    assert curve.shape == (51,) and boxes.PRECISION_THRESHOLDS[[0, 20, 50]].tolist() == [0, 20, 50]
    assert curve[0] == 1 / 5 and curve[5] == 2 / 5 and curve[20] == 3 / 5  # <= d: 20 px counts at 20
    assert curve[21] == curve[50] == 4 / 5  # an infinite error (object missed) never counts
    assert boxes.precision_at(errors) == curve[boxes.PRECISION_PIXELS] == 3 / 5
    assert boxes.precision_at(errors, 5) == 2 / 5


@pytest.mark.parametrize("values", [[], [0.5, math.nan], [[0.5]]])
def test_curves_need_scored_frames(values):
    with pytest.raises(ValueError, match="scored frames"):
        boxes.success_curve(values)
    with pytest.raises(ValueError, match="scored frames"):
        boxes.precision_at(values)


# --------------------------------------------------------------------------
# Sequences and tables
# --------------------------------------------------------------------------


def test_sequence_box_scores_leave_out_frames_without_the_object():
    gt = [draw(SHAPE, {1: (0, 0, 4, 4), 2: (20, 20, 4, 4)})] * 3 + [draw(SHAPE, {1: (0, 0, 4, 4)})] * 2
    pred = [None, gt[1], draw(SHAPE, {2: (20, 22, 4, 4)}), draw(SHAPE, {1: (0, 0, 4, 4), 2: (9, 9, 2, 2)}), None]
    scores = boxes.sequence_box_scores(gt, pred, (1, 2, 3))
    iou, error = scores["IoU"], scores["Centre-Error"]
    assert iou.shape == error.shape == (3, 3)  # first and last frames not scored
    assert iou[0].tolist() == [1.0, 0.0, 1.0] and error[0].tolist() == [0.0, math.inf, 0.0]
    assert iou[1, :2].tolist() == [1.0, pytest.approx(1 / 3)] and error[1, :2].tolist() == [0.0, 2.0]
    assert np.isnan(iou[1, 2]) and np.isnan(error[1, 2])  # object 2 left the ground truth: not scored
    assert np.isnan(iou[2]).all()  # id 3 is in no ground truth


def test_box_tables_average_objects_that_have_scored_frames():
    nan = math.nan
    scores = [
        {"IoU": np.array([1.0, 1 / 3, 0.0, nan]), "Centre-Error": np.array([0.0, 5.0, math.inf, nan])},
        {"IoU": np.array([nan, nan]), "Centre-Error": np.array([nan, nan])},
        {"IoU": np.array([1.0]), "Centre-Error": np.array([25.0])},
    ]
    global_table, rows = boxes.box_tables(scores)
    assert rows[0] == {"Box-IoU-Mean": pytest.approx(4 / 9), "Success-AUC": pytest.approx(3 / 7),
                       "Precision@20": pytest.approx(2 / 3)}
    assert all(math.isnan(v) for v in rows[1].values())  # never in the ground truth: no scores
    assert rows[2] == {"Box-IoU-Mean": 1.0, "Success-AUC": pytest.approx(20 / 21), "Precision@20": 0.0}
    assert global_table == {"Box-IoU-Mean": pytest.approx((4 / 9 + 1) / 2),
                            "Success-AUC": pytest.approx((3 / 7 + 20 / 21) / 2),
                            "Precision@20": pytest.approx((2 / 3 + 0) / 2)}
    nothing, _ = boxes.box_tables(scores[1:2])
    assert list(nothing) == list(boxes.BOX_COLUMNS) and all(math.isnan(v) for v in nothing.values())


# --------------------------------------------------------------------------
# mast evaluate --boxes
# --------------------------------------------------------------------------

GT_1, GT_2 = (5, 5, 10, 10), (25, 5, 8, 20)  # (top, left, height, width), as draw takes them
# Frames 1..4 are scored. Object 1: identical, shifted by half its width (IoU 1/3, 5 px), missed,
# then absent from the ground truth (predicted anyway: not scored). Object 2: disjoint 25 px away,
# identical, taller (IoU 2/3, 2 px), identical. Frames 0 and 5 are wrong on purpose.
PRED_1 = [GT_1, GT_1, (5, 10, 10, 10), None, (0, 40, 3, 3), None]
PRED_2 = [GT_2, (25, 30, 8, 20), GT_2, (21, 5, 12, 20), GT_2, None]

# Per object (IoU mean, success AUC, precision@20), worked out in the docstring of test_cli_boxes.
EXPECTED = {"track_1": (4 / 9, 3 / 7, 2 / 3), "track_2": (2 / 3, 9 / 14, 3 / 4)}

# What `mast evaluate` printed and wrote on this folder before --boxes existed (RESULTS = the folder).
PLAIN_OUTPUT = """\
Global results:
 J&F-Mean     J-Mean   J-Recall    J-Decay     F-Mean   F-Recall    F-Decay
    0.503      0.500      0.500      0.167      0.506      0.500      0.188

Per-object results:
Sequence   J-Mean   F-Mean
track_1     0.333    0.350
track_2     0.667    0.662

CSV files written: RESULTS/global_results-val.csv, RESULTS/per-sequence_results-val.csv
"""
PLAIN_CSVS = {
    "global_results-val.csv": b"J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\r\n"
    b"0.503125,0.5,0.5,0.16666666666666669,0.50625,0.5,0.18750000000000006\r\n",
    "per-sequence_results-val.csv": b"Sequence,J-Mean,F-Mean\r\n"
    b"track_1,0.3333333333333333,0.35000000000000003\r\ntrack_2,0.6666666666666666,0.6625\r\n",
}


@pytest.fixture
def track(tmp_path):
    """``(davis_root, results_dir)`` of the sequence ``track`` (6 frames, objects 1 and 2)."""
    gts, preds = [], []
    for t in range(6):
        gts.append(draw(SHAPE, {2: GT_2} if t == 4 else {1: GT_1, 2: GT_2}))
        preds.append(draw(SHAPE, {i: b for i, b in ((1, PRED_1[t]), (2, PRED_2[t])) if b is not None}))
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, {"track": gts})
    write_results(results, {"track": preds})
    return root, results


def evaluate(root, results, *flags) -> int:
    return cli_main(["evaluate", "--davis", str(root), "--results", str(results), "--processes", "1", *flags])


def test_cli_without_boxes_is_unchanged(track, capsys):
    root, results = track
    assert evaluate(root, results) == 0
    assert capsys.readouterr().out.replace(str(results), "RESULTS") == PLAIN_OUTPUT
    for name, content in PLAIN_CSVS.items():
        assert (results / name).read_bytes() == content


def test_cli_boxes(track, capsys):
    """Object 1 over frames 1..3 (frame 4 left out): IoU 1, 1/3, 0 -> mean 4/9; IoU > t for two frames
    at t = 0..0.30 and one at t = 0.35..0.95, none at 1 -> AUC (7 * 2/3 + 13 * 1/3) / 21 = 3/7;
    errors 0, 5, inf -> 2/3 within 20 px. Object 2 over frames 1..4: IoU 0, 1, 2/3, 1 -> mean 2/3;
    three frames up to t = 0.65, two from 0.70 to 0.95 -> AUC (14 * 3/4 + 6 * 1/2) / 21 = 9/14;
    errors 25, 0, 2, 0 -> 3/4. Global: the mean over the two objects."""
    root, results = track
    (results / "run.json").write_text(json.dumps({"format": 1, "command": "propagate", "files": []}))
    assert evaluate(root, results, "--boxes") == 0
    out = capsys.readouterr().out.replace(str(results), "RESULTS")

    # the toolkit's columns are unchanged: every line of the plain output starts its line
    plain_lines, box_lines = PLAIN_OUTPUT.splitlines(), out.splitlines()
    assert len(box_lines) == len(plain_lines)
    assert all(line.startswith(plain) for line, plain in zip(box_lines, plain_lines))
    assert box_lines[1].endswith("F-Decay  Box-IoU-Mean  Success-AUC  Precision@20  Box-Source")
    assert box_lines[2].split()[-4:] == ["0.556", "0.536", "0.708", "mask"]  # 5/9, 15/28, 17/24; no boxes.json
    assert box_lines[5] == "Sequence   J-Mean   F-Mean  Box-IoU-Mean  Success-AUC  Precision@20  Box-Source"
    assert box_lines[6].split()[-4:] == ["0.444", "0.429", "0.667", "mask"]

    with open(results / "global_results-val.csv", newline="") as handle:
        header, values = list(csv.reader(handle))
    assert header == [*davis.GLOBAL_COLUMNS, *boxes.BOX_COLUMNS, "Box-Source"]
    assert PLAIN_CSVS["global_results-val.csv"].decode().splitlines()[1] == ",".join(values[:7])
    assert [float(v) for v in values[7:10]] == pytest.approx([5 / 9, 15 / 28, 17 / 24], abs=1e-15)
    assert values[10] == "mask"
    with open(results / "per-sequence_results-val.csv", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["Sequence", "J-Mean", "F-Mean", *boxes.BOX_COLUMNS, "Box-Source"]
    for row in rows:
        assert [float(v) for v in row[3:6]] == pytest.approx(EXPECTED[row[0]], abs=1e-15) and row[6] == "mask"
    # the same two files, recorded as derived from the results: they go when the results change
    assert json.loads((results / "run.json").read_text())["derived"] == sorted(PLAIN_CSVS)


def test_score_davis_boxes_pool_equals_inline_and_keeps_j_and_f(track):
    root, results = track
    plain = davis.score_davis(root, results, processes=1)
    pooled = davis.score_davis(root, results, processes=2, boxes=True)
    assert pooled == davis.score_davis(root, results, processes=1, boxes=True)
    global_table, rows = pooled
    assert {c: global_table[c] for c in davis.GLOBAL_COLUMNS} == plain[0]
    assert [{c: row[c] for c in davis.PER_SEQUENCE_COLUMNS} for row in rows] == plain[1]


def test_ids_the_davis_rule_adds_have_no_box_scores(tmp_path):
    root, results = ids_1_and_5(tmp_path)
    with pytest.warns(UserWarning, match="ids 2, 3, 4 are scored"):
        global_table, rows = davis.score_davis(root, results, processes=1, boxes=True)
    phantoms = [row for row in rows if row["Sequence"] in ("gap_2", "gap_3", "gap_4")]
    assert len(phantoms) == 3 and all(math.isnan(row[c]) for row in phantoms for c in boxes.BOX_COLUMNS)
    # left out of the global means, which are then those of the objects present
    present, _ = davis.score_davis(root, results, processes=1, boxes=True, objects="first-frame")
    assert {c: global_table[c] for c in boxes.BOX_COLUMNS} == {c: present[c] for c in boxes.BOX_COLUMNS}
