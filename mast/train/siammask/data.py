"""SiamMask's training pairs: exemplar and search crops of two annotated frames of one video.

A pair is two annotated frames of one video (at most ``data.max_gap`` annotated
frames apart) and one object visible in both: the exemplar is cropped around
the object in the first frame, the search region around it in the second
(context rule, 127 / 255 pixels, mean padding, through
:func:`mast.ops.crops.square_crop`), each jittered as in the paper. Item ``i``
of a phase depends only on ``(seed, phase, i)``; a pair that reads a damaged
frame or mask is replaced by another, counted in ``skipped_clips``
(:mod:`mast.data.samples`).
"""
from __future__ import annotations

from typing import Any

import torch

from mast.data.annotated import AnnotatedSamples, AnnotatedVideo, draw_frames
from mast.data.clips import item_generator
from mast.data.samples import Redraw
from mast.models.siammask.geometry import EXEMPLAR_SIZE, SEARCH_SIZE, exemplar_side, minmax_box, search_side
from mast.ops.crops import square_crop
from mast.train.siammask.config import SiamMaskDataConfig

#: Draws of a training pair in a row (damaged files, no object visible in both frames) before a sample gives up.
MAX_DRAWS = 50


def _uniform(generator: torch.Generator, bound: float, count: int = 1) -> torch.Tensor:
    return (torch.rand(count, generator=generator) * 2 - 1) * bound


def jittered_crop(frame: torch.Tensor, box: torch.Tensor, side: float, size: int, shift: float, log_scale: float,
                  generator: torch.Generator, mask: torch.Tensor | None = None):
    """A ``size``-pixel crop of ``frame`` ``(3, H, W)`` around ``box`` ``(4,)``, jittered.

    The crop's side is ``side * 2^u`` (``u`` uniform in ``+-log_scale``), its centre the box's
    shifted by up to ``shift`` crop pixels per axis; outside the frame it is the frame's mean.

    Returns:
        ``(crop (3, size, size), box in crop pixels (4,), cropped mask (1, size, size) or None)``.
    """
    side = side * 2 ** float(_uniform(generator, log_scale))
    scale = size / side
    center = box[:2] + _uniform(generator, shift, 2) / scale
    centers, sides = center.view(1, 2), torch.tensor([side])
    crop = square_crop(frame[None], centers, sides, size, fill=frame.mean((1, 2))[None])[0]
    in_crop = torch.cat([(box[:2] - center) * scale + (size - 1) / 2, box[2:] * scale])
    cropped = None if mask is None else square_crop(mask[None, None].float(), centers, sides, size)[0]
    return crop, in_crop, cropped


def _chance(generator: torch.Generator, probability: float) -> bool:
    """True with ``probability``; draws nothing when it is 0 (a recipe without the option keeps its pairs)."""
    return probability > 0 and float(torch.rand((), generator=generator)) < probability


def jitter_colour(crop: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """``(3, H, W)`` in ``[0, 1]`` with its brightness, contrast and saturation each scaled by
    ``1 + u``, ``u`` uniform in ``+-amount``."""
    brightness, contrast, saturation = (1 + _uniform(generator, amount, 3)).tolist()
    crop = crop * brightness
    crop = (crop - crop.mean()) * contrast + crop.mean()
    grey = crop.mean(dim=0, keepdim=True)
    return ((crop - grey) * saturation + grey).clamp(0, 1)


def augment_crop(crop: torch.Tensor, data: SiamMaskDataConfig, generator: torch.Generator,
                 box: torch.Tensor | None = None, mask: torch.Tensor | None = None):
    """A crop ``(3, S, S)`` mirrored with probability ``data.hflip`` (its box ``(4,)`` and mask
    ``(1, S, S)`` with it) and colour-jittered by ``data.colour`` -> ``(crop, box, mask)``."""
    if _chance(generator, data.hflip):
        crop, mask = crop.flip(-1), None if mask is None else mask.flip(-1)
        if box is not None:
            box = torch.cat([(crop.shape[-1] - 1 - box[:1]), box[1:]])
    if data.colour > 0:
        crop = jitter_colour(crop, data.colour, generator)
    return crop, box, mask


def draw_object_pair(videos: list[AnnotatedVideo], max_gap: int, min_pixels: int, generator: torch.Generator):
    """Two frames at most ``max_gap`` apart of a random video and a random object with ``min_pixels``
    mask pixels in both: ``(video, (frame_a, ids_a), (frame_b, ids_b), object id)``, frames
    ``(3, H, W)``, ids ``(H, W)``. Raises DamagedFile, or Redraw when no object qualifies."""
    number, (first, second) = draw_frames(videos, 2, max_gap, generator)
    video = videos[number]
    (frame_a, ids_a), (frame_b, ids_b) = video.read(first), video.read(second)
    common = [int(i) for i in torch.unique(ids_a) if i != 0
              and int((ids_a == i).sum()) >= min_pixels and int((ids_b == i).sum()) >= min_pixels]
    if not common:
        raise Redraw(f"{video.name}: no object with {min_pixels}+ mask pixels in both frames of a pair")
    target = common[int(torch.randint(len(common), (1,), generator=generator))]
    return video, (frame_a, ids_a), (frame_b, ids_b), target


class PairDataset(AnnotatedSamples):
    """``samples`` training pairs of one phase; item ``i`` depends only on ``(seed, phase, i)``.

    Items: ``exemplar`` ``(3, 127, 127)``, ``exemplar_mask`` ``(127, 127)`` in ``[0, 1]`` (the
    object's mask on the exemplar, for ``nearest_match``), ``search`` ``(3, 255, 255)``, ``search_mask``
    ``(1, 255, 255)`` in ``[0, 1]``, ``box`` ``(4,)`` the target in search-crop pixels,
    ``positive`` ``()`` bool: False for a negative pair (``data.negative``), whose search
    region holds another video's object (its box; an empty mask).
    """

    def __init__(self, videos: list[AnnotatedVideo], samples: int, seed: int, phase: int,
                 data: SiamMaskDataConfig) -> None:
        super().__init__(videos, samples, seed, phase, MAX_DRAWS)
        self.data = data

    def draw(self, index: int, attempt: int) -> dict[str, torch.Tensor]:
        """The pair of draw ``attempt`` of item ``index``. Raises DamagedFile, or Redraw when no
        object has ``min_pixels`` in both frames."""
        data = self.data
        generator = item_generator(self.seed, self.phase, index, attempt)
        video, (frame_a, ids_a), (frame_b, ids_b), target = draw_object_pair(self.videos, data.max_gap,
                                                                              data.min_pixels, generator)
        box_a = minmax_box(ids_a == target)
        # The mask rides on the exemplar's crop and augmentation without drawing: pairs stay as they were.
        exemplar, _, exemplar_mask = jittered_crop(frame_a, box_a, float(exemplar_side(box_a[2], box_a[3])),
                                                   EXEMPLAR_SIZE, data.exemplar_shift, data.exemplar_scale, generator,
                                                   mask=ids_a == target)
        positive = len(self.videos) < 2 or not _chance(generator, data.negative)
        if not positive:  # the search region of another video's pair: the same kind of crop, another object
            others = [other for other in self.videos if other is not video]
            _, _, (frame_b, ids_b), target = draw_object_pair(others, data.max_gap, data.min_pixels, generator)
        box_b = minmax_box(ids_b == target)
        search, box, mask = jittered_crop(frame_b, box_b, float(search_side(box_b[2], box_b[3])), SEARCH_SIZE,
                                          data.search_shift, data.search_scale, generator,
                                          mask=(ids_b == target) & positive)
        exemplar, _, exemplar_mask = augment_crop(exemplar, data, generator, mask=exemplar_mask)
        search, box, mask = augment_crop(search, data, generator, box, mask)
        return {"exemplar": exemplar, "exemplar_mask": exemplar_mask[0], "search": search, "search_mask": mask,
                "box": box, "positive": torch.tensor(positive)}


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of :class:`PairDataset` items: the tensors stacked, ``skipped_clips`` their sum."""
    batch: dict[str, Any] = {key: torch.stack([item[key] for item in items]) for key in items[0]
                             if key != "skipped_clips"}
    batch["skipped_clips"] = sum(item["skipped_clips"] for item in items)
    return batch
