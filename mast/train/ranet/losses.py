"""RANet's mask losses: binary cross-entropy and the soft IoU.

Both take logits and a target mask of one object per sample; the soft IoU is
[Thesis] Eq. 3.1-3.3, per object (per sample), without thresholding, so it is
differentiable everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: ``loss`` choices of a baseline config: one of the two, or their sum.
MASK_LOSSES = ("bce", "soft-iou", "both")


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Float16 logits (autocast) in float32, whose sums over a frame do not overflow; float64 kept."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - I / U`` per sample, averaged ([Thesis] Eq. 3.1-3.3).

    Args:
        logits: ``(B, H, W)`` pre-sigmoid outputs ``x_i``.
        target: ``(B, H, W)`` true mask ``M`` in ``[0, 1]``.

    Returns:
        A scalar: ``I = sum sig(x_i) M_i``, ``U = sum sig(x_i) + sum M_i - I``, over each sample's
        pixels. ``U >= sum sig(x_i) > 0``; it is floored at 1e-6 only where float underflow makes it 0.
        A sample with an empty target has ``L = 1`` whatever it predicts (no gradient): use
        ``both`` to learn from objects that leave the frame.
    """
    logits = _at_least_float32(logits)
    probabilities = torch.sigmoid(logits).flatten(1)
    target = target.to(logits.dtype).flatten(1)
    intersection = (probabilities * target).sum(dim=1)
    union = probabilities.sum(dim=1) + target.sum(dim=1) - intersection
    return (1 - intersection / union.clamp_min(1e-6)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` against ``target`` (both ``(B, H, W)``), averaged over pixels."""
    logits = _at_least_float32(logits)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


@torch.no_grad()
def class_balance(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the batch's two classes weigh (issue 26), for logging: ``positive_fraction`` (of the
    target's pixels), ``predicted_fraction`` (of the pixels with logit > 0), ``bce_positive`` and
    ``bce_negative`` (the BCE averaged over each class's pixels; 0 for a class without pixels).
    ``logits``, ``target``: ``(B, H, W)``."""
    logits = _at_least_float32(logits)
    target = target.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    positive = target > 0.5

    def mean_over(where: torch.Tensor) -> torch.Tensor:
        return (per_pixel * where).sum() / where.sum().clamp_min(1)
    return {"positive_fraction": positive.float().mean(), "predicted_fraction": (logits > 0).float().mean(),
            "bce_positive": mean_over(positive), "bce_negative": mean_over(~positive)}


def mask_losses(logits: torch.Tensor, target: torch.Tensor, choice: str) -> dict[str, torch.Tensor]:
    """``{"loss": the one ``choice`` names (``MASK_LOSSES``), "bce": ..., "soft_iou": ...}`` and the
    :func:`class_balance` entries; both components are returned for logging whichever is minimised."""
    if choice not in MASK_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(MASK_LOSSES)}, got {choice!r}")
    bce, iou = bce_loss(logits, target), soft_iou_loss(logits, target)
    total = {"bce": bce, "soft-iou": iou, "both": bce + iou}[choice]
    return {"loss": total, "bce": bce.detach(), "soft_iou": iou.detach(), **class_balance(logits, target)}
