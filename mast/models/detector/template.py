"""The object template of [Dave §3.2, §3.4]: one 1x1xD feature, and its discriminative forms.

The pyramid is matched with features L2-normalised per location (``D``-vectors
of unit length), so that a template's similarity map has the same scale on
every level and for every template kind (our choice: [Dave] does not say how
Mask R-CNN's features are scaled).

* ``T``, the *centre* feature: the level a box maps to (:func:`.fpn.box_levels`),
  read bilinearly at the box centre.
* positives: the cells of that level whose centres lie inside the box (``T``
  itself when none does); negatives: cells of every level whose centres lie
  outside the box, ``negatives`` of them evenly spaced in raster order, level
  after level (deterministic, so a tracker's template does not depend on a seed).

Templates ``T_d`` ([Dave] Table 1's names):

* ``ridge`` ('lin. reg.', [Dave] Eq. 1-3): ``A = [T; n_1; ...; n_q]``, ``y = [1; 0; ...; 0]``,
  ``T_d = (A^T A + lambda I)^-1 A^T y`` (``torch.linalg.solve``, differentiable);
* ``center``: ``T_d = T``;
* ``mean-pos`` ('mean pos'): the mean of the positives;
* ``mean-diff`` ('mean diff'): the mean of the positives minus the mean of the negatives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mast.common.errors import ArgumentError
from mast.models.detector.fpn import STRIDES, box_levels, level_points
from mast.models.detector.regions import sample_points

TEMPLATES = ("ridge", "center", "mean-pos", "mean-diff")


def check_box(box: torch.Tensor, height: int, width: int, argument: str = "box") -> None:
    """Refuses a template box ``(4,)`` ``(cx, cy, w, h)`` of zero area or not overlapping the
    ``height x width`` frame: one :class:`~mast.common.errors.ArgumentError` line naming ``argument``."""
    cx, cy, w, h = (float(v) for v in box)
    if not w > 0 or not h > 0:
        raise ArgumentError(argument, f"the template box (cx, cy, w, h) = ({cx:g}, {cy:g}, {w:g}, {h:g}) "
                                      "has zero area; give a box of positive width and height")
    if cx + w / 2 <= 0 or cy + h / 2 <= 0 or cx - w / 2 >= width or cy - h / 2 >= height:
        raise ArgumentError(argument, f"the template box (cx, cy, w, h) = ({cx:g}, {cy:g}, {w:g}, {h:g}) "
                                      f"lies outside the {width}x{height} frame")


def ridge_template(matrix: torch.Tensor, ridge: float) -> torch.Tensor:
    """``T_d = (A^T A + ridge I)^-1 A^T y`` for ``A`` = ``matrix`` ``(1 + q, D)`` (its first row the
    template) and ``y = [1, 0, ..., 0]`` -> ``(D,)``."""
    if matrix.dtype in (torch.float16, torch.bfloat16):  # no half-precision solver; mixed precision solves in float32
        matrix = matrix.float()
    with torch.autocast(matrix.device.type, enabled=False):
        gram = matrix.t() @ matrix + ridge * torch.eye(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
        return torch.linalg.solve(gram, matrix[0])  # A^T y is A's first row


def inside_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(2, H, W)`` image points and ``(B, 4)`` boxes -> ``(B, H, W)`` bool: the point lies inside the box."""
    boxes = boxes.view(-1, 4, 1, 1)
    return ((points[0] - boxes[:, 0]).abs() < boxes[:, 2] / 2) & ((points[1] - boxes[:, 1]).abs() < boxes[:, 3] / 2)


def evenly(rows: torch.Tensor, count: int) -> torch.Tensor:
    """At most ``count`` of ``rows`` ``(N, D)``, evenly spaced."""
    if len(rows) <= count:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, count, device=rows.device).round().long()]


def template_samples(pyramid: list[torch.Tensor], box: torch.Tensor, negatives: int,
                     canonical_size: float = 224.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(T (D,), positives (P, D), negatives (q, D))`` of one image's unit-normalised ``pyramid``
    (levels ``(D, H_k, W_k)``) and its box ``(4,)`` (module docstring)."""
    level = int(box_levels(box[2], box[3], canonical_size))
    stride = STRIDES[level]
    centre = sample_points(pyramid[level], (box[:2] / stride).view(1, 2))[0]
    outside = []
    positives = centre.view(1, -1)
    for index, features in enumerate(pyramid):
        points = level_points(*features.shape[-2:], STRIDES[index], features.device)
        inside = inside_boxes(points, box.view(1, 4))[0]
        outside.append(features[:, ~inside].t())
        if index == level and bool(inside.any()):
            positives = features[:, inside].t()
    return centre, positives, evenly(torch.cat(outside), negatives)


def discriminative_template(pyramid: list[torch.Tensor], box: torch.Tensor, kind: str, negatives: int,
                            ridge: float, canonical_size: float = 224.0) -> torch.Tensor:
    """The template ``T_d`` ``(D,)`` of kind ``kind`` (:data:`TEMPLATES`) for one image's unit-normalised
    ``pyramid`` and box ``(4,)``."""
    centre, positives, outside = template_samples(pyramid, box, negatives, canonical_size)
    if kind == "ridge":
        return ridge_template(torch.cat([centre.view(1, -1), outside]), ridge)
    if kind == "center":
        return centre
    if kind == "mean-pos":
        return positives.mean(0)
    if kind == "mean-diff":
        return positives.mean(0) - (outside.mean(0) if len(outside) else 0)
    raise ValueError(f"unknown template kind {kind!r}; choose from {', '.join(TEMPLATES)}")


def normalized(pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every level's features ``(B, D, H, W)`` scaled to unit length per location."""
    return [F.normalize(level, dim=1) for level in pyramid]


def similarity(pyramid: list[torch.Tensor], templates: torch.Tensor) -> list[torch.Tensor]:
    """``S_i = P_i * T_d`` [Dave §3.2]: the 1x1 cross-correlation of each unit-normalised level
    ``(B, D, H, W)`` with its image's template ``(B, D)`` -> ``(B, 1, H, W)`` per level."""
    return [torch.einsum("bdhw,bd->bhw", level, templates)[:, None] for level in normalized(pyramid)]
