"""Crop geometry, anchors and boxes of the Siamese trackers (docs/baselines.md §7.2).

Coordinates are pixels with pixel ``i`` at ``i`` (as :func:`mast.ops.crops.square_crop`).
Boxes are ``(cx, cy, w, h)``; a box of a mask spans whole pixels, so a mask whose
pixels run from column ``x0`` to ``x1`` has ``w = x1 - x0 + 1`` and ``cx = (x0 + x1) / 2``.

A search crop of side ``S = 255`` goes through a backbone of output stride 8 to
``32 x 32`` features; the exemplar (``127``) gives ``16 x 16``; their depth-wise
correlation is the ``17 x 17`` grid of responses of candidate windows (RoWs).
RoW ``(i, j)`` compares the exemplar with the 127-pixel window of the search crop
centred at ``(127 + 8 (j - 8), 127 + 8 (i - 8))``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

EXEMPLAR_SIZE = 127
SEARCH_SIZE = 255
STRIDE = 8
#: RoWs per side: the positions of the exemplar's features inside the search crop's.
RESPONSE_SIZE = (SEARCH_SIZE - EXEMPLAR_SIZE) // STRIDE + 1
#: The exemplar's feature side (``ceil(127 / 8)``), also a RoW's window in layer-3 features.
EXEMPLAR_FEATURES = math.ceil(EXEMPLAR_SIZE / STRIDE)


def exemplar_side(width: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
    """The context rule [Carlier]: ``p = (w + h) / 2``, ``s = sqrt((w + p) (h + p))`` (image pixels)."""
    context = (width + height) / 2
    return torch.sqrt((width + context) * (height + context))


def search_side(width: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
    """The search square around a ``w x h`` target: the exemplar's, ``255 / 127`` times larger,
    so that the target has the same size in both crops."""
    return exemplar_side(width, height) * (SEARCH_SIZE / EXEMPLAR_SIZE)


def row_coordinates(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(17,)``: the search-crop coordinate of each RoW's window centre along one axis."""
    offsets = torch.arange(RESPONSE_SIZE, dtype=torch.float32, device=device) - (RESPONSE_SIZE - 1) / 2
    return (SEARCH_SIZE - 1) / 2 + STRIDE * offsets


def unravel_rows(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices into flattened ``(K, 17, 17)`` maps (``K`` anchors or scales) -> ``(k, i, j)``."""
    return flat // RESPONSE_SIZE**2, flat // RESPONSE_SIZE % RESPONSE_SIZE, flat % RESPONSE_SIZE


def make_anchors(ratios: tuple[float, ...], scale: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """SiamRPN's anchors [SiamRPN]: ``k = len(ratios)`` boxes of area ``(8 scale)^2`` and
    ``h / w = ratio`` at every RoW centre.

    Returns:
        ``(k, 17, 17, 4)`` ``(cx, cy, w, h)`` in search-crop pixels.
    """
    area = (STRIDE * scale) ** 2
    sizes = torch.tensor([[math.sqrt(area / r), math.sqrt(area / r) * r] for r in ratios], device=device)
    coords = row_coordinates(device)
    k, n = len(ratios), RESPONSE_SIZE
    cx = coords.view(1, 1, n).expand(k, n, n)
    cy = coords.view(1, n, 1).expand(k, n, n)
    return torch.stack([cx, cy, sizes[:, 0].view(k, 1, 1).expand(k, n, n),
                        sizes[:, 1].view(k, 1, 1).expand(k, n, n)], dim=-1)


def box_iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """IoU of ``(..., 4)`` ``(cx, cy, w, h)`` boxes (broadcast) -> ``(...)``."""
    low = torch.maximum(first[..., :2] - first[..., 2:] / 2, second[..., :2] - second[..., 2:] / 2)
    high = torch.minimum(first[..., :2] + first[..., 2:] / 2, second[..., :2] + second[..., 2:] / 2)
    inter = (high - low).clamp_min(0).prod(-1)
    union = first[..., 2:].prod(-1) + second[..., 2:].prod(-1) - inter
    return inter / union.clamp_min(1e-12)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Box targets relative to anchors [SiamRPN]: ``((gx - ax) / aw, (gy - ay) / ah, log(gw / aw), log(gh / ah))``."""
    return torch.cat([(boxes[..., :2] - anchors[..., :2]) / anchors[..., 2:],
                      torch.log(boxes[..., 2:] / anchors[..., 2:])], dim=-1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`encode_boxes`."""
    return torch.cat([anchors[..., :2] + deltas[..., :2] * anchors[..., 2:],
                      anchors[..., 2:] * torch.exp(deltas[..., 2:])], dim=-1)


def minmax_box(mask: torch.Tensor) -> torch.Tensor | None:
    """The axis-aligned box ``(4,)`` ``(cx, cy, w, h)`` of the ``(H, W)`` bool ``mask`` (Min-max), None if empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if xs.numel() == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0 + 1, y1 - y0 + 1]).float()


def rotated_box(mask: torch.Tensor) -> tuple[float, float, float, float, float] | None:
    """The minimum-area rotated rectangle (MBR, [SiamMask] Fig. 3) of the ``(H, W)`` bool ``mask``.

    Returns:
        ``(cx, cy, w, h, angle)``, the angle in degrees in ``[-45, 45)`` (``w`` the side
        nearer the x axis, image y pointing down), sides spanning whole pixels as in
        :func:`minmax_box`; None if the mask is empty.
    """
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if xs.numel() == 0:
        return None
    points = torch.stack([xs, ys], dim=1).numpy().astype(np.float32)
    (cx, cy), (w, h), angle = cv2.minAreaRect(points)
    # cv2's angle convention differs between versions; fold it into [-45, 45).
    while angle >= 45:
        angle, w, h = angle - 90, h, w
    while angle < -45:
        angle, w, h = angle + 90, h, w
    # minAreaRect fits pixel centres; a pixel is one unit wide.
    return float(cx), float(cy), float(w) + 1, float(h) + 1, float(angle)


def mask_box(mask: torch.Tensor, method: str) -> torch.Tensor | None:
    """The tracking box ``(4,)`` ``(cx, cy, w, h)`` of a mask: ``minmax`` (axis-aligned) or
    ``rotated`` (the centre and sides of :func:`rotated_box`, tighter on rotated objects)."""
    if method == "minmax":
        return minmax_box(mask)
    found = rotated_box(mask)
    return None if found is None else torch.tensor(found[:4])
