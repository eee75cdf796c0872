"""Clip-consistent augmentation: random resized crop, horizontal flip, 90-degree rotations.

By default one set of parameters is drawn per clip and applied to all of its
frames, so the correspondences between frames (what the model learns from)
are preserved; ``per_frame=True`` draws them for each frame independently.
Pure torch; frames are ``(T, 3, H, W)`` float tensors of any resolution, and
the output is always ``(T, 3, *output_size)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """One draw of :class:`ClipAugment`: the crop box (pixels of the input),
    whether to mirror left-right, and how many quarter turns (counter-clockwise)."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False
    quarter_turns: int = 0


@dataclass(frozen=True)
class ClipAugment:
    """Random resized crop to ``output_size``, then flip, then rotation.

    Attributes:
        output_size: ``(height, width)`` of every output frame.
        scale: range of the crop's area as a fraction of the frame's area.
        ratio: range of the crop's aspect ratio relative to the output's
            (``(1, 1)`` never distorts; drawn log-uniformly).
        hflip_prob: probability of a left-right mirror.
        rotate90: also rotate by a random multiple of 90 degrees (the crop is
            taken with the transposed size first, so the output size holds).
        per_frame: draw the parameters for every frame instead of once per clip.

    A crop is resized with bilinear interpolation (antialiased, so large
    frames such as 1280x720 shrink without aliasing); frames smaller than
    the output are upsampled, so mixed input resolutions all come out at
    ``output_size``.
    """

    output_size: tuple[int, int] = (256, 256)
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_prob: float = 0.5
    rotate90: bool = False
    per_frame: bool = False

    def __post_init__(self) -> None:
        if len(self.output_size) != 2 or min(self.output_size) < 1:
            raise ValueError(f"output_size must be (height, width) >= 1, got {self.output_size}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0 <= self.hflip_prob <= 1:
            raise ValueError(f"hflip_prob must lie in [0, 1], got {self.hflip_prob}")

    def __call__(
        self, frames: torch.Tensor, generator: torch.Generator | None = None, masks: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(T, 3, H, W)`` -> ``(T, 3, *output_size)``; with ``masks`` ``(T, H, W)``
        (object ids, transformed alike with nearest-neighbour resizing) returns both."""
        if frames.ndim != 4:
            raise ValueError(f"frames must be (T, C, H, W), got {tuple(frames.shape)}")
        height, width = frames.shape[-2:]
        split = (lambda clip: clip.split(1)) if self.per_frame else (lambda clip: [clip])
        draws = [self.sample_params(height, width, generator) for _ in split(frames)]
        out = torch.cat([self.apply(group, params) for group, params in zip(split(frames), draws)])
        if masks is None:
            return out
        labels = masks[:, None].float()
        out_masks = torch.cat([self.apply(group, params, nearest=True) for group, params in zip(split(labels), draws)])
        return out, out_masks[:, 0].long()

    def sample_params(self, height: int, width: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draws crop, flip and rotation for a ``height x width`` input."""
        quarter_turns = int(torch.randint(0, 4, (), generator=generator)) if self.rotate90 else 0
        out_height, out_width = self._crop_output_size(quarter_turns)
        top, left, crop_height, crop_width = self._sample_box(height, width, out_width / out_height, generator)
        flip = bool(torch.rand((), generator=generator) < self.hflip_prob)
        return AugmentParams(top, left, crop_height, crop_width, flip, quarter_turns)

    def apply(self, frames: torch.Tensor, params: AugmentParams, nearest: bool = False) -> torch.Tensor:
        """Applies one draw to all frames: ``(T, C, H, W)`` -> ``(T, C, *output_size)``
        (``nearest`` for label maps, which must not be blended)."""
        crop = frames[..., params.top : params.top + params.height, params.left : params.left + params.width]
        size = self._crop_output_size(params.quarter_turns)
        if tuple(crop.shape[-2:]) != size:
            resize = dict(mode="nearest-exact") if nearest else dict(mode="bilinear", align_corners=False, antialias=True)
            crop = F.interpolate(crop, size=size, **resize)
        if params.flip:
            crop = crop.flip(-1)
        if params.quarter_turns:
            crop = torch.rot90(crop, params.quarter_turns, dims=(-2, -1))
        return crop.contiguous()

    def _crop_output_size(self, quarter_turns: int) -> tuple[int, int]:
        """Size to resize the crop to: transposed when an odd rotation follows."""
        height, width = self.output_size
        return (width, height) if quarter_turns % 2 else (height, width)

    def _sample_box(
        self, height: int, width: int, target_aspect: float, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a crop with the configured area and aspect ranges."""
        area = height * width
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            fraction = _uniform(*self.scale, generator)
            aspect = target_aspect * math.exp(_uniform(log_low, log_high, generator))
            crop_width = round(math.sqrt(fraction * area * aspect))
            crop_height = round(math.sqrt(fraction * area / aspect))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                top = int(torch.randint(0, height - crop_height + 1, (), generator=generator))
                left = int(torch.randint(0, width - crop_width + 1, (), generator=generator))
                return top, left, crop_height, crop_width
        return _central_box(height, width, target_aspect)


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _central_box(height: int, width: int, aspect: float) -> tuple[int, int, int, int]:
    """The largest centred crop of aspect ``aspect`` (width / height): the fallback when
    no drawn box fits (very elongated frames)."""
    if width / height > aspect:
        crop_height, crop_width = height, max(1, round(height * aspect))
    else:
        crop_height, crop_width = max(1, round(width / aspect)), width
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width
