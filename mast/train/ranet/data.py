"""RANet's training samples: frames of one video with masks, and a perturbed previous mask.

A sample is drawn from the annotated frames of one video
(:func:`mast.data.annotated.draw_frames`, at most ``max_gap`` apart, in
temporal order): the template frame ``I_0`` and its object mask, the current
frame ``I_t`` and its mask (the target), and the previous mask ``M_{t-1}``:
the mask of the annotated frame between them (``frames: 3``) or the current
frame's own mask (``frames: 2``), randomly dilated or eroded and shifted, as
the imperfect masks the model gets from itself at inference [RANet]. One
object per sample, drawn uniformly among those of the (cropped) template.
No static images: every sample is a real video's frames.

All frames of a sample share one random crop (``scale``: its area fraction of
the largest crop of ``size``'s aspect) and flip, resized to ``size``
(bilinear for frames, nearest for masks), then rotated by up to ``rotate``
degrees about the centre (zeros enter). With ``independent`` [Thesis] §3.3's
augmentation: the template frame gets a crop and rotation of its own, the
previous and current frames share another (so ``M_{t-1}`` stays in the
current frame's coordinates, as at inference); the flip stays shared. Item ``i`` of a phase depends only
on ``(seed, phase, i)``; a sample that reads a damaged frame or mask is
replaced by another, counted in ``skipped_clips`` (:mod:`mast.data.samples`).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from mast.data.annotated import AnnotatedSamples, AnnotatedVideo, draw_frames
from mast.data.clips import item_generator
from mast.data.samples import Redraw
from mast.train.ranet.config import RANetDataConfig

#: Draws of one item before giving up (frames that do not decode, templates without an object).
MAX_DRAWS = 20


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _integer(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform in ``low..high`` inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _max_filter(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``(1, 1, H, W)``: the maximum over each pixel's ``(2 radius + 1)``-square (a dilation)."""
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def perturb_mask(mask: torch.Tensor, dilate: int, shift: int, generator: torch.Generator) -> torch.Tensor:
    """``mask`` ``(H, W)`` in {0, 1} dilated or eroded by ``0..dilate`` pixels (a square
    structuring element), then shifted by ``-shift..shift`` pixels in x and y (zeros enter)."""
    radius, erode = _integer(0, dilate, generator), bool(torch.rand((), generator=generator) < 0.5)
    out = mask.float()[None, None]
    if radius:
        out = 1 - _max_filter(1 - out, radius) if erode else _max_filter(out, radius)
    dx, dy = _integer(-shift, shift, generator), _integer(-shift, shift, generator)
    height, width = mask.shape
    pad = max(abs(dx), abs(dy))
    padded = F.pad(out, (pad, pad, pad, pad))
    return padded[0, 0, pad - dy:pad - dy + height, pad - dx:pad - dx + width]


def rotate(frames: torch.Tensor, ids: torch.Tensor, degrees: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``(N, 3, H, W)`` (bilinear) and ids ``(N, H, W)`` (nearest) rotated by ``degrees``
    counter-clockwise about the image centre; what enters from outside is 0 (black, background)."""
    angle = math.radians(degrees)
    height, width = frames.shape[-2:]
    # affine_grid works in [-1, 1] coordinates of each side: the aspect ratio enters the off-diagonal terms.
    matrix = torch.tensor([[math.cos(angle), -math.sin(angle) * height / width, 0.0],
                           [math.sin(angle) * width / height, math.cos(angle), 0.0]])
    grid = F.affine_grid(matrix.expand(len(frames), 2, 3), list(frames.shape), align_corners=False)
    turned = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(ids[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return turned, labels[:, 0].round().long()


def _crop_box(height: int, width: int, size: tuple[int, int], scale: tuple[float, float],
              generator: torch.Generator) -> tuple[int, int, int, int]:
    """``(top, left, crop height, crop width)``: a random crop of ``size``'s aspect."""
    aspect = size[1] / size[0]
    full_height = min(height, width / aspect)
    factor = _uniform(scale[0], scale[1], generator) ** 0.5
    crop_height = max(1, min(height, round(full_height * factor)))
    crop_width = max(1, min(width, round(full_height * factor * aspect)))
    top = _integer(0, height - crop_height, generator)
    left = _integer(0, width - crop_width, generator)
    return top, left, crop_height, crop_width


class RANetDataset(AnnotatedSamples):
    """``samples`` items of phase ``phase`` (module docstring); an item is a dict of
    ``template``, ``current`` ``(3, H, W)`` RGB in ``[0, 1]``, ``template_mask``, ``target``,
    ``previous`` ``(H, W)`` float in {0, 1}, ``video`` (name), ``skipped_clips`` (int)."""

    def __init__(self, videos: list[AnnotatedVideo], samples: int, config: RANetDataConfig, seed: int,
                 phase: int) -> None:
        super().__init__(videos, samples, seed, phase, MAX_DRAWS)
        self.config = config

    def draw(self, index: int, attempt: int) -> dict[str, Any]:
        """The sample of draw ``attempt`` of item ``index``. Raises DamagedFile, or Redraw when the
        template crop holds no object."""
        generator = item_generator(self.seed, self.phase, index, attempt)
        video_index, indices = draw_frames(self.videos, self.config.frames, self.config.max_gap, generator)
        video = self.videos[video_index]
        frames, ids = zip(*(video.read(i) for i in indices))
        item = self._sample(torch.stack(frames), torch.stack(ids), generator)
        if item is None:
            raise Redraw(f"{video.name}: no object in the template crop")
        return {**item, "video": video.name}

    def _sample(self, frames: torch.Tensor, ids: torch.Tensor, generator: torch.Generator) -> dict[str, Any] | None:
        """Frames ``(N, 3, H, W)`` and ids ``(N, H, W)`` -> an item, or None when the template crop has no object."""
        config = self.config
        groups = (slice(0, 1), slice(1, None)) if config.independent else (slice(None),)
        crops = [_crop_box(*frames.shape[-2:], config.size, config.scale, generator) for _ in groups]
        flip = float(torch.rand((), generator=generator)) < config.hflip
        views = [self._view(frames[group], ids[group], crop, flip, generator) for group, crop in zip(groups, crops)]
        frames, ids = torch.cat([view[0] for view in views]), torch.cat([view[1] for view in views])
        objects = torch.unique(ids[0])
        objects = objects[objects > 0]
        if len(objects) == 0:
            return None
        target_id = objects[_integer(0, len(objects) - 1, generator)]
        masks = (ids == target_id).float()
        previous = perturb_mask(masks[-2] if config.frames == 3 else masks[-1], config.dilate, config.shift,
                                generator)
        return {"template": frames[0], "template_mask": masks[0], "current": frames[-1], "target": masks[-1],
                "previous": previous}

    def _view(self, frames: torch.Tensor, ids: torch.Tensor, crop: tuple[int, int, int, int], flip: bool,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(n, 3, H, W)`` and ids ``(n, H, W)`` cut to ``crop`` ``(top, left, height, width)``,
        flipped, resized to ``size`` and rotated by a random angle within ``rotate`` degrees."""
        config = self.config
        top, left, height, width = crop
        frames = frames[..., top:top + height, left:left + width]
        ids = ids[..., top:top + height, left:left + width]
        if flip:
            frames, ids = frames.flip(-1), ids.flip(-1)
        frames = F.interpolate(frames, size=config.size, mode="bilinear", align_corners=False,
                               antialias=True).clamp(0, 1)
        ids = F.interpolate(ids[:, None].float(), size=config.size, mode="nearest-exact")[:, 0].long()
        if config.rotate:
            frames, ids = rotate(frames, ids, _uniform(-config.rotate, config.rotate, generator))
        return frames, ids


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of :class:`RANetDataset` items: the tensors stacked, ``video`` a list of names,
    ``skipped_clips`` their sum."""
    batch: dict[str, Any] = {key: torch.stack([item[key] for item in items])
                             for key in ("template", "template_mask", "current", "target", "previous")}
    batch["video"] = [item["video"] for item in items]
    batch["skipped_clips"] = sum(item["skipped_clips"] for item in items)
    return batch
