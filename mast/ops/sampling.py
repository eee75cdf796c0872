"""``window_sample``: bilinear sampling of a window around real-valued centres."""
from __future__ import annotations

import torch

from mast.ops import _extension
from mast.ops._validation import check_same_device, check_spacing, check_tensor, check_window
from mast.ops.reference import window_sample_reference


def centers_dtype(source_dtype: torch.dtype) -> torch.dtype:
    """Coordinates stay in float32 for half-precision sources: float16 cannot
    even tell pixel 1000.0 from 1000.5, bfloat16 not 200 from 201."""
    return torch.float32 if source_dtype in (torch.float16, torch.bfloat16) else source_dtype


def window_sample(
    source: torch.Tensor, centers: torch.Tensor, window: int, spacing: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples a ``window x window`` grid of ``source`` around each centre, bilinearly.

    Args:
        source: ``(B, C, Hs, Ws)`` features or values to read.
        centers: ``(B, 2, H, W)``; ``(x, y)`` pixel coordinates in ``source``
            (pixel ``i`` at coordinate ``i``), one centre per output pixel.
        window: odd side ``P`` of the sampling grid.
        spacing: grid step in pixels (``> 0``, may be fractional).

    Returns:
        ``(samples, valid)``: ``samples`` is ``(B, C, P*P, H, W)``, sample
        ``p = (dy + r) * P + (dx + r)`` read at ``(x + dx*spacing, y + dy*spacing)``
        with zero padding outside the source; ``valid`` is ``(B, P*P, H, W)``
        bool, true where the sample point lies in ``[0, Ws-1] x [0, Hs-1]``.

    Differentiable w.r.t. ``source`` and ``centers`` (exact bilinear gradients).
    """
    check_tensor("source", source, 4, "(B, C, Hs, Ws)")
    check_tensor("centers", centers, 4, "(B, 2, H, W)")
    check_same_device(("source", "centers"), source, centers)
    if centers.shape[1] != 2:
        raise ValueError(f"centers must have shape (B, 2, H, W) holding (x, y); got {tuple(centers.shape)}")
    if centers.shape[0] != source.shape[0]:
        raise ValueError(
            f"centers batch {centers.shape[0]} does not match source batch {source.shape[0]}; "
            "expected centers (B, 2, H, W) for source (B, C, Hs, Ws)"
        )
    check_window(window)
    spacing = check_spacing(spacing)
    source = source.contiguous()
    centers = centers.to(centers_dtype(source.dtype)).contiguous()
    if _extension.has_kernel(source.device.type, "window_sample"):
        return torch.ops.mast.window_sample(source, centers, window, spacing)
    _extension.warn_fallback_once(source.device)
    samples, valid = window_sample_reference(source, centers, window, spacing)
    return samples.to(source.dtype), valid
