"""The detector's training pairs: a template crop and a search crop of one object of one video.

A pair is two annotated frames of one video (at most ``data.max_gap`` annotated
frames apart) and one object visible in both [Dave §3.5]: each frame is cropped
around the object (:func:`mast.train.siammask.data.jittered_crop`, through
:func:`mast.ops.crops.square_crop`, mean padding), a square of the frame's
shorter side times ``2^u`` (``u`` uniform in ``+-data.scale``) with its centre
shifted by up to ``data.shift`` crop pixels, resized to ``data.size``. The
boxes are the min-max boxes of the cropped masks. Item ``i`` of a phase depends
only on ``(seed, phase, i)``; a pair that reads a damaged frame or mask is
replaced by another, counted in ``skipped_clips`` (:mod:`mast.data.samples`).
"""
from __future__ import annotations

import torch

from mast.data.annotated import AnnotatedSamples, AnnotatedVideo
from mast.data.clips import item_generator
from mast.data.samples import Redraw
from mast.models.siammask.geometry import minmax_box
from mast.train.detector.config import DetectorDataConfig
from mast.train.siammask.data import collate_pairs, draw_object_pair, jittered_crop

#: Draws of a training pair in a row (damaged files, no object in both crops) before a sample gives up.
MAX_DRAWS = 50


class DetectorPairDataset(AnnotatedSamples):
    """``samples`` training pairs of one phase; item ``i`` depends only on ``(seed, phase, i)``.

    Items: ``template``, ``search`` ``(3, S, S)`` RGB in ``[0, 1]``, ``template_box``,
    ``search_box`` ``(4,)`` ``(cx, cy, w, h)`` in crop pixels, ``search_mask`` ``(1, S, S)``
    in ``[0, 1]``, ``skipped_clips`` (int).
    """

    def __init__(self, videos: list[AnnotatedVideo], samples: int, seed: int, phase: int,
                 data: DetectorDataConfig) -> None:
        super().__init__(videos, samples, seed, phase, MAX_DRAWS)
        self.data = data

    def _crop(self, frame: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """``(crop, box, cropped mask)`` of one frame around its object's ``mask`` ``(H, W)`` bool,
        None when fewer than ``min_pixels`` of the object are in the crop."""
        data = self.data
        crop, _, cropped = jittered_crop(frame, minmax_box(mask), float(min(mask.shape)), data.size, data.shift,
                                         data.scale, generator, mask=mask)
        inside = cropped[0] > 0.5
        if int(inside.sum()) < data.min_pixels:
            return None
        return crop, minmax_box(inside), inside[None].float()

    def draw(self, index: int, attempt: int) -> dict[str, torch.Tensor]:
        """The pair of draw ``attempt`` of item ``index``. Raises DamagedFile, or Redraw when no
        object has ``min_pixels`` in both crops."""
        data = self.data
        generator = item_generator(self.seed, self.phase, index, attempt)
        video, (frame_a, ids_a), (frame_b, ids_b), target = draw_object_pair(self.videos, data.max_gap,
                                                                              data.min_pixels, generator)
        template, search = self._crop(frame_a, ids_a == target, generator), self._crop(frame_b, ids_b == target,
                                                                                        generator)
        if template is None or search is None:
            raise Redraw(f"{video.name}: the object has fewer than {data.min_pixels} pixels in a crop")
        return {"template": template[0], "template_box": template[1], "search": search[0],
                "search_box": search[1], "search_mask": search[2]}


#: A batch of :class:`DetectorPairDataset` items: the tensors stacked, ``skipped_clips`` their sum.
collate = collate_pairs
