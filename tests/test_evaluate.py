"""Tests of DAVIS evaluation: mask I/O, evaluate_sequence, evaluate_davis and the CLI.

Everything runs on synthetic masks built in tmp_path, except one test that
uses the real DAVIS-2016 sample data when it is available.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mast.cli import evaluate as evaluate_cli
from mast.eval import davis
from mast.common.masks import davis_palette, read_davis2016_mask, read_mask, write_palette_png

SHAPE = (90, 120)  # diagonal 150 -> boundary tolerance ceil(1.2) = 2 pixels


# --------------------------------------------------------------------------
# Independent reference implementation (straightforward, not vectorised the same way)
# --------------------------------------------------------------------------


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary by edge replication: a replicated neighbour never differs, which
    gives exactly the rules of docs/evaluation.md §6.3 for the last row, last column and corner."""
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    right, down, diag = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    return (mask != right) | (mask != down) | (mask != diag)


def reference_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Union of shifted copies, one per offset of the disk x^2 + y^2 <= r^2."""
    height, width = mask.shape
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            src = mask[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
            out[max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)] |= src
    return out


def reference_j(pred: np.ndarray, gt: np.ndarray) -> float:
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def reference_f(pred: np.ndarray, gt: np.ndarray) -> float:
    radius = int(np.ceil(0.008 * np.sqrt(gt.shape[0] ** 2 + gt.shape[1] ** 2)))
    pb, gb = reference_boundary(pred), reference_boundary(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        precision, recall = 1.0, 1.0
    elif n_p == 0:
        precision, recall = 1.0, 0.0
    elif n_g == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = int((pb & reference_dilate(gb, radius)).sum()) / n_p
        recall = int((gb & reference_dilate(pb, radius)).sum()) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def reference_stats(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    ids = [int(round(1 + (n - 1) * i / 4 + 1e-10)) - 1 for i in range(5)]
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    mean = sum(values) / n
    recall = sum(v > 0.5 for v in values) / n
    decay = sum(bins[0]) / len(bins[0]) - sum(bins[3]) / len(bins[3])
    return mean, recall, decay


def reference_tables(gts: dict, preds: dict) -> tuple[dict, dict]:
    """Global and per-object tables computed with the reference functions."""
    per_object = {}
    stats = []
    for name, gt_frames in gts.items():
        first = np.where(gt_frames[0] == 255, 0, gt_frames[0])
        for obj in range(1, int(first.max()) + 1):
            j_values, f_values = [], []
            for t in range(1, len(gt_frames) - 1):
                gt = gt_frames[t] == obj  # void (255) is never an object id
                pred = preds[name][t] == obj
                j_values.append(reference_j(pred, gt))
                f_values.append(reference_f(pred, gt))
            per_object[f"{name}_{obj}"] = (sum(j_values) / len(j_values), sum(f_values) / len(f_values))
            stats.append(reference_stats(j_values) + reference_stats(f_values))
    columns = np.mean(np.array(stats), axis=0)
    table = dict(zip(["J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"], columns))
    table["J&F-Mean"] = (table["J-Mean"] + table["F-Mean"]) / 2
    return table, per_object


# --------------------------------------------------------------------------
# Synthetic DAVIS-layout data
# --------------------------------------------------------------------------


def draw(shape, boxes: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """Id map with rectangles ``id -> (top, left, height, width)`` drawn in order."""
    ids = np.zeros(shape, dtype=np.uint8)
    for obj, (top, left, height, width) in boxes.items():
        ids[top : top + height, left : left + width] = obj
    return ids


def synthetic_sequences() -> tuple[dict, dict]:
    """Two sequences ``name -> list of (H, W) uint8`` for GT and predictions.

    seq-a: 6 frames, 2 objects, void pixels (255) in the GT including the first
    frame, object 1 touching the border. seq-b: 5 frames, 3 objects, object 3
    disappears from frame 3 on, and the prediction misses object 2 on frame 2.
    """
    gts, preds = {"seq-a": [], "seq-b": []}, {"seq-a": [], "seq-b": []}
    for t in range(6):
        gt = draw(SHAPE, {1: (0, 5 + 2 * t, 30, 25), 2: (50, 60 - 3 * t, 20, 30)})
        gt[40:44, :] = 255  # void band, also in the first frame
        gts["seq-a"].append(gt)
        pred = draw(SHAPE, {1: (0, 7 + 2 * t, 30, 24), 2: (52 + t % 2, 58 - 3 * t, 18, 30)})
        preds["seq-a"].append(pred)
    # first and last predictions are wrong on purpose: they must not be scored
    preds["seq-a"][0] = np.full(SHAPE, 2, dtype=np.uint8)
    preds["seq-a"][-1] = np.zeros(SHAPE, dtype=np.uint8)
    for t in range(5):
        boxes = {1: (10 + t, 10, 15, 15), 2: (30, 40 + 4 * t, 25, 20)}
        if t < 3:
            boxes[3] = (60, 90, 10, 3 * (3 - t))
        gts["seq-b"].append(draw(SHAPE, boxes))
        pred_boxes = {1: (11 + t, 9, 15, 16), 3: (60, 91, 9, 8)}
        if t != 2:
            pred_boxes[2] = (31, 41 + 4 * t, 24, 20)
        preds["seq-b"].append(draw(SHAPE, pred_boxes))
    return gts, preds


def write_dataset(root: Path, gts: dict, year: int = 2017, split: str = "val") -> None:
    split_file = root / "ImageSets" / str(year) / f"{split}.txt"
    split_file.parent.mkdir(parents=True)
    split_file.write_text("\n".join(gts) + "\n")
    for name, frames in gts.items():
        for t, ids in enumerate(frames):
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)


def write_results(results: Path, preds: dict, skip_ends: tuple[str, ...] = ()) -> None:
    for name, frames in preds.items():
        for t, ids in enumerate(frames):
            if name in skip_ends and t in (0, len(frames) - 1):
                continue
            write_palette_png(results / name / f"{t:05d}.png", ids)


@pytest.fixture
def dataset(tmp_path):
    """``(davis_root, results_dir, gts, preds)`` on disk; seq-b has no first/last results."""
    gts, preds = synthetic_sequences()
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, gts)
    write_results(results, preds, skip_ends=("seq-b",))
    return root, results, gts, preds


# --------------------------------------------------------------------------
# evaluate_davis
# --------------------------------------------------------------------------


def test_evaluate_davis_matches_reference(dataset):
    root, results, gts, preds = dataset
    global_table, per_sequence = davis.evaluate_davis(root, results, processes=2)
    expected_global, expected_objects = reference_tables(gts, preds)
    assert list(global_table) == list(davis.GLOBAL_COLUMNS)
    for column, value in expected_global.items():
        assert global_table[column] == pytest.approx(value, abs=1e-12), column
    assert [row["Sequence"] for row in per_sequence] == list(expected_objects)
    assert [row["Sequence"] for row in per_sequence] == ["seq-a_1", "seq-a_2", "seq-b_1", "seq-b_2", "seq-b_3"]
    for row in per_sequence:
        j_mean, f_mean = expected_objects[row["Sequence"]]
        assert row["J-Mean"] == pytest.approx(j_mean, abs=1e-12)
        assert row["F-Mean"] == pytest.approx(f_mean, abs=1e-12)
    # sanity: imperfect but not absurd predictions
    assert 0.3 < global_table["J&F-Mean"] < 0.95


def test_evaluate_davis_inline_equals_pool(dataset):
    root, results, _, _ = dataset
    pooled = davis.evaluate_davis(root, results, processes=2)
    inline = davis.evaluate_davis(root, results, processes=1)
    assert pooled == inline


def test_evaluate_davis_writes_csvs_and_never_reuses_them(dataset):
    root, results, _, _ = dataset
    stale = results / "global_results-val.csv"
    stale.write_text("J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n1,1,1,0,1,1,0\n")
    global_table, per_sequence = davis.evaluate_davis(root, results, processes=1)

    with open(results / "global_results-val.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert len(rows) == 2
    assert [float(v) for v in rows[1]] == [global_table[c] for c in rows[0]]  # full precision
    assert float(rows[1][0]) < 1.0  # recomputed, not the stale file

    with open(results / "per-sequence_results-val.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert [r[0] for r in rows[1:]] == ["seq-a_1", "seq-a_2", "seq-b_1", "seq-b_2", "seq-b_3"]
    assert [[float(r[1]), float(r[2])] for r in rows[1:]] == [[r["J-Mean"], r["F-Mean"]] for r in per_sequence]
    assert not [p for p in os.listdir(results) if p.startswith(".")]  # no temporaries left


def test_evaluate_davis_perfect_results(tmp_path):
    gts, _ = synthetic_sequences()
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, gts)
    perfect = {name: [np.where(f == 255, 0, f) for f in frames] for name, frames in gts.items()}
    write_results(results, perfect)
    global_table, _ = davis.evaluate_davis(root, results, processes=1)
    assert global_table == {
        "J&F-Mean": 1.0, "J-Mean": 1.0, "J-Recall": 1.0, "J-Decay": 0.0,
        "F-Mean": 1.0, "F-Recall": 1.0, "F-Decay": 0.0,
    }


def test_missing_results_frame(dataset):
    root, results, _, _ = dataset
    missing = results / "seq-b" / "00002.png"
    missing.unlink()
    for processes in (1, 2):  # the error must survive the trip back from a worker
        with pytest.raises(FileNotFoundError, match="seq-b/00002.png"):
            davis.evaluate_davis(root, results, processes=processes)


def test_wrong_mask_size(dataset):
    root, results, _, _ = dataset
    write_palette_png(results / "seq-a" / "00003.png", np.zeros((SHAPE[0], SHAPE[1] + 1), np.uint8))
    with pytest.raises(ValueError, match=r"seq-a/00003.png.*size"):
        davis.evaluate_davis(root, results, processes=1)


def test_id_above_number_of_objects(dataset):
    root, results, _, _ = dataset
    ids = np.zeros(SHAPE, np.uint8)
    ids[5, 5] = 3  # seq-a has objects 1 and 2 only
    write_palette_png(results / "seq-a" / "00002.png", ids)
    with pytest.raises(ValueError, match=r"seq-a/00002.png.*object id 3"):
        davis.evaluate_davis(root, results, processes=1)


def test_unreadable_results_frame(dataset):
    root, results, _, _ = dataset
    (results / "seq-a" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="seq-a/00001.png"):
        davis.evaluate_davis(root, results, processes=1)


def test_empty_sequence(dataset):
    root, results, _, _ = dataset
    (root / "Annotations" / "480p" / "seq-c").mkdir()
    (results / "seq-c").mkdir()
    split_file = root / "ImageSets" / "2017" / "val.txt"
    split_file.write_text(split_file.read_text() + "seq-c\n")
    with pytest.raises(ValueError, match="seq-c"):
        davis.evaluate_davis(root, results, processes=1)


def test_missing_split_and_gt_folder(dataset, tmp_path):
    root, results, _, _ = dataset
    with pytest.raises(FileNotFoundError, match="test-dev.txt"):
        davis.evaluate_davis(root, results, split="test-dev", processes=1)
    (root / "ImageSets" / "2017" / "val.txt").write_text("seq-a\nnope\n")
    with pytest.raises(FileNotFoundError, match="nope"):
        davis.evaluate_davis(root, results, processes=1)


def test_davis2016_single_object(tmp_path):
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    gt_dir = root / "Annotations" / "480p" / "blob"
    gt_dir.mkdir(parents=True)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    # the official 2016 split format: one "image annotation" pair per frame
    (root / "ImageSets" / "2016" / "val.txt").write_text(
        "".join(f"/JPEGImages/480p/blob/{t:05d}.jpg /Annotations/480p/blob/{t:05d}.png\n" for t in range(4))
    )
    for t in range(4):
        gt = np.zeros(SHAPE, np.uint8)
        gt[10:40, 10 + t : 50 + t] = 255  # 255 is the object in DAVIS-2016, not void
        Image.fromarray(gt).save(gt_dir / f"{t:05d}.png")
        pred = (gt > 0).astype(np.uint8)
        pred[10:20, 10 + t : 50 + t] = 2  # any id > 0 is the object
        write_palette_png(results / "blob" / f"{t:05d}.png", pred)
    global_table, per_sequence = davis.evaluate_davis(root, results, year=2016, processes=1)
    assert global_table["J&F-Mean"] == 1.0
    assert [row["Sequence"] for row in per_sequence] == ["blob_1"]


# --------------------------------------------------------------------------
# evaluate_sequence and helpers
# --------------------------------------------------------------------------


def test_evaluate_sequence_missing_id_and_void():
    gt = draw((10, 10), {1: (1, 1, 3, 3), 2: (6, 6, 2, 2)})
    gt[9, :] = 255  # void is background
    frames = [gt, gt, gt]
    pred = np.where(gt == 255, 0, gt)
    pred[pred == 2] = 0  # id 2 missing -> empty mask
    scores = davis.evaluate_sequence(frames, [None, pred, None])
    assert scores["J"].shape == scores["F"].shape == (2, 1)
    assert scores["J"][:, 0].tolist() == [1.0, 0.0]
    assert scores["F"][:, 0].tolist() == [1.0, 0.0]


def test_evaluate_sequence_rejects_bad_input():
    gt = draw((10, 10), {1: (1, 1, 3, 3)})
    with pytest.raises(ValueError, match="object id 2"):
        davis.evaluate_sequence([gt] * 3, [gt, gt + (gt > 0), gt])
    with pytest.raises(ValueError, match="size"):
        davis.evaluate_sequence([gt] * 3, [gt, gt[:, :9], gt])
    with pytest.raises(ValueError, match="at least 3 frames"):
        davis.evaluate_sequence([gt] * 2, [gt] * 2)
    with pytest.raises(ValueError, match="predictions"):
        davis.evaluate_sequence([gt] * 3, [gt] * 4)


def test_count_objects_ignores_void():
    first = np.array([[0, 1, 255], [3, 0, 255]], dtype=np.uint8)
    assert davis.count_objects(first) == 3


# --------------------------------------------------------------------------
# Mask I/O
# --------------------------------------------------------------------------


def test_davis_palette_rule():
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    expected = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
                (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0)]
    assert [tuple(c) for c in palette[:10].tolist()] == expected
    assert len({tuple(c) for c in palette.tolist()}) == 256  # every id has its own colour


def test_palette_png_round_trip(tmp_path):
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "sub" / "00000.png"
    write_palette_png(path, ids)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert np.array_equal(np.array(image.getpalette()[:768]).reshape(256, 3), davis_palette())
    assert np.array_equal(read_mask(path), ids)
    assert [p.name for p in path.parent.iterdir()] == ["00000.png"]  # temp file renamed away
    # RGB-coded masks are mapped back through the palette
    Image.open(path).convert("RGB").save(tmp_path / "rgb.png")
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), ids)


def test_read_mask_grayscale_and_davis2016(tmp_path):
    values = np.array([[0, 255], [1, 128]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "l.png")
    assert np.array_equal(read_mask(tmp_path / "l.png"), values)
    assert read_davis2016_mask(tmp_path / "l.png").tolist() == [[False, True], [False, True]]


def test_read_mask_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_mask(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG junk")
    with pytest.raises(ValueError, match="junk.png"):
        read_mask(tmp_path / "junk.png")
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)  # not a DAVIS colour
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"odd.png.*\(1, 2, 3\)"):
        read_mask(tmp_path / "odd.png")


def test_write_palette_png_rejects_bad_ids(tmp_path):
    with pytest.raises(ValueError, match="0..255"):
        write_palette_png(tmp_path / "x.png", np.array([[0, 256]]))
    with pytest.raises(ValueError, match="2-D"):
        write_palette_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mast")
    evaluate_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_evaluate(dataset, capsys):
    root, results, _, _ = dataset
    args = cli_parser().parse_args(
        ["evaluate", "--davis", str(root), "--results", str(results), "--processes", "1"]
    )
    assert args.year == 2017 and args.split == "val"
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "J&F-Mean" in out and "seq-b_3" in out
    assert (results / "global_results-val.csv").is_file()


def test_cli_evaluate_error_exit_code(dataset, capsys):
    root, results, _, _ = dataset
    (results / "seq-a" / "00001.png").unlink()
    args = cli_parser().parse_args(["evaluate", "--davis", str(root), "--results", str(results)])
    assert args.func(args) == 1
    assert "seq-a/00001.png" in capsys.readouterr().err


def test_cli_help_mentions_layout(capsys):
    with pytest.raises(SystemExit):
        cli_parser().parse_args(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "--davis" in out and "ImageSets/<year>/<split>.txt" in out


# --------------------------------------------------------------------------
# Real data (skipped without /work/shared)
# --------------------------------------------------------------------------


def shared_dir() -> Path:
    return Path(os.environ.get("MAST_SHARED", Path(__file__).resolve().parents[2] / "shared"))


DAVIS2016 = shared_dir() / "data" / "davis2016"


@pytest.mark.skipif(
    not (DAVIS2016 / "Annotations" / "480p").is_dir(), reason=f"DAVIS-2016 sample data not found at {DAVIS2016}"
)
def test_davis2016_ground_truth_against_itself(tmp_path):
    sequences = ["car-shadow", "libby"]  # 40 and 49 frames: fast
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "two.txt").write_text("\n".join(sequences) + "\n")
    (root / "Annotations" / "480p").mkdir(parents=True)
    results.mkdir()
    for name in sequences:  # symlinks: nothing is copied, the CSVs land in tmp_path
        (root / "Annotations" / "480p" / name).symlink_to(DAVIS2016 / "Annotations" / "480p" / name)
        (results / name).symlink_to(DAVIS2016 / "Annotations" / "480p" / name)
    global_table, per_sequence = davis.evaluate_davis(root, results, split="two", year=2016, processes=2)
    assert global_table["J&F-Mean"] == 1.0
    assert [row["Sequence"] for row in per_sequence] == ["car-shadow_1", "libby_1"]


def test_a_subset_of_the_split_is_scored_alone_and_named_so(dataset, capsys):
    root, results, gts, preds = dataset
    whole = {row["Sequence"]: row for row in davis.score_davis(root, results, processes=1)[1]}
    shutil.rmtree(results / "seq-a")  # a subset needs only its own results
    _, rows = davis.score_davis(root, results, processes=1, sequences=["seq-b"])
    assert rows == [whole[name] for name in ("seq-b_1", "seq-b_2", "seq-b_3")]
    args = cli_parser().parse_args(["evaluate", "--davis", str(root), "--results", str(results),
                                    "--sequences", "seq-b", "--processes", "1"])
    assert args.func(args) == 0
    assert (results / "global_results-val-seq-b.csv").is_file() and not (results / "global_results-val.csv").exists()
    with pytest.raises(ValueError, match=r"\['seq-z'\] are not in .*val.txt"):
        davis.score_davis(root, results, sequences=["seq-b", "seq-z"])
    assert davis.csv_label("val", ["x" * 80, "y" * 80]).startswith("val-2-sequences-")
