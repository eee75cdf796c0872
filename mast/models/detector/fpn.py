"""The feature pyramid [FPN] over the shared backbone's ``stages()``, and which level a box belongs to.

``ResNetBackbone(output_stride=8).stages()`` gives layer1..layer4 at strides 2,
4, 8 and 8. The pyramid has three levels at strides 4, 8 and 16, named by
``k = log2(stride)`` as in [FPN] (``P_2``, ``P_3``, ``P_4``): 1x1 lateral
convolutions on layer2, layer3 and layer4 (layer3 and layer4 share stride 8 and
are summed), a top-down path (nearest upsampling), a 3x3 output convolution per
level, and ``P_4`` subsampled from ``P_3`` as [FPN]'s ``P_6`` is from ``P_5``.
layer1 (stride 2) is left out, as Mask R-CNN leaves out ``C_1`` [Dave §3.1].

Cell ``(i, j)`` of a level of stride ``s`` is centred on image pixel
``(s j, s i)`` (each stride-2 convolution of the backbone centres output ``i``
on input ``2 i``), so image point ``x`` is feature coordinate ``x / s``.

Level of a box (Mask R-CNN's rule [FPN Eq. 1]): ``k = floor(k0 + log2(sqrt(w h) / 224))``
with ``k0 = 4``, clamped to the pyramid's ``2..4``. Our coarsest level has
stride 16 = 2^4, the stride of [FPN]'s ``P_4``, so the rule needs no change:
a 224-pixel box maps to stride 16, 112 to stride 8, 56 and smaller to stride 4,
and 448 and larger stay at stride 16. ``canonical_size`` (224) is a setting,
for frames processed far from their native scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: The pyramid's strides, finest first; level ``k = log2(stride)``.
STRIDES = (4, 8, 16)
#: ``k0`` of [FPN Eq. 1]: the level of a box of ``canonical_size`` pixels.
CANONICAL_LEVEL = 4


def box_levels(widths: torch.Tensor, heights: torch.Tensor, canonical_size: float = 224.0) -> torch.Tensor:
    """Pyramid index (0 for stride 4 .. 2 for stride 16) of boxes of ``widths x heights`` pixels (any
    shape, > 0): ``k = floor(4 + log2(sqrt(w h) / canonical_size))`` clamped to ``2..4``, minus 2."""
    finest = int(math.log2(STRIDES[0]))
    k = torch.floor(CANONICAL_LEVEL + torch.log2(torch.sqrt(widths * heights) / canonical_size))
    return (k.clamp(finest, finest + len(STRIDES) - 1) - finest).long()


def level_points(height: int, width: int, stride: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(2, height, width)``: the image ``(x, y)`` every cell of a level of ``stride`` is centred on."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride
    return torch.stack([xs.view(1, -1).expand(height, -1), ys.view(-1, 1).expand(-1, width)])


class FeaturePyramid(nn.Module):
    """``stages()`` (layer1..layer4 of widths ``widths``) -> ``[P_2, P_3, P_4]`` ``(B, channels, ., .)``
    at strides 4, 8, 16 (module docstring)."""

    def __init__(self, widths: tuple[int, int, int, int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(width, channels, 1) for width in widths[1:])
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(2))

    def forward(self, stages: list[torch.Tensor]) -> list[torch.Tensor]:
        _, layer2, layer3, layer4 = stages
        top = self.lateral[1](layer3) + self.lateral[2](layer4)  # both at stride 8
        fine = self.lateral[0](layer2) + F.interpolate(top, size=layer2.shape[-2:], mode="nearest")
        p2, p3 = self.output[0](fine), self.output[1](top)
        return [p2, p3, F.max_pool2d(p3, kernel_size=1, stride=2)]
