"""Reading features at boxes and points, pasting region masks back, and non-maximum suppression.

Every read goes through the library's one bilinear sampler,
:func:`mast.ops.window_sample`, with a window of one sample: the centres passed
to it are the points to read. Region pooling is RoIAlign's idea [Mask R-CNN]
with one sample per bin: bin ``(i, j)`` of a ``size x size`` grid over a box
``(cx, cy, w, h)`` reads the image point ``(cx - w/2 + (j + 1/2) w / size,
cy - h/2 + (i + 1/2) h / size)``, on a level of stride ``s`` at that point
divided by ``s`` (:mod:`.fpn`). Boxes are ``(cx, cy, w, h)`` in image pixels,
as :mod:`mast.models.siammask.geometry`'s, a box spanning ``[cx - w/2, cx + w/2]``.
"""
from __future__ import annotations

import math

import torch

from mast.models.siammask.geometry import box_iou
from mast.ops.sampling import centers_dtype, window_sample


def sample_points(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``features`` ``(C, H, W)`` read bilinearly at ``points`` ``(..., 2)`` ``(x, y)`` feature coordinates
    -> ``(..., C)`` (zero outside the map)."""
    shape = points.shape[:-1]
    # Half-precision features keep float32 coordinates (mast.ops.sampling.centers_dtype).
    centers = points.reshape(1, -1, 1, 2).permute(0, 3, 1, 2).to(centers_dtype(features.dtype))  # (1, 2, N, 1)
    samples, _ = window_sample(features[None], centers, 1)  # (1, C, 1, N, 1)
    return samples[0, :, 0, :, 0].t().reshape(*shape, features.shape[0])


def bin_points(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 4)`` boxes -> ``(N, size, size, 2)``: the image ``(x, y)`` of every bin centre (module docstring)."""
    steps = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size  # (size,)
    low = boxes[:, :2] - boxes[:, 2:] / 2
    xs = low[:, 0:1] + steps.view(1, -1) * boxes[:, 2:3]  # (N, size)
    ys = low[:, 1:2] + steps.view(1, -1) * boxes[:, 3:4]
    return torch.stack([xs[:, None, :].expand(-1, size, -1), ys[:, :, None].expand(-1, -1, size)], dim=-1)


def pool_regions(level: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, stride: float,
                 size: int) -> torch.Tensor:
    """``size x size`` bins of every box on one level: ``level`` ``(B, C, H, W)``, ``boxes`` ``(N, 4)``
    in image pixels, ``batch_index`` ``(N,)`` the image of each -> ``(N, C, size, size)``.
    Differentiable with respect to ``level``."""
    out = level.new_zeros(len(boxes), level.shape[1], size, size)
    points = bin_points(boxes.to(centers_dtype(level.dtype)), size) / stride
    for b in torch.unique(batch_index).tolist():
        chosen = batch_index == b
        out[chosen] = sample_points(level[b], points[chosen]).permute(0, 3, 1, 2)
    return out


def paste_box_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Region masks ``(N, M, M)`` (bin grid of :func:`bin_points` over ``boxes`` ``(N, 4)``) back into a
    ``(N, height, width)`` frame, bilinearly: the pixels whose centres lie in a box read its mask
    (beyond the outer bin centres, the edge bins' values), the others are zero."""
    out = masks.new_zeros(len(masks), height, width)
    size = masks.shape[-1]
    for n, (mask, box) in enumerate(zip(masks, boxes.tolist())):
        cx, cy, w, h = box
        x0, x1 = max(0, math.ceil(cx - w / 2)), min(width, math.ceil(cx + w / 2))
        y0, y1 = max(0, math.ceil(cy - h / 2)), min(height, math.ceil(cy + h / 2))
        if x1 <= x0 or y1 <= y0:
            continue
        xs = (torch.arange(x0, x1, device=masks.device, dtype=masks.dtype) - (cx - w / 2)) * size / w - 0.5
        ys = (torch.arange(y0, y1, device=masks.device, dtype=masks.dtype) - (cy - h / 2)) * size / h - 0.5
        xs, ys = xs.clamp(0, size - 1), ys.clamp(0, size - 1)
        grid = torch.stack([xs.view(1, -1).expand(len(ys), -1), ys.view(-1, 1).expand(-1, len(xs))], dim=-1)
        out[n, y0:y1, x0:x1] = sample_points(mask[None], grid)[..., 0]
    return out


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, keep: int) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of at most ``keep`` of ``boxes`` ``(N, 4)``, best
    ``scores`` first, none overlapping an earlier kept one by more than ``iou``."""
    order = scores.argsort(descending=True)
    kept: list[int] = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for index in order.tolist():
        if suppressed[index]:
            continue
        kept.append(index)
        if len(kept) == keep:
            break
        suppressed |= box_iou(boxes, boxes[index].view(1, 4)) > iou
    return torch.tensor(kept, dtype=torch.long, device=boxes.device)
