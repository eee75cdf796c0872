"""Box metrics for trackers (OTB definitions), on the tracker's boxes or boxes derived from masks.

``score_davis(boxes=True)`` adds them to the DAVIS tables (docs/evaluation.md
§6.9). Every ground-truth mask becomes the min-max box of each object id; the
prediction's boxes are the tracker's own where the results hold them
(``boxes.json``, :mod:`mast.eval.box_outputs`), else its masks' min-max boxes
too (``BOX_SOURCES``); the boxes are then scored as the OTB benchmark scores a
tracker [Wu et al., "Online Object Tracking: A Benchmark", CVPR 2013]:

* per frame: the IoU of the two boxes and the distance between their centres;
* per object: the mean IoU, the success AUC (mean of the success curve, the
  fraction of frames with IoU > t for t = 0, 0.05, ..., 1) and the precision
  at 20 px (fraction of frames with a centre error <= 20 px).

Frames: those J&F scores (all but the first and the last). A frame whose
ground truth lacks the object is left out of every box score; where the
ground truth holds it and the prediction does not, IoU = 0 and the centre
error is infinite (a failure at every threshold). Global values are
object-weighted like J&F: the mean of the per-object values, over the objects
with at least one frame scored.

Boxes are ``(x, y, w, h)`` in pixels, pixel-inclusive: the object's pixels
span columns ``x .. x + w - 1`` and rows ``y .. y + h - 1`` (a tracker's boxes
may be fractional: the same rule on the continuous plane).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Box = tuple[float, float, float, float]

#: Overlap thresholds of the success curve, k / 20 for k = 0..20 (OTB's ``0:0.05:1``).
SUCCESS_THRESHOLDS = np.arange(21) / 20

#: Centre-error thresholds of the precision curve, 0..50 pixels (OTB's ``0:50``).
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)

#: The precision the tables report: at this centre error, in pixels.
PRECISION_PIXELS = 20

#: Columns the box metrics add to the global and per-object tables.
BOX_COLUMNS = ("Box-IoU-Mean", "Success-AUC", "Precision@20")

#: The column saying which boxes were scored, after ``BOX_COLUMNS``: per object ``tracker`` (the
#: tracker's boxes.json) or ``mask`` (the masks' min-max boxes); globally also ``mixed``.
BOX_SOURCE = "Box-Source"
BOX_SOURCES = ("tracker", "mask")


# --------------------------------------------------------------------------
# Boxes and per-frame measures
# --------------------------------------------------------------------------


def mask_box(ids: np.ndarray, object_id: int) -> Box | None:
    """Min-max box ``(x, y, w, h)`` of the pixels of ``object_id`` in an ``(H, W)`` id map.

    Pixel-inclusive: ``w = x_max - x_min + 1``, so a single pixel at column
    x, row y is ``(x, y, 1, 1)``. ``None`` when no pixel has that id.
    """
    mask = np.asarray(ids) == object_id
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    x, y = int(columns[0]), int(rows[0])
    return x, y, int(columns[-1]) - x + 1, int(rows[-1]) - y + 1


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (w, h >= 1).

    The boxes are read as the pixel sets they cover (OTB's ``calcRectInt``),
    so two boxes sharing only an edge do not overlap.
    """
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    if min(aw, ah, bw, bh) <= 0:
        raise ValueError(f"boxes need a positive width and height, got {a} and {b}")
    overlap_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    intersection = overlap_w * overlap_h
    return intersection / (aw * ah + bw * bh - intersection)


def box_centre(box: Box) -> tuple[float, float]:
    """Centre ``(x + (w - 1) / 2, y + (h - 1) / 2)``: midway between the extreme pixels, as OTB."""
    x, y, w, h = box
    return x + (w - 1) / 2, y + (h - 1) / 2


def centre_error(a: Box, b: Box) -> float:
    """Euclidean distance in pixels between the centres of two boxes."""
    (ax, ay), (bx, by) = box_centre(a), box_centre(b)
    return math.hypot(ax - bx, ay - by)


def frame_scores(gt_box: Box | None, pred_box: Box | None) -> tuple[float, float]:
    """``(IoU, centre error)`` of one object on one frame.

    ``(nan, nan)`` when the ground truth lacks the object (the frame is not
    scored); ``(0, inf)`` when only the prediction lacks it (a failure at
    every threshold).
    """
    if gt_box is None:
        return math.nan, math.nan
    if pred_box is None:
        return 0.0, math.inf
    return box_iou(gt_box, pred_box), centre_error(gt_box, pred_box)


# --------------------------------------------------------------------------
# Curves over the scored frames of one object
# --------------------------------------------------------------------------


def _as_scored(values: Sequence[float], name: str) -> np.ndarray:
    """Per-frame values as a non-empty float64 ``(n,)`` array without NaN (frames scored only)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or np.isnan(values).any():
        raise ValueError(f"{name}: need a 1-D array of the scored frames' values, none NaN, got shape {values.shape}")
    return values


def success_curve(ious: Sequence[float]) -> np.ndarray:
    """Fraction of frames with IoU > t for each t of ``SUCCESS_THRESHOLDS``: float64 ``(21,)``."""
    ious = _as_scored(ious, "ious")
    return np.mean(ious[:, None] > SUCCESS_THRESHOLDS, axis=0)


def success_auc(ious: Sequence[float]) -> float:
    """Area under the success curve: its mean over the 21 thresholds, as OTB reports it."""
    return float(np.mean(success_curve(ious)))


def precision_curve(errors: Sequence[float]) -> np.ndarray:
    """Fraction of frames with centre error <= d for each d of ``PRECISION_THRESHOLDS``: float64 ``(51,)``."""
    errors = _as_scored(errors, "errors")
    return np.mean(errors[:, None] <= PRECISION_THRESHOLDS, axis=0)


def precision_at(errors: Sequence[float], pixels: float = PRECISION_PIXELS) -> float:
    """Fraction of frames with centre error <= ``pixels``: the precision curve at ``pixels``."""
    return float(np.mean(_as_scored(errors, "errors") <= pixels))


# --------------------------------------------------------------------------
# Sequences and tables
# --------------------------------------------------------------------------


def sequence_box_scores(
    gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray | None], object_ids: Sequence[int],
    pred_boxes: Sequence[dict[int, Box | None] | None] | None = None,
) -> dict[str, np.ndarray]:
    """Per-object, per-frame IoU and centre error of one sequence.

    Args:
        gt_masks: the n ground-truth id maps ``(H, W)`` (void, 255, is never
            an object id, so it needs no removal).
        pred_masks: the n predicted id maps, aligned with ``gt_masks`` and
            already checked (``mast.eval.davis.check_prediction``); the first
            and last are not scored and may be ``None``.
        object_ids: the K ids scored.
        pred_boxes: the tracker's boxes instead of the masks' min-max boxes: n
            ``{object id: box or None}``, aligned with ``gt_masks`` (an id absent
            or None: no box on that frame); None scores the masks' boxes.

    Returns:
        ``{"IoU": (K, n - 2), "Centre-Error": (K, n - 2)}`` float64 arrays laid
        out as ``mast.eval.davis.evaluate_sequence``'s; NaN where the ground
        truth lacks the object (see ``frame_scores``).
    """
    scored = range(1, len(gt_masks) - 1)
    ious = np.empty((len(object_ids), len(scored)), dtype=np.float64)
    errors = np.empty_like(ious)
    for column, t in enumerate(scored):
        for row, object_id in enumerate(object_ids):
            predicted = mask_box(pred_masks[t], object_id) if pred_boxes is None else pred_boxes[t].get(object_id)
            ious[row, column], errors[row, column] = frame_scores(mask_box(gt_masks[t], object_id), predicted)
    return {"IoU": ious, "Centre-Error": errors}


def object_summary(ious: np.ndarray, errors: np.ndarray) -> dict[str, float]:
    """The ``BOX_COLUMNS`` of one object from its ``(T,)`` per-frame values (NaN = not scored).

    All NaN when no frame is scored (the ground truth never holds the object
    there, e.g. an id the DAVIS rule adds).
    """
    scored = ~np.isnan(ious)
    if not scored.any():
        return dict.fromkeys(BOX_COLUMNS, math.nan)
    ious, errors = ious[scored], errors[scored]
    return {"Box-IoU-Mean": float(np.mean(ious)), "Success-AUC": success_auc(ious),
            "Precision@20": precision_at(errors)}


def box_tables(object_scores: list[dict[str, np.ndarray]]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Global and per-object ``BOX_COLUMNS`` from per-object ``{"IoU": (T,), "Centre-Error": (T,)}``.

    Global values are the means of the per-object ones, over the objects with
    a scored frame (every such object counts once, as in the J&F table); NaN
    when there is none.
    """
    rows = [object_summary(scores["IoU"], scores["Centre-Error"]) for scores in object_scores]
    scored = [row for row in rows if not math.isnan(row[BOX_COLUMNS[0]])]
    global_table = {
        column: float(np.mean([row[column] for row in scored])) if scored else math.nan for column in BOX_COLUMNS
    }
    return global_table, rows


def overall_source(sources: Sequence[str]) -> str:
    """The global table's ``BOX_SOURCE``: the one source of every sequence, else ``mixed``."""
    return sources[0] if len(set(sources)) == 1 else "mixed"
