"""Pure-PyTorch reference implementations of the mast operators.

They are the ground truth the compiled kernels are tested against, and the
implementation that runs when the extension is not available. They favour
being obviously correct over being fast; autograd differentiates them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def window_offsets(window: int, step: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets of a ``window x window`` grid in row-major order (dy outer, dx inner).

    Returns:
        ``(dy, dx)``, each of shape ``(window*window,)``, in units of ``step``
        pixels, with the dtype and device of ``like``.
    """
    radius = window // 2
    steps = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype) * step
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return dy.reshape(-1), dx.reshape(-1)


def local_correlation_valid_mask(
    height: int, width: int, window: int, dilation: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Which offsets of :func:`local_correlation` land inside the key map.

    Returns:
        Bool tensor ``(window*window, height, width)``.
    """
    radius = window // 2
    steps = torch.arange(-radius, radius + 1, device=device) * dilation
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    row_ok = ((ys[None, :] + steps[:, None]) >= 0) & ((ys[None, :] + steps[:, None]) < height)
    col_ok = ((xs[None, :] + steps[:, None]) >= 0) & ((xs[None, :] + steps[:, None]) < width)
    # (dy, 1, H, 1) & (1, dx, 1, W) -> (dy, dx, H, W)
    valid = row_ok[:, None, :, None] & col_ok[None, :, None, :]
    return valid.reshape(window * window, height, width)


def local_correlation_reference(
    query: torch.Tensor, key: torch.Tensor, window: int, dilation: int = 1
) -> torch.Tensor:
    """Dot products of each query feature with the key features around it.

    Args:
        query: ``(B, C, H, W)``.
        key: ``(B, C, H, W)``.
        window: odd side ``P = 2r + 1`` of the square window of offsets.
        dilation: spacing, in pixels, between neighbouring offsets.

    Returns:
        ``(B, P*P, H, W)``; entry ``p = (dy + r) * P + (dx + r)`` holds
        ``<query[:, :, y, x], key[:, :, y + dy*dilation, x + dx*dilation]>``,
        and ``-inf`` where that key position lies outside the map.
    """
    height, width = query.shape[-2:]
    pad = (window // 2) * dilation
    key_padded = F.pad(key, (pad, pad, pad, pad))
    radius = window // 2
    scores = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            top, left = pad + dy * dilation, pad + dx * dilation
            shifted = key_padded[:, :, top : top + height, left : left + width]
            scores.append((query * shifted).sum(dim=1))
    out = torch.stack(scores, dim=1)
    valid = local_correlation_valid_mask(height, width, window, dilation, query.device)
    return out.masked_fill(~valid, float("-inf"))


def window_sample_reference(
    source: torch.Tensor, centers: torch.Tensor, window: int, spacing: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly samples a ``window x window`` grid of ``source`` around each centre.

    Args:
        source: ``(B, C, Hs, Ws)`` features or values.
        centers: ``(B, 2, H, W)``; ``(x, y)`` pixel coordinates in ``source``
            (pixel ``i`` sits at coordinate ``i``).
        window: odd side ``P`` of the sampling grid.
        spacing: grid step in pixels (may be fractional).

    Returns:
        ``(samples, valid)``: samples ``(B, C, P*P, H, W)``, zero-padded outside
        the source, and valid ``(B, P*P, H, W)`` (bool), true where the sample
        point lies inside ``[0, Ws-1] x [0, Hs-1]``.
    """
    batch, channels, src_h, src_w = source.shape
    height, width = centers.shape[-2:]
    dy, dx = window_offsets(window, spacing, centers)
    sample_x = centers[:, 0:1] + dx.view(1, -1, 1, 1)  # (B, P*P, H, W)
    sample_y = centers[:, 1:2] + dy.view(1, -1, 1, 1)
    finite = torch.isfinite(sample_x) & torch.isfinite(sample_y)
    # Park non-finite points far outside so they read only zero padding.
    sample_x = torch.where(finite, sample_x, torch.full_like(sample_x, -2.0))
    sample_y = torch.where(finite, sample_y, torch.full_like(sample_y, -2.0))
    valid = finite & (sample_x >= 0) & (sample_x <= src_w - 1) & (sample_y >= 0) & (sample_y <= src_h - 1)

    x0 = sample_x.detach().floor()
    y0 = sample_y.detach().floor()
    weight_x1, weight_y1 = sample_x - x0, sample_y - y0
    corners = (
        (y0, x0, (1 - weight_y1) * (1 - weight_x1)),
        (y0, x0 + 1, (1 - weight_y1) * weight_x1),
        (y0 + 1, x0, weight_y1 * (1 - weight_x1)),
        (y0 + 1, x0 + 1, weight_y1 * weight_x1),
    )
    flat_source = source.reshape(batch, channels, src_h * src_w)
    samples = source.new_zeros(batch, channels, window * window, height, width)
    for corner_y, corner_x, weight in corners:
        inside = (corner_x >= 0) & (corner_x < src_w) & (corner_y >= 0) & (corner_y < src_h)
        index = corner_y.clamp(0, src_h - 1) * src_w + corner_x.clamp(0, src_w - 1)
        index = index.long().reshape(batch, 1, -1).expand(-1, channels, -1)
        gathered = flat_source.gather(2, index).reshape(samples.shape)
        samples = samples + gathered * (weight * inside).unsqueeze(1)
    return samples, valid


def roi_scores(query: torch.Tensor, samples: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Dot products of each query feature with its sampled window of keys.

    Args:
        query: ``(B, C, H, W)``.
        samples: ``(B, C, P*P, H, W)`` key windows, as :func:`window_sample_reference` gives them.
        valid: ``(B, P*P, H, W)`` bool, where the sample points lie inside the key map.

    Returns:
        ``(B, P*P, H, W)``: ``<query, samples>`` per offset, ``-inf`` where not valid.
    """
    scores = torch.einsum("bchw,bcphw->bphw", query, samples)
    return scores.masked_fill(~valid, float("-inf"))


def roi_correlation_reference(
    query: torch.Tensor, key: torch.Tensor, centers: torch.Tensor, window: int, spacing: float = 1.0
) -> torch.Tensor:
    """Dot products of each query feature with a bilinearly sampled window of keys.

    Args:
        query: ``(B, C, H, W)``.
        key: ``(B, C, Hs, Ws)``.
        centers: ``(B, 2, H, W)``; ``(x, y)`` window centre in ``key`` per query pixel.
        window: odd side ``P`` of the sampling grid; spacing: its step in pixels.

    Returns:
        ``(B, P*P, H, W)``: ``<query, window_sample(key)>`` per offset, ``-inf``
        where the sample point lies outside the key map.
    """
    return roi_scores(query, *window_sample_reference(key, centers, window, spacing))
