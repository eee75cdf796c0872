"""Evaluation that refuses to score the wrong thing: missing or extra ground-truth
frames, sizes, year mismatches, non-contiguous object ids, failed CSV writes.

Synthetic DAVIS-layout folders in tmp_path (builders from test_evaluate).
"""
from __future__ import annotations

import csv
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from mast.common.files import is_temporary
from mast.eval import davis
from mast.common.masks import write_palette_png
from tests.test_evaluate import SHAPE, cli_parser, draw, synthetic_sequences, write_dataset, write_results
from mast.cli.main import main as cli_main


def write_frames(root, gts: dict, shape=SHAPE) -> None:
    """``JPEGImages/480p/<seq>/<t>.jpg`` (black, ``shape``) for every ground-truth frame of ``gts``."""
    for name, frames in gts.items():
        folder = root / "JPEGImages" / "480p" / name
        folder.mkdir(parents=True)
        for t in range(len(frames)):
            Image.fromarray(np.zeros((*shape, 3), np.uint8)).save(folder / f"{t:05d}.jpg")


@pytest.fixture
def dataset(tmp_path):
    """``(davis_root, results_dir)`` with frames, ground truth and full results for seq-a and seq-b."""
    gts, preds = synthetic_sequences()
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, gts)
    write_frames(root, gts)
    write_results(results, preds)
    return root, results


def gt_path(root, name, t):
    return root / "Annotations" / "480p" / name / f"{t:05d}.png"


def run_cli(*argv):
    return cli_main(["evaluate", *map(str, argv), "--processes", "1"])


# --------------------------------------------------------------------------
# Item 7: every scored frame has ground truth
# --------------------------------------------------------------------------


def test_frames_and_ground_truth_in_step_score_as_before(dataset):
    root, results = dataset
    without_frames = davis.evaluate_davis(root, results, processes=1)
    (root / "JPEGImages").rename(root / "elsewhere")
    assert davis.evaluate_davis(root, results, processes=1) == without_frames


@pytest.mark.parametrize("processes", [1, 2])
def test_missing_ground_truth_of_an_existing_frame_is_an_error(dataset, processes):
    root, results = dataset
    gt_path(root, "seq-a", 3).unlink()
    with pytest.raises(FileNotFoundError, match=r"Annotations/480p/seq-a/00003\.png.*1 of 6 missing"):
        davis.evaluate_davis(root, results, processes=processes)


def test_first_frame_only_annotations_say_so(dataset):
    """DAVIS test-dev / challenge folders: first frame annotated, nothing to score against."""
    root, results = dataset
    for t in range(1, 6):
        gt_path(root, "seq-a", t).unlink()
    with pytest.raises(FileNotFoundError, match=r"seq-a/00001\.png \(only the first frame is annotated, as in DAVIS test-dev"):
        davis.evaluate_davis(root, results, processes=1)


def test_ground_truth_without_its_frame_is_an_error(dataset):
    root, results = dataset
    write_palette_png(gt_path(root, "seq-b", 5), np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match=r"seq-b/00005\.png: ground truth of no frame.*no 00005\.jpg"):
        davis.evaluate_davis(root, results, processes=1)


def test_gap_in_numbered_ground_truth_without_frames(dataset):
    root, results = dataset
    (root / "JPEGImages").rename(root / "elsewhere")
    gt_path(root, "seq-a", 2).unlink()
    gt_path(root, "seq-a", 3).unlink()
    with pytest.raises(FileNotFoundError, match=r"seq-a/00002\.png \(a gap in the numbering.*2 frame\(s\) missing"):
        davis.evaluate_davis(root, results, processes=1)


def test_gap_rule_keeps_the_prefix_and_padding(tmp_path):
    gts, preds = synthetic_sequences()
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, {"seq-a": gts["seq-a"]})
    folder = root / "Annotations" / "480p" / "seq-a"
    for t in range(6):  # caps-style names: frame_000000.png ...
        (folder / f"{t:05d}.png").rename(folder / f"frame_{t:06d}.png")
        write_palette_png(results / "seq-a" / f"frame_{t:06d}.png", preds["seq-a"][t])
    davis.evaluate_davis(root, results, processes=1)
    (folder / "frame_000004.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"seq-a/frame_000004\.png"):
        davis.evaluate_davis(root, results, processes=1)


def test_unnumbered_ground_truth_without_frames_is_scored(tmp_path):
    """Names without a common numbering cannot have a gap: nothing to check, the PNGs are the frames."""
    gts, preds = synthetic_sequences()
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, {"seq-b": gts["seq-b"]})
    folder = root / "Annotations" / "480p" / "seq-b"
    for t, stem in enumerate(["a", "b7", "c", "d", "e"]):
        (folder / f"{t:05d}.png").rename(folder / f"{stem}.png")
        write_palette_png(results / "seq-b" / f"{stem}.png", preds["seq-b"][t])
    table, rows = davis.evaluate_davis(root, results, processes=1)
    assert [row["Sequence"] for row in rows] == ["seq-b_1", "seq-b_2", "seq-b_3"]


# --------------------------------------------------------------------------
# Item 7: non-contiguous object ids
# --------------------------------------------------------------------------


def ids_1_and_5(tmp_path):
    """A 4-frame sequence ``gap`` with objects 1 and 5 (none of 2..4), imperfect predictions,
    and the 2-object ``seq-a``."""
    gts, preds = synthetic_sequences()
    gts, preds = {"seq-a": gts["seq-a"], "gap": []}, {"seq-a": preds["seq-a"], "gap": []}
    for t in range(4):
        gts["gap"].append(draw(SHAPE, {1: (5, 5 + t, 30, 30), 5: (50, 50, 20, 40 - t)}))
        preds["gap"].append(draw(SHAPE, {1: (8, 5 + t, 30, 26), 5: (52, 50, 20, 30)}))
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, gts)
    write_results(results, preds)
    return root, results


@pytest.mark.parametrize("processes", [1, 2])
def test_davis_rule_scores_absent_ids_and_warns_naming_them(tmp_path, processes):
    root, results = ids_1_and_5(tmp_path)
    with pytest.warns(UserWarning, match=r"sequence 'gap'.*ids 1, 5, so ids 2, 3, 4 are scored") as caught:
        table, rows = davis.evaluate_davis(root, results, processes=processes)
    assert len([w for w in caught if "sequence" in str(w.message)]) == 1  # seq-a's ids are contiguous
    assert [row["Sequence"] for row in rows] == ["seq-a_1", "seq-a_2"] + [f"gap_{i}" for i in range(1, 6)]
    phantom = [row for row in rows if row["Sequence"] in ("gap_2", "gap_3", "gap_4")]
    assert all(row["J-Mean"] == row["F-Mean"] == 1.0 for row in phantom)

    real, real_rows = davis.evaluate_davis(root, results, processes=processes, objects="first-frame")
    assert [row["Sequence"] for row in real_rows] == ["seq-a_1", "seq-a_2", "gap_1", "gap_5"]
    assert rows[-1] == real_rows[-1] and rows[2] == real_rows[2]  # same scores under the real ids
    # The phantoms lift the mean: 3 extra objects at J = 1.
    assert table["J-Mean"] == pytest.approx((4 * real["J-Mean"] + 3) / 7, abs=1e-12)
    assert real["J&F-Mean"] < table["J&F-Mean"] - 0.05


def test_first_frame_rule_is_silent_and_rejects_ids_it_does_not_score(tmp_path):
    root, results = ids_1_and_5(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        davis.evaluate_davis(root, results, processes=1, objects="first-frame")
    ids = draw(SHAPE, {3: (0, 0, 4, 4)})
    write_palette_png(results / "gap" / "00001.png", ids)
    with pytest.raises(ValueError, match=r"gap/00001\.png: contains object id 3, which is not an object.*1, 5"):
        davis.evaluate_davis(root, results, processes=1, objects="first-frame")
    with pytest.raises(ValueError, match="objects must be one of davis, first-frame"):
        davis.evaluate_davis(root, results, processes=1, objects="present")


def test_cli_objects_option(tmp_path, capsys):
    root, results = ids_1_and_5(tmp_path)
    assert run_cli("--davis", root, "--results", results) == 0
    captured = capsys.readouterr()
    assert "mast evaluate: warning: sequence 'gap'" in captured.err and "gap_3" in captured.out
    assert run_cli("--davis", root, "--results", results, "--objects", "first-frame") == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "gap_3" not in captured.out
    with open(results / "per-sequence_results-val.csv", newline="") as handle:
        assert [row[0] for row in csv.reader(handle)] == ["Sequence", "seq-a_1", "seq-a_2", "gap_1", "gap_5"]
    choices = next(a for a in cli_parser()._subparsers._group_actions[0].choices["evaluate"]._actions
                   if a.dest == "objects").choices
    assert tuple(choices) == davis.OBJECT_RULES


# --------------------------------------------------------------------------
# Item 9: sizes and years blamed on the right file
# --------------------------------------------------------------------------


def test_ground_truth_of_another_size_is_blamed_on_the_ground_truth(dataset):
    root, results = dataset
    write_palette_png(gt_path(root, "seq-a", 3), np.zeros((SHAPE[0] + 2, SHAPE[1]), np.uint8))
    with pytest.raises(ValueError, match=r"Annotations/480p/seq-a/00003\.png: ground-truth mask is 120x92.*120x90"):
        davis.evaluate_davis(root, results, processes=1)


def test_ground_truth_of_another_size_than_the_frames(dataset):
    root, results = dataset
    for jpg in (root / "JPEGImages" / "480p" / "seq-b").iterdir():
        Image.fromarray(np.zeros((SHAPE[0] * 2, SHAPE[1] * 2, 3), np.uint8)).save(jpg)
    with pytest.raises(ValueError, match=r"seq-b/00000\.png: ground-truth mask is 120x90 but the frames.*240x180"):
        davis.evaluate_davis(root, results, processes=1)


def test_davis2016_masks_under_2017_suggest_year_2016(tmp_path):
    gts, preds = synthetic_sequences()
    gts["binary"] = [np.where(frame > 0, 255, 0).astype(np.uint8) for frame in gts["seq-b"]]
    preds["binary"] = [(frame > 0).astype(np.uint8) for frame in preds["seq-b"]]
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, gts)
    write_results(results, preds)
    with pytest.raises(ValueError, match=r"binary/00000\.png holds only 0 and 255.*need year 2016"):
        davis.evaluate_davis(root, results, processes=1)


# --------------------------------------------------------------------------
# Item 10: scores are printed before the CSVs are written
# --------------------------------------------------------------------------


@pytest.mark.parametrize("blocked", ["global_results-val.csv", "per-sequence_results-val.csv"])
def test_cli_prints_scores_before_a_failed_write(dataset, capsys, blocked):
    root, results = dataset
    (results / blocked).mkdir()  # a folder where the CSV should go
    assert run_cli("--davis", root, "--results", results) == 1
    captured = capsys.readouterr()
    assert "J&F-Mean" in captured.out and "seq-b_3" in captured.out
    error_lines = captured.err.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith(f"mast evaluate: error: cannot write {results / blocked}")
    assert not [p for p in results.iterdir() if is_temporary(p)]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_read_only_results_folder(dataset, capsys):
    root, results = dataset
    results.chmod(0o555)
    try:
        assert run_cli("--davis", root, "--results", results) == 1
    finally:
        results.chmod(0o755)
    captured = capsys.readouterr()
    assert "J&F-Mean" in captured.out and "cannot write" in captured.err


def test_score_davis_writes_nothing(dataset):
    root, results = dataset
    before = sorted(results.iterdir())
    tables = davis.score_davis(root, results, processes=1)
    assert sorted(results.iterdir()) == before
    paths = davis.write_csvs(results, "val", *tables)
    assert [p.name for p in paths] == ["global_results-val.csv", "per-sequence_results-val.csv"]
    assert davis.evaluate_davis(root, results, processes=1) == tables


def test_evaluate_sequence_blames_ground_truth_sizes_and_takes_object_ids():
    gt = draw((10, 10), {1: (1, 1, 3, 3), 4: (6, 6, 2, 2)})
    with pytest.raises(ValueError, match=r"ground-truth frame 1: ground-truth mask is 9x10"):
        davis.evaluate_sequence([gt, gt[:, :9], gt], [None, gt, None])
    scores = davis.evaluate_sequence([gt] * 3, [None, gt, None], object_ids=(1, 4))
    assert scores["J"].tolist() == [[1.0], [1.0]]
    with pytest.raises(ValueError, match="not both"):
        davis.evaluate_sequence([gt] * 3, [None, gt, None], 4, object_ids=(1, 4))
