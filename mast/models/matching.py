"""Nearest-neighbour matching to a labelled frame ([VideoMatch]; [FEELVOS]'s global matching).

Each pixel of a frame is compared with every foreground and every background
pixel of a template frame whose mask is known; its best similarity to each side
is a strong, training-free segmentation cue when the features are those of a
self-supervised correspondence backbone (docs/baselines.md §7.3). RANet and
SiamMask feed it to their decoders and start their logits from it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Template pixels correlated at once: bounds the ``(B, CHUNK, h*w)`` product.
CHUNK = 1024


def nearest_correlation(template: torch.Tensor, foreground: torch.Tensor, current: torch.Tensor,
                        chunk: int = CHUNK) -> torch.Tensor:
    """Each current pixel's best correlation with the template's foreground and background pixels.

    Args:
        template: ``(B, N, C)`` template embeddings.
        foreground: ``(B, N)`` bool, the template mask.
        current: ``(B, C, h, w)`` embeddings of the current frame.

    Returns:
        ``(B, 2, h, w)``: channel 0 the best foreground correlation, channel 1 the best
        background one; -1 (the lowest cosine) where a side has no pixel. Differentiable
        (through each maximum's pixel); ``chunk`` template pixels at a time bound the
        ``(chunk, h*w)`` product.
    """
    flat = current.flatten(2)
    best = flat.new_full((flat.shape[0], 2, flat.shape[2]), -1.0)
    for start in range(0, template.shape[1], chunk):
        similarity = torch.bmm(template[:, start:start + chunk], flat)  # (B, n, h*w)
        side = foreground[:, start:start + chunk, None]
        sides = [similarity.masked_fill(~side, -1.0).amax(dim=1), similarity.masked_fill(side, -1.0).amax(dim=1)]
        best = torch.maximum(best, torch.stack(sides, dim=1))
    return best.unflatten(2, current.shape[-2:])


def cell_coverage(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w)``: the share of each feature cell covered by ``mask`` (``(B, H, W)`` in [0, 1])."""
    return F.adaptive_avg_pool2d(mask[:, None].float(), size)[:, 0]


def feature_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w)`` bool: feature cells at least half covered by ``mask`` (``(B, H, W)`` in [0, 1])."""
    return cell_coverage(mask, size) >= 0.5
