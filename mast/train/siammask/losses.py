"""SiamMask's training targets and losses [SiamMask Eq. 3-5] (docs/baselines.md §7.2).

Boxes are ``(cx, cy, w, h)`` in search-crop pixels (:mod:`mast.models.siammask.geometry`).

* Three-branch: an anchor is positive at IoU >= ``positive_iou`` with the target
  box, negative below ``negative_iou``, ignored in between; where no anchor of a
  sample reaches ``positive_iou`` its best anchor is positive (as in RPNs), so
  every sample trains the box and mask branches. A RoW is positive when one of
  its anchors is [SiamMask §3.2]. ``L_score``: cross-entropy, ``L_box``: smooth L1
  (``beta = 1/9``) on the positive anchors' deltas [SiamRPN].
* Two-branch: a RoW is positive within ``positive_radius`` search-crop pixels of
  the target centre, as SiamFC labels its score map [SiamFC] (the nearest RoW at
  least), negative otherwise; ``L_sim``: logistic loss.
* Positives and negatives are averaged separately and weighted equally (SiamFC's
  balanced loss); with hard-negative mining only the ``negative_ratio`` times as
  many negatives as positives with the largest losses count ([Carlier]: 3:1).
* ``L_mask``: the per-pixel logistic loss ``log(1 + exp(-c m))`` of each positive
  RoW's mask against its window of the ground-truth mask, averaged over pixels and
  positive RoWs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mast.models.siammask.geometry import EXEMPLAR_SIZE, box_iou, encode_boxes, row_coordinates
from mast.ops.crops import square_crop


def anchor_labels(anchors: torch.Tensor, boxes: torch.Tensor, positive_iou: float,
                  negative_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor targets.

    Args:
        anchors: ``(k, 17, 17, 4)``; boxes: ``(B, 4)`` the target of every sample.
    Returns:
        ``(labels, deltas)``: ``(B, k, 17, 17)`` long, 1 positive, 0 negative, -1 ignored;
        ``(B, k, 17, 17, 4)`` the box targets of every anchor.
    """
    targets = boxes.view(-1, 1, 1, 1, 4)
    iou = box_iou(anchors.unsqueeze(0), targets)
    labels = torch.full(iou.shape, -1, dtype=torch.long, device=iou.device)
    labels[iou < negative_iou] = 0
    labels[iou >= positive_iou] = 1
    flat = labels.flatten(1)
    best = iou.flatten(1).argmax(dim=1)
    missing = ~(flat == 1).any(dim=1)
    flat[missing, best[missing]] = 1
    return flat.view_as(iou), encode_boxes(targets, anchors.unsqueeze(0))


def positive_rows(positive: torch.Tensor) -> torch.Tensor:
    """``(B, 17, 17)`` bool positive RoWs -> their ``(N, 3)`` long ``(batch index, i, j)``."""
    return torch.nonzero(positive)


def similarity_labels(boxes: torch.Tensor, radius: float) -> torch.Tensor:
    """Two-branch RoW labels: ``(B, 17, 17)`` bool, True within ``radius`` of each box centre."""
    coords = row_coordinates(boxes.device)
    dx = coords.view(1, 1, -1) - boxes[:, 0].view(-1, 1, 1)
    dy = coords.view(1, -1, 1) - boxes[:, 1].view(-1, 1, 1)
    distance = (dx**2 + dy**2).sqrt()
    positive = distance <= radius
    nearest = distance.flatten(1).argmin(dim=1)
    positive.view(len(boxes), -1)[torch.arange(len(boxes), device=boxes.device), nearest] = True
    return positive


def class_means(values: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of ``values`` over the ``positive`` and over the ``negative`` elements (bool, same
    shape), 0 for a class with none: the per-class losses that show an imbalance."""
    return tuple(values[mask].mean() if bool(mask.any()) else values.new_zeros(()) for mask in (positive, negative))


def balanced_terms(losses: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   hard_ratio: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean loss of the positives and that of the negatives (``(B, ...)`` each), 0 where a
    class is empty.

    ``hard_ratio``: keep only each sample's ``hard_ratio * positives`` (at least 1)
    negatives of largest loss (hard-negative mining); None keeps every negative.
    """
    if hard_ratio is not None:
        kept = torch.zeros_like(negative)
        for b in range(len(losses)):
            count = max(1, int(hard_ratio * int(positive[b].sum())))
            candidates = torch.where(negative[b], losses[b].detach(), torch.full_like(losses[b], -float("inf")))
            count = min(count, int(negative[b].sum()))
            if count:
                kept[b].view(-1)[candidates.flatten().topk(count).indices] = True
        negative = kept
    return class_means(losses, positive, negative)


def balanced_loss(losses: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                  hard_ratio: float | None) -> torch.Tensor:
    """Half the mean loss of the positives plus half that of the negatives (:func:`balanced_terms`)."""
    return sum(balanced_terms(losses, positive, negative, hard_ratio)) / 2


def score_terms(logits: torch.Tensor, labels: torch.Tensor, hard_ratio: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Three-branch ``L_score`` per class (object, background anchors; ``L_score`` is their mean):
    logits ``(B, k, 2, 17, 17)`` (background, object), labels ``(B, k, 17, 17)``."""
    losses = F.cross_entropy(logits.movedim(2, -1).reshape(-1, 2), labels.clamp_min(0).flatten(),
                             reduction="none").view_as(labels)
    return balanced_terms(losses, labels == 1, labels == 0, hard_ratio)


def similarity_terms(logits: torch.Tensor, positive: torch.Tensor,
                     hard_ratio: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-branch ``L_sim`` per class (object, background RoWs; ``L_sim`` is their mean): logits
    ``(B, 1, 17, 17)`` against ``(B, 17, 17)`` bool labels."""
    losses = F.binary_cross_entropy_with_logits(logits[:, 0], positive.float(), reduction="none")
    return balanced_terms(losses, positive, ~positive, hard_ratio)


def box_loss(deltas: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``L_box``: smooth L1 of predicted ``(B, k, 4, 17, 17)`` against target ``(B, k, 17, 17, 4)``
    deltas, summed over the 4 coordinates, averaged over the positive anchors (0 without one:
    a batch of negative pairs)."""
    positive = labels == 1
    if not bool(positive.any()):
        return deltas.sum() * 0
    # beta 1/9: Faster R-CNN's RPN (sigma 3); at beta 1 the small deltas of good anchors see an L2 loss.
    errors = F.smooth_l1_loss(deltas.movedim(2, -1)[positive], targets[positive], reduction="none", beta=1 / 9)
    return errors.sum(-1).mean()


def mask_targets(search_masks: torch.Tensor, rows: torch.Tensor, size: int) -> torch.Tensor:
    """Each RoW's window of the ground truth: ``(B, 1, 255, 255)`` masks in ``[0, 1]`` and ``(N, 3)``
    rows -> ``(N, size, size)`` in ``{-1, +1}``, on the grid of the predicted masks."""
    coords = row_coordinates(search_masks.device)
    centers = torch.stack([coords[rows[:, 2]], coords[rows[:, 1]]], dim=1)
    sides = search_masks.new_full((len(rows),), float(EXEMPLAR_SIZE))
    windows = square_crop(search_masks[rows[:, 0]], centers, sides, size)[:, 0]
    return torch.where(windows > 0.5, 1.0, -1.0)


def mask_pixel_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N, S, S)`` logits and ``{-1, +1}`` targets -> ``(N, S, S)`` ``log(1 + exp(-c m))``; ``L_mask`` is the mean."""
    return F.softplus(-targets * logits)
