"""``local_correlation``: dot products of query features with a dilated window of keys."""
from __future__ import annotations

import torch

from mast.ops import _extension
from mast.ops._validation import check_dilation, check_same_device, check_tensor, check_window
from mast.ops.reference import local_correlation_reference

_LAYOUT = "(B, C, H, W)"


def local_correlation(query: torch.Tensor, key: torch.Tensor, window: int, dilation: int = 1) -> torch.Tensor:
    """Correlates every query feature with the key features in a window around it.

    Args:
        query: ``(B, C, H, W)`` features of the frame being reconstructed.
        key: ``(B, C, H, W)`` features of a reference frame.
        window: odd side ``P = 2r + 1`` of the window of offsets.
        dilation: spacing of the offsets in pixels (``>= 1``).

    Returns:
        ``(B, P*P, H, W)`` scores; channel ``p = (dy + r) * P + (dx + r)``
        (row-major, dy outer) holds ``<query[:, :, y, x], key[:, :, y + dy*dilation,
        x + dx*dilation]>``. Offsets falling outside the key map are ``-inf``,
        so a softmax over the window gives them exactly zero weight.

    Differentiable w.r.t. ``query`` and ``key``. Inputs of different floating
    dtypes are promoted to a common one; non-contiguous inputs are accepted.
    """
    check_tensor("query", query, 4, _LAYOUT)
    check_tensor("key", key, 4, _LAYOUT)
    check_same_device(("query", "key"), query, key)
    if query.shape != key.shape:
        raise ValueError(
            f"query and key must have the same shape (B, C, H, W); got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    check_window(window)
    check_dilation(dilation)
    dtype = torch.promote_types(query.dtype, key.dtype)
    query, key = query.to(dtype).contiguous(), key.to(dtype).contiguous()
    if _extension.has_kernel(query.device.type, "local_correlation"):
        return torch.ops.mast.local_correlation(query, key, window, dilation)
    _extension.warn_fallback_once(query.device)
    return local_correlation_reference(query, key, window, dilation)
