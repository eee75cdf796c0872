"""``roi_correlation``: query features against a sampled window of keys, fused.

MAST's fine ROI stage (docs/algorithm.md §3) scores each query pixel against
``P x P`` keys bilinearly sampled around a predicted centre. Composed from
``window_sample`` it builds ``(B, C, P^2, H, W)`` key windows only to reduce
them over ``C`` at once; the fused kernel reads the four corner keys and
writes the ``(B, P^2, H, W)`` scores directly.
"""
from __future__ import annotations

import torch

from mast.ops import _extension
from mast.ops._validation import check_same_device, check_spacing, check_tensor, check_window
from mast.ops.reference import roi_scores
from mast.ops.sampling import centers_dtype, window_sample


def has_fused_roi_correlation(device: torch.device | str) -> bool:
    """True when :func:`roi_correlation` runs a fused kernel on ``device``
    (otherwise it builds the key windows with :func:`window_sample`)."""
    return _extension.has_kernel(torch.device(device).type, "roi_correlation")


def roi_correlation(
    query: torch.Tensor, key: torch.Tensor, centers: torch.Tensor, window: int, spacing: float = 1.0
) -> torch.Tensor:
    """Correlates every query feature with a window of keys sampled around a real-valued centre.

    Args:
        query: ``(B, C, H, W)`` features of the frame being reconstructed.
        key: ``(B, C, Hs, Ws)`` features of a reference frame.
        centers: ``(B, 2, H, W)``; per query pixel, the ``(x, y)`` window centre in ``key``.
        window: odd side ``P`` of the sampling grid.
        spacing: grid step in pixels (``> 0``, may be fractional).

    Returns:
        ``(B, P*P, H, W)`` scores: channel ``p = (dy + r) * P + (dx + r)`` holds
        ``<query[:, :, y, x], key bilinearly read at centre + (dx, dy) * spacing>``;
        ``-inf`` where that point lies outside ``[0, Ws-1] x [0, Hs-1]``. Equal to
        ``einsum(query, window_sample(key, centers)[0])`` masked by the validity.

    Differentiable w.r.t. ``query``, ``key`` and ``centers``.
    """
    check_tensor("query", query, 4, "(B, C, H, W)")
    check_tensor("key", key, 4, "(B, C, Hs, Ws)")
    check_tensor("centers", centers, 4, "(B, 2, H, W)")
    check_same_device(("query", "key"), query, key)
    check_same_device(("query", "centers"), query, centers)
    batch, channels, height, width = query.shape
    if key.shape[:2] != (batch, channels):
        raise ValueError(f"key must have shape (B, C, Hs, Ws) = ({batch}, {channels}, Hs, Ws) "
                         f"to match query {tuple(query.shape)}; got {tuple(key.shape)}")
    if tuple(centers.shape) != (batch, 2, height, width):
        raise ValueError(f"centers must have shape (B, 2, H, W) = ({batch}, 2, {height}, {width}) "
                         f"holding (x, y); got {tuple(centers.shape)}")
    check_window(window)
    spacing = check_spacing(spacing)
    dtype = torch.promote_types(query.dtype, key.dtype)
    query, key = query.to(dtype), key.to(dtype)
    if has_fused_roi_correlation(query.device):
        return torch.ops.mast.roi_correlation(query, key, centers.to(dtype), window, spacing)
    # Composed from window_sample, compiled or not, as the reference composes it.
    return roi_scores(query, *window_sample(key, centers.to(centers_dtype(dtype)), window, spacing))
