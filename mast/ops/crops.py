"""``square_crop``: resampled square crops, through the library's bilinear sampler.

The Siamese trackers (SiamFC, SiamRPN, SiamMask; docs/baselines.md) read an
exemplar and a search region as squares around the target, resized to a fixed
side and padded with the image mean where they leave the frame. A crop is a
``window_sample`` of a single centre with a fractional spacing, so training
and tracking crop with the same operator (and the same kernels) as the
reconstruction engine.
"""
from __future__ import annotations

import torch

from mast.ops._validation import check_tensor, check_window
from mast.ops.sampling import window_sample


def square_crop(
    images: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor, size: int, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Crops a ``sides[b]``-pixel square around ``centers[b]`` of every image, resized to ``size x size``.

    Args:
        images: ``(B, C, H, W)``.
        centers: ``(B, 2)`` ``(x, y)`` centre of each crop, in pixel coordinates (pixel ``i`` at ``i``).
        sides: ``(B,)`` side of each crop in image pixels (``> 0``).
        size: odd output side ``S`` (127 and 255 for SiamMask's exemplar and search).
        fill: ``(B, C)`` value outside the image (SiamMask: the image's mean colour); default 0.

    Returns:
        ``(B, C, S, S)``: output pixel ``(i, j)`` samples the image bilinearly at
        ``centers + ((j, i) - (S - 1) / 2) * sides / S``, so the crop covers
        exactly ``sides`` pixels; outside the image it blends into ``fill``.
    """
    check_tensor("images", images, 4, "(B, C, H, W)")
    batch, channels = images.shape[:2]
    if centers.shape != (batch, 2):
        raise ValueError(f"centers must have shape ({batch}, 2) holding (x, y); got {tuple(centers.shape)}")
    if sides.shape != (batch,) or not bool((sides > 0).all()):
        raise ValueError(f"sides must be ({batch},) positive crop sides in pixels; got {sides.tolist()}")
    check_window(size)
    if fill is None:
        fill = images.new_zeros(batch, channels)
    if fill.shape != (batch, channels):
        raise ValueError(f"fill must have shape ({batch}, {channels}); got {tuple(fill.shape)}")
    fill = fill.to(images.dtype).view(batch, channels, 1, 1)
    # window_sample pads with zeros: sampling (image - fill) and adding fill back pads with fill.
    shifted = images - fill
    crops = [
        window_sample(shifted[b:b + 1], centers[b].view(1, 2, 1, 1).to(images.dtype), size,
                      float(sides[b]) / size)[0].view(1, channels, size, size)
        for b in range(batch)
    ]
    return torch.cat(crops) + fill
