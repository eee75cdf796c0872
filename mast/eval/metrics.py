"""DAVIS-2017 per-frame metrics (J, F) and per-object statistics.

The definitions follow docs/evaluation.md §6, which mirrors the official DAVIS-2017
evaluation toolkit:

* ``region_similarity``  -- J, the Jaccard index of two binary masks.
* ``boundary_f_measure`` -- F, the boundary F-measure with a disk tolerance.
* ``mean`` / ``recall`` / ``decay`` -- statistics over the per-frame values of
  one object (``summary_statistics`` returns all three).

All masks are 2-D arrays of shape ``(H, W)``; anything non-zero is foreground.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from skimage.morphology import disk

#: Boundary tolerance as a fraction of the image diagonal (toolkit default).
BOUNDARY_TOLERANCE_FRACTION = 0.008

#: A frame "recalls" an object when its score is strictly above this value.
RECALL_THRESHOLD = 0.5

#: Number of temporal bins used by the decay statistic (quarters).
DECAY_BINS = 4


def _as_bool_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Returns ``mask != 0`` as a bool ``(H, W)`` array; rejects other ranks."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {mask.shape}")
    if mask.size == 0:
        raise ValueError(f"{name} is empty (shape {mask.shape})")
    return mask.astype(bool, copy=False)


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index J = |pred & gt| / |pred | gt| of two ``(H, W)`` masks.

    J is 1 when both masks are empty (nothing to find, nothing found).
    """
    pred = _as_bool_mask(pred, "pred")
    gt = _as_bool_mask(gt, "gt")
    _check_same_shape(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary ``(H, W)`` mask, as bool ``(H, W)``.

    A pixel is on the boundary when it differs from its right, lower or
    lower-right neighbour. The last row has no lower neighbours, so it is
    compared with its right neighbour only; the last column is compared with
    its lower neighbour only; the bottom-right pixel is never a boundary.
    Pixels outside the image are never consulted (no implicit padding), so an
    object touching the border gets no boundary along the image edge.
    """
    mask = _as_bool_mask(mask, "mask")
    boundary = np.zeros_like(mask)
    differs_right = mask[:, :-1] != mask[:, 1:]  # (H, W-1)
    differs_down = mask[:-1, :] != mask[1:, :]  # (H-1, W)
    differs_diag = mask[:-1, :-1] != mask[1:, 1:]  # (H-1, W-1)
    boundary[:-1, :-1] = differs_right[:-1] | differs_down[:, :-1] | differs_diag
    boundary[-1, :-1] = differs_right[-1]
    boundary[:-1, -1] = differs_down[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_tolerance(height: int, width: int) -> int:
    """Disk radius in pixels for boundary matching: ceil(0.008 * diagonal).

    8 at 854x480.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return int(math.ceil(BOUNDARY_TOLERANCE_FRACTION * math.hypot(height, width)))


@functools.lru_cache(maxsize=8)
def _disk_kernel(radius: int) -> np.ndarray:
    """``skimage.morphology.disk(radius)`` as a uint8 kernel for cv2 (cached)."""
    return disk(radius).astype(np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a bool ``(H, W)`` mask with a disk of ``radius``.

    Exact: cv2 treats pixels outside the image as neutral for dilation, so
    nothing leaks in from the border.
    """
    dilated = cv2.dilate(mask.astype(np.uint8), _disk_kernel(radius))
    return dilated.astype(bool)


def _precision_recall(n_pred: int, n_gt: int, pred_hits: int, gt_hits: int) -> tuple[float, float]:
    """Boundary precision and recall, with the toolkit's empty-boundary rules."""
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0
    return pred_hits / n_pred, gt_hits / n_gt


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Boundary F-measure F between two binary ``(H, W)`` masks.

    Precision: fraction of predicted boundary pixels within the true boundary
    dilated by a disk of ``boundary_tolerance(H, W)``; recall: fraction of true
    boundary pixels within the dilated predicted boundary. Empty boundaries:
    none predicted but some true -> P=1, R=0; some predicted, none true ->
    P=0, R=1; none of either -> P=R=1. F = 2PR / (P + R), 0 when P + R = 0.
    """
    pred = _as_bool_mask(pred, "pred")
    gt = _as_bool_mask(gt, "gt")
    _check_same_shape(pred, gt)
    radius = boundary_tolerance(*gt.shape)
    pred_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    n_pred = int(np.count_nonzero(pred_boundary))
    n_gt = int(np.count_nonzero(gt_boundary))
    pred_hits = gt_hits = 0
    if n_pred and n_gt:  # dilation is only needed when both boundaries exist
        pred_hits = int(np.count_nonzero(pred_boundary & dilate(gt_boundary, radius)))
        gt_hits = int(np.count_nonzero(gt_boundary & dilate(pred_boundary, radius)))
    precision, recall_ = _precision_recall(n_pred, n_gt, pred_hits, gt_hits)
    if precision + recall_ == 0:
        return 0.0
    return 2 * precision * recall_ / (precision + recall_)


# --------------------------------------------------------------------------
# Statistics over the per-frame values of one object
# --------------------------------------------------------------------------


def _as_values(values: np.ndarray) -> np.ndarray:
    """Per-frame scores as a non-empty float64 ``(n,)`` array."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"per-frame values must be 1-D, got shape {values.shape}")
    if values.size == 0:
        raise ValueError("statistics need at least one per-frame value, got none")
    return values


def decay_bin_bounds(n: int) -> np.ndarray:
    """Quarter boundaries ``ids`` (int64, shape ``(5,)``) for ``n`` values.

    ``ids = round(linspace(1, n, 5) + 1e-10) - 1``; bin i spans
    ``values[ids[i] : ids[i+1] + 1]`` (neighbouring bins share their boundary
    frame). The 1e-10 makes exact halves round up instead of to even. Kept in
    int64: the official toolkit casts to uint8 and wraps for n > 256.
    """
    if n < 1:
        raise ValueError(f"decay bins need at least one value, got n={n}")
    ids = np.round(np.linspace(1, n, DECAY_BINS + 1) + 1e-10) - 1
    return ids.astype(np.int64)


def decay_bins(values: np.ndarray) -> list[np.ndarray]:
    """Splits ``(n,)`` per-frame values into the 4 (overlapping) quarters.

    Every bin is non-empty for every n >= 1: with n = 1 all four bins are
    ``[v0]``; with n = 2 they are ``[v0], [v0, v1], [v1], [v1]``.
    """
    values = _as_values(values)
    ids = decay_bin_bounds(values.size)
    return [values[ids[i] : ids[i + 1] + 1] for i in range(DECAY_BINS)]


def mean(values: np.ndarray) -> float:
    """Mean of the ``(n,)`` per-frame values (n >= 1)."""
    return float(np.mean(_as_values(values)))


def recall(values: np.ndarray) -> float:
    """Fraction of the ``(n,)`` per-frame values strictly above 0.5."""
    return float(np.mean(_as_values(values) > RECALL_THRESHOLD))


def decay(values: np.ndarray) -> float:
    """Mean of the first quarter minus mean of the last quarter of ``(n,)`` values.

    Positive when the score drops over time. 0 for n = 1 (both quarters are
    the single value); ``v0 - v1`` for n = 2.
    """
    bins = decay_bins(values)
    return float(np.mean(bins[0]) - np.mean(bins[-1]))


def summary_statistics(values: np.ndarray) -> dict[str, float]:
    """``{"mean", "recall", "decay"}`` of one object's ``(n,)`` per-frame values."""
    return {"mean": mean(values), "recall": recall(values), "decay": decay(values)}
