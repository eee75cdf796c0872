"""Tests of the DAVIS metrics (mast.eval.metrics) on hand-computed cases."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from mast.eval import metrics


def mask_with(shape: tuple[int, int], pixels: list[tuple[int, int]]) -> np.ndarray:
    """Bool mask of ``shape`` that is True exactly at ``pixels``."""
    mask = np.zeros(shape, dtype=bool)
    for row, col in pixels:
        mask[row, col] = True
    return mask


def pixels_of(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask))}


# --------------------------------------------------------------------------
# J
# --------------------------------------------------------------------------


def test_j_both_empty_is_one():
    empty = np.zeros((5, 7), dtype=bool)
    assert metrics.region_similarity(empty, empty) == 1.0


def test_j_one_side_empty_is_zero():
    empty = np.zeros((5, 7), dtype=bool)
    some = mask_with((5, 7), [(2, 3)])
    assert metrics.region_similarity(empty, some) == 0.0
    assert metrics.region_similarity(some, empty) == 0.0


def test_j_one_pixel_objects():
    a = mask_with((5, 5), [(2, 2)])
    b = mask_with((5, 5), [(2, 3)])
    assert metrics.region_similarity(a, a) == 1.0
    assert metrics.region_similarity(a, b) == 0.0


def test_j_partial_overlap_and_ids_as_input():
    gt = np.zeros((6, 6), dtype=np.uint8)
    gt[1:3, 1:4] = 7  # 2x3 = 6 pixels; any non-zero value is foreground
    pred = np.zeros((6, 6), dtype=bool)
    pred[1:3, 1:3] = True  # 2x2 = 4 pixels, all inside gt
    assert metrics.region_similarity(pred, gt) == pytest.approx(4 / 6)


def test_j_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        metrics.region_similarity(np.zeros((4, 4)), np.zeros((4, 5)))


# --------------------------------------------------------------------------
# Boundary map
# --------------------------------------------------------------------------


def naive_boundary_map(mask: np.ndarray) -> np.ndarray:
    """Pixel-by-pixel transcription of the definition in docs/evaluation.md §6.3."""
    height, width = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for r in range(height):
        for c in range(width):
            neighbours = []
            if c + 1 < width:
                neighbours.append(mask[r, c + 1])
            if r + 1 < height:
                neighbours.append(mask[r + 1, c])
            if r + 1 < height and c + 1 < width:
                neighbours.append(mask[r + 1, c + 1])
            out[r, c] = any(n != mask[r, c] for n in neighbours)
    return out


def test_boundary_single_interior_pixel():
    mask = mask_with((4, 4), [(1, 1)])
    # (0,0) sees it diagonally, (0,1) below, (1,0) to the right, (1,1) differs from its right.
    assert pixels_of(metrics.boundary_map(mask)) == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_boundary_last_row_compares_right_only():
    mask = mask_with((2, 3), [(1, 0)])
    # (0,0) sees it below; (1,0) differs from its right; (1,1) is compared with (1,2) only.
    assert pixels_of(metrics.boundary_map(mask)) == {(0, 0), (1, 0)}


def test_boundary_bottom_right_pixel_is_never_boundary():
    mask = mask_with((3, 3), [(2, 2)])
    # (1,2) is in the last column (lower neighbour only), (2,1) in the last row (right only).
    assert pixels_of(metrics.boundary_map(mask)) == {(1, 1), (1, 2), (2, 1)}


def test_boundary_object_touching_the_border():
    mask = np.zeros((3, 3), dtype=bool)
    mask[:, 2] = True  # last column: no boundary along the image edge
    assert pixels_of(metrics.boundary_map(mask)) == {(0, 1), (1, 1), (2, 1)}


def test_boundary_full_and_empty_masks_have_none():
    assert not metrics.boundary_map(np.ones((4, 5), dtype=bool)).any()
    assert not metrics.boundary_map(np.zeros((4, 5), dtype=bool)).any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (7, 9), (12, 5)])
def test_boundary_matches_naive_definition(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        mask = rng.random(shape) < 0.4
        assert np.array_equal(metrics.boundary_map(mask), naive_boundary_map(mask))


# --------------------------------------------------------------------------
# Tolerance and dilation
# --------------------------------------------------------------------------


def test_tolerance_at_480p_is_8():
    assert metrics.boundary_tolerance(480, 854) == 8
    assert metrics.boundary_tolerance(854, 480) == 8  # portrait


def test_tolerance_small_images():
    assert metrics.boundary_tolerance(10, 10) == 1  # ceil(0.113)
    assert metrics.boundary_tolerance(90, 120) == 2  # ceil(0.008 * 150) = ceil(1.2)


def naive_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation with the disk {x^2 + y^2 <= r^2}, pixels outside the image ignored."""
    out = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
               if dy * dy + dx * dx <= radius * radius]
    for r, c in zip(*np.nonzero(mask)):
        for dy, dx in offsets:
            if 0 <= r + dy < height and 0 <= c + dx < width:
                out[r + dy, c + dx] = True
    return out


@pytest.mark.parametrize("radius", [1, 2, 3, 8])
def test_dilate_is_exact_disk_dilation(radius):
    rng = np.random.default_rng(radius)
    mask = rng.random((23, 31)) < 0.03
    mask[0, 0] = mask[-1, -1] = True  # corners: nothing may leak in from outside
    assert np.array_equal(metrics.dilate(mask, radius), naive_dilate(mask, radius))


# --------------------------------------------------------------------------
# F
# --------------------------------------------------------------------------


def test_f_empty_conventions():
    empty = np.zeros((10, 10), dtype=bool)
    some = mask_with((10, 10), [(4, 4)])
    assert metrics.boundary_f_measure(empty, empty) == 1.0  # P = R = 1
    assert metrics.boundary_f_measure(empty, some) == 0.0  # P = 1, R = 0
    assert metrics.boundary_f_measure(some, empty) == 0.0  # P = 0, R = 1


def test_f_full_image_masks_have_no_boundary():
    # A mask covering the whole frame has no boundary, so F counts it as
    # "no boundary on either side" (F = 1) even against an empty mask.
    full = np.ones((10, 10), dtype=bool)
    empty = np.zeros((10, 10), dtype=bool)
    assert metrics.boundary_f_measure(full, full) == 1.0
    assert metrics.boundary_f_measure(full, empty) == 1.0


def test_f_identical_masks():
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 7:33] = True
    assert metrics.boundary_f_measure(mask, mask) == 1.0


def test_f_one_pixel_objects_with_radius_1_cross():
    # 10x10 -> tolerance 1, disk(1) is a plus-shaped cross.
    gt = mask_with((10, 10), [(4, 4)])  # boundary rows 3-4, cols 3-4
    # Neighbour one column over: boundaries are within 1 pixel of each other.
    assert metrics.boundary_f_measure(mask_with((10, 10), [(4, 5)]), gt) == 1.0
    # Two columns over: boundary cols 5-6; col 5 matches, col 6 does not, both ways.
    assert metrics.boundary_f_measure(mask_with((10, 10), [(4, 6)]), gt) == pytest.approx(0.5)
    # Three columns over: nothing matches.
    assert metrics.boundary_f_measure(mask_with((10, 10), [(4, 7)]), gt) == 0.0
    # Diagonal neighbour of the boundary: a disk of radius 1 excludes diagonals.
    assert metrics.boundary_f_measure(mask_with((10, 10), [(6, 6)]), gt) == 0.0


def test_f_objects_touching_the_border():
    gt = np.zeros((10, 10), dtype=bool)
    gt[:, :5] = True  # left half; boundary = column 4 only
    pred = np.zeros_like(gt)
    pred[:, :6] = True  # boundary = column 5, within 1 pixel
    assert metrics.boundary_f_measure(pred, gt) == 1.0
    assert metrics.region_similarity(pred, gt) == pytest.approx(50 / 60)
    pred[:, 6] = True  # boundary = column 6, 2 pixels away
    assert metrics.boundary_f_measure(pred, gt) == 0.0


def test_f_object_that_disappears():
    gt_gone = np.zeros((10, 10), dtype=bool)
    pred_still_there = mask_with((10, 10), [(2, 2), (2, 3)])
    assert metrics.region_similarity(pred_still_there, gt_gone) == 0.0
    assert metrics.boundary_f_measure(pred_still_there, gt_gone) == 0.0
    assert metrics.region_similarity(gt_gone, gt_gone) == 1.0
    assert metrics.boundary_f_measure(gt_gone, gt_gone) == 1.0


def test_f_precision_and_recall_differ():
    # 10x10, tolerance 1. gt: 1 pixel at (4,4) -> boundary {(3,3),(3,4),(4,3),(4,4)}.
    # pred: a vertical 2x1 block at (4,4),(5,4).
    gt = mask_with((10, 10), [(4, 4)])
    pred = mask_with((10, 10), [(4, 4), (5, 4)])
    pred_boundary = pixels_of(metrics.boundary_map(pred))
    assert pred_boundary == {(3, 3), (3, 4), (4, 3), (4, 4), (5, 3), (5, 4)}
    # gt boundary {(3,3),(3,4),(4,3),(4,4)} dilated by the cross covers row 5 at cols 3, 4:
    # precision 6/6; every gt boundary pixel is a pred boundary pixel: recall 1.
    assert metrics.boundary_f_measure(pred, gt) == 1.0
    pred = mask_with((10, 10), [(4, 4), (5, 4), (6, 4)])  # adds (6,3),(6,4): 2 of 8 unmatched
    precision, recall = 6 / 8, 1.0
    assert metrics.boundary_f_measure(pred, gt) == pytest.approx(2 * precision * recall / (precision + recall))


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def formula_bounds(n: int) -> list[int]:
    """ids = round(linspace(1, n, 5) + 1e-10) - 1, in plain Python."""
    return [int(round(1 + (n - 1) * i / 4 + 1e-10)) - 1 for i in range(5)]


@pytest.mark.parametrize(
    "n, expected",
    [(4, [0, 1, 2, 2, 3]), (5, [0, 1, 2, 3, 4]), (10, [0, 2, 5, 7, 9]), (100, [0, 25, 50, 74, 99])],
)
def test_decay_bin_bounds(n, expected):
    bounds = metrics.decay_bin_bounds(n)
    assert bounds.dtype == np.int64
    assert bounds.tolist() == expected == formula_bounds(n)
    values = np.arange(n, dtype=float)
    bins = metrics.decay_bins(values)
    assert [b.tolist() for b in bins] == [values[expected[i] : expected[i + 1] + 1].tolist() for i in range(4)]


def test_decay_and_mean_recall_values():
    values = np.array([1.0, 0.9, 0.6, 0.5, 0.2])  # n=5: bins [0:2], [1:3], [2:4], [3:5]
    assert metrics.mean(values) == pytest.approx(3.2 / 5)
    assert metrics.recall(values) == pytest.approx(3 / 5)  # 0.5 itself is not > 0.5
    assert metrics.decay(values) == pytest.approx((1.0 + 0.9) / 2 - (0.5 + 0.2) / 2)
    assert metrics.summary_statistics(values) == {
        "mean": metrics.mean(values), "recall": metrics.recall(values), "decay": metrics.decay(values)
    }


def test_decay_long_sequence_does_not_overflow():
    # n = 301: ids = [0, 75, 150, 225, 300]. Cast to uint8 (as the official
    # toolkit does) the last bound wraps to 44 and the last bin is empty.
    n = 301
    assert metrics.decay_bin_bounds(n).tolist() == [0, 75, 150, 225, 300] == formula_bounds(n)
    values = np.where(np.arange(n) < 200, 1.0, 0.0)
    assert metrics.decay(values) == 1.0
    values = np.linspace(1.0, 0.0, n)
    expected = np.mean(values[0:76]) - np.mean(values[225:301])
    assert metrics.decay(values) == pytest.approx(expected)


def test_statistics_short_sequences_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.decay([0.7]) == 0.0  # all four bins are [v0]
        assert metrics.decay([0.9, 0.4]) == pytest.approx(0.5)  # bins [v0], [v0, v1], [v1], [v1]
        assert metrics.decay([0.9, 0.5, 0.1]) == pytest.approx(0.7 - 0.1)  # bins [0:2], [1:2], [1:3], [2:3]
        assert metrics.mean([0.7]) == 0.7
        assert metrics.recall([0.7]) == 1.0


def test_statistics_reject_empty_values():
    for statistic in (metrics.mean, metrics.recall, metrics.decay):
        with pytest.raises(ValueError, match="at least one"):
            statistic([])
