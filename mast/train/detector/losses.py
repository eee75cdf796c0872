"""The detector's training targets and losses (docs/baselines.md §7.4).

Boxes are ``(cx, cy, w, h)`` in crop pixels. One object per sample, the one
the template names ([Dave §3.5]: a single class-agnostic ground-truth box).

* Proposals: on the level the box maps to (:func:`mast.models.detector.fpn.box_levels`),
  a cell is positive when it lies inside the box within ``positive_radius`` strides of
  its centre (the nearest cell at least); every other cell of every level is negative.
  ``objectness``: logistic loss, positives and negatives averaged separately
  (:func:`mast.train.siammask.losses.balanced_loss`); ``proposal_box``: smooth L1
  (``beta = 1/9``) of the positives' log side distances (:func:`~mast.models.detector.model.decode_sides`).
* Heads, on each image's proposals, its ground-truth box (as R-CNNs add it) and ``jitter``
  copies of it shifted by up to ``1/4`` of its sides and scaled by ``2^(+-1/2)`` (so that
  the heads see near misses while the proposals are still poor): a region is
  positive at IoU >= ``positive_iou`` with the box. ``score``: balanced logistic loss;
  ``box``: smooth L1 of the positives' deltas (:func:`~mast.models.siammask.geometry.encode_boxes`
  times :data:`~mast.models.detector.model.DELTA_WEIGHTS`);
  ``mask``: per-pixel logistic loss of the positives' masks against the ground-truth mask
  pooled on the same bins (:func:`mast.models.detector.regions.pool_regions` at stride 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mast.models.detector.model import DELTA_WEIGHTS
from mast.models.detector.fpn import STRIDES, box_levels, level_points
from mast.models.detector.regions import pool_regions
from mast.models.detector.template import inside_boxes
from mast.models.siammask.geometry import box_iou, encode_boxes
from mast.train.siammask.losses import balanced_loss

#: Smooth L1's ``beta`` (Faster R-CNN's RPN).
BETA = 1 / 9


def proposal_targets(boxes: torch.Tensor, shapes: list[tuple[int, int]], canonical_size: float,
                     radius: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per level (``shapes``: its ``(H, W)``): ``(B, H, W)`` bool positive cells of the ``(B, 4)``
    boxes, and ``(B, H, W, 4)`` each cell's log distances to the box's sides, in strides."""
    levels = box_levels(boxes[:, 2], boxes[:, 3], canonical_size)
    positives, targets = [], []
    for index, ((height, width), stride) in enumerate(zip(shapes, STRIDES)):
        points = level_points(height, width, stride, boxes.device)
        centres = boxes[:, :2].view(-1, 2, 1, 1)
        distance = (points[None] - centres).norm(dim=1)  # (B, H, W)
        positive = inside_boxes(points, boxes) & (distance <= radius * stride)
        nearest = distance.flatten(1).argmin(dim=1)
        positive.view(len(boxes), -1)[torch.arange(len(boxes)), nearest] = True
        positive &= (levels == index).view(-1, 1, 1)
        low, high = boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2
        sides = torch.cat([points[None] - low.view(-1, 2, 1, 1), high.view(-1, 2, 1, 1) - points[None]], dim=1)
        positives.append(positive)
        targets.append(torch.log((sides / stride).clamp_min(1e-2)).permute(0, 2, 3, 1))
    return positives, targets


def objectness_loss(logits: list[torch.Tensor], positives: list[torch.Tensor]) -> torch.Tensor:
    """Balanced logistic loss of the ``(B, 1, H, W)`` objectness logits of every level."""
    flat = torch.cat([level[:, 0].flatten(1) for level in logits], dim=1).float()
    positive = torch.cat([level.flatten(1) for level in positives], dim=1)
    losses = F.binary_cross_entropy_with_logits(flat, positive.float(), reduction="none")
    return balanced_loss(losses, positive, ~positive, None)


def side_loss(sides: list[torch.Tensor], targets: list[torch.Tensor], positives: list[torch.Tensor]) -> torch.Tensor:
    """Smooth L1 of the positive cells' ``(B, 4, H, W)`` log side distances, summed over the 4
    sides, averaged over the positive cells."""
    predicted = torch.cat([level.permute(0, 2, 3, 1)[positive] for level, positive in zip(sides, positives)])
    wanted = torch.cat([target[positive] for target, positive in zip(targets, positives)])
    return F.smooth_l1_loss(predicted.float(), wanted, reduction="none", beta=BETA).sum(-1).mean()


def jittered_boxes(boxes: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(B, 4)`` boxes -> ``(B, 1 + count, 4)``: each box, then ``count`` copies shifted by up to a
    quarter of its sides and scaled by ``2^u``, ``u`` uniform in ``+-1/2`` per side."""
    noise = torch.rand(len(boxes), count, 4, generator=generator).to(boxes.device) * 2 - 1
    sides = boxes[:, None, 2:]
    copies = torch.cat([boxes[:, None, :2] + noise[..., :2] * sides / 4, sides * 2 ** (noise[..., 2:] / 2)], dim=-1)
    return torch.cat([boxes[:, None], copies], dim=1)


def region_labels(rois: torch.Tensor, boxes: torch.Tensor, positive_iou: float) -> torch.Tensor:
    """``(N,)`` bool: the region ``(N, 4)`` overlaps its image's box ``(N, 4)`` by ``positive_iou`` or more."""
    return box_iou(rois, boxes) >= positive_iou


def score_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Balanced logistic loss of the regions' ``(N,)`` score logits."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    return balanced_loss(losses, labels, ~labels, None)


def delta_loss(deltas: torch.Tensor, rois: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Smooth L1 of the positive regions' ``(N, 4)`` deltas against the box's relative to them."""
    wanted = encode_boxes(boxes[labels], rois[labels]) * deltas.new_tensor(DELTA_WEIGHTS)
    return F.smooth_l1_loss(deltas[labels].float(), wanted, reduction="none", beta=BETA).sum(-1).mean()


def mask_loss(logits: torch.Tensor, rois: torch.Tensor, masks: torch.Tensor, batch_index: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
    """Logistic loss of the positive regions' ``(N, M, M)`` mask logits against the ``(B, 1, H, W)``
    ground-truth masks pooled on their bins (thresholded at 0.5)."""
    size = logits.shape[-1]
    wanted = pool_regions(masks, rois[labels], batch_index[labels], 1.0, size)[:, 0] > 0.5
    return F.binary_cross_entropy_with_logits(logits[labels].float(), wanted.float())
