"""Raw LAB pixels as features: the baseline that needs no training."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mast.common.colour import normalize_lab, rgb_to_lab


def lab_pixel_features(frames: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Normalised LAB averaged over ``stride x stride`` cells.

    Args:
        frames: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

    Returns:
        ``(B, 3, ceil(H/stride), ceil(W/stride))``.
    """
    return F.avg_pool2d(normalize_lab(rgb_to_lab(frames)), stride, ceil_mode=True)


def squared_distance_embedding(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and key embeddings whose dot product is ``-|q - k|^2`` up to a per-query constant.

    ``<[2q, 1], [k, -|k|^2]> = 2<q, k> - |k|^2 = -|q - k|^2 + |q|^2``, and the
    ``|q|^2`` term cancels in the softmax over keys. Raw dot products favour
    saturated colours over similar ones, which is wrong for pixels.

    Args:
        features: ``(B, C, h, w)``.

    Returns:
        ``(as_query, as_key)``, each ``(B, C + 1, h, w)``.
    """
    ones = torch.ones_like(features[:, :1])
    as_query = torch.cat((2 * features, ones), dim=1)
    as_key = torch.cat((features, -features.pow(2).sum(dim=1, keepdim=True)), dim=1)
    return as_query, as_key
