"""RANet as a :class:`~mast.models.tracker.Tracker`: every object of a video, merged per pixel.

The template is the first frame with its labels. Each step runs the model once
per object (the objects as one batch), each with its own template mask and
its own previous mask, optionally inside the loose box of the previous masks
([Thesis] §3.2.2: ``crop_scale`` times the tight box around all objects
together; the rest of the frame is background). The network sees the loose
box with ``context`` more pixels of the frame on every side: cut at the loose
box itself, an object a quarter of its box from the crop's edge lies in the
cells the backbone's zero padding reaches, its mask comes out smaller, the
next box is smaller still, and the mask collapses within a few frames (a
disc tracked at 0.97 IoU on whole frames fell to 0.27 with the 1.5x crop;
docs/baselines.md §7.3). The objects' probabilities
``p_k`` are merged by a softmax across objects with the background included:
the background's probability is ``prod_k (1 - p_k)`` (no object claims the
pixel), and the labels' log-odds go through one softmax, so every pixel gets
one label and overlapping objects stay separate ([Thesis] §3.3 labels pixels
by a softmax over the objects' outputs). The next step's previous mask of an
object is where it won the merge; an object that disappears has an empty
previous mask and may come back.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from mast.common.outputs import file_sha256
from mast.models.ranet.model import RANet, Template
from mast.models.tracker import TrackerStep

#: The loose box is never smaller than this (pixels per side) by default, so the decoder sees
#: several feature cells.
MIN_CROP = 64
#: Pixels of frame around the loose box that the network sees but does not segment (4 feature cells
#: at stride 8): the object then never touches the zero padding of the crop's border.
CONTEXT = 32
_EPS = 1e-6


def merge_objects(probabilities: torch.Tensor) -> torch.Tensor:
    """Per-object foreground probabilities ``(K, H, W)`` -> per-label probabilities ``(K + 1, H, W)``,
    label 0 the background (module docstring)."""
    objects = probabilities.clamp(_EPS, 1 - _EPS)
    background = torch.prod(1 - objects, dim=0, keepdim=True).clamp(_EPS, 1 - _EPS)
    return torch.softmax(torch.logit(torch.cat([background, objects])), dim=0)


def loose_box(masks: torch.Tensor, scale: float, minimum: int = MIN_CROP) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (end exclusive) of the box ``scale`` times the tight box of every
    pixel of ``masks`` ``(K, H, W)`` about its centre, at least ``minimum`` pixels a side,
    clipped to the frame; the whole frame when the masks are empty."""
    height, width = masks.shape[-2:]
    ys, xs = torch.nonzero(masks.amax(dim=0) > 0.5, as_tuple=True)
    if len(ys) == 0:
        return 0, 0, width, height
    bounds = []
    for low, high, extent in ((xs.min(), xs.max(), width), (ys.min(), ys.max(), height)):
        centre, side = (float(low) + float(high) + 1) / 2, (float(high) - float(low) + 1) * scale
        side = min(max(side, minimum), extent)
        start = int(round(min(max(centre - side / 2, 0), extent - side)))
        bounds.append((start, min(start + int(round(side)), extent)))
    (x0, x1), (y0, y1) = bounds
    return x0, y0, x1, y1


def widen_box(box: tuple[int, int, int, int], margin: int, height: int, width: int) -> tuple[int, int, int, int]:
    """``box`` ``(x0, y0, x1, y1)`` grown by ``margin`` pixels on every side, clipped to the frame."""
    x0, y0, x1, y1 = box
    return max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, width), min(y1 + margin, height)


class RANetTracker:
    """Tracks the objects of a video with a trained :class:`RANet`.

    Args:
        model: the network (put in eval mode on ``device``).
        device: where it runs.
        name: what the results were made with (``ranet:sha256:...`` from :meth:`from_checkpoint`).
        loose_crop: segment inside the loose box of the previous masks; None: the model's
            ``config.loose_crop``.
        min_crop: the loose box's smallest side in pixels.
        context: pixels of frame around the loose box that the network sees (module docstring).

    Attributes:
        last_view: what the last :meth:`step` segmented, for pictures: the frame ``(3, H, W)``, the
            loose box ``(x0, y0, x1, y1)`` and the objects' probabilities ``(K, H, W)``; None before.
    """

    def __init__(self, model: RANet, device: torch.device | str = "cpu", name: str = "ranet",
                 loose_crop: bool | None = None, min_crop: int = MIN_CROP, context: int = CONTEXT) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.name = name
        self.loose_crop = model.config.loose_crop if loose_crop is None else loose_crop
        self.min_crop = min_crop
        self.context = context
        self.template: Template | None = None
        self.previous: torch.Tensor | None = None
        self.last_view: tuple[torch.Tensor, tuple[int, int, int, int], torch.Tensor] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
                        loose_crop: bool | None = None, min_crop: int = MIN_CROP,
                        context: int = CONTEXT) -> "RANetTracker":
        """The tracker of a ``model.pt`` of ``mast train-baseline ranet`` (read weights only)."""
        return cls(RANet.from_checkpoint(path, map_location="cpu"), device, f"ranet:sha256:{file_sha256(path)}", loose_crop,
                   min_crop, context)

    def settings(self) -> dict:
        config = self.model.config
        return {"model": "ranet", "ranked_maps": config.ranked_maps, "discriminant": config.discriminant,
                "neighbourhood_max": config.neighbourhood_max, "loose_crop": self.loose_crop,
                "crop_scale": config.crop_scale, "min_crop": self.min_crop, "context": self.context}

    @torch.no_grad()
    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        """``frame`` ``(3, H, W)`` RGB in ``[0, 1]``, ``labels`` ``(H, W)`` long ``0..L-1`` (``L >= 2``)."""
        if tuple(labels.shape) != tuple(frame.shape[-2:]):
            raise ValueError(f"first-frame labels are {tuple(labels.shape)} but the frame is {tuple(frame.shape[-2:])}")
        count = int(labels.max())
        if count < 1:
            raise ValueError("the first-frame labels hold no object (all background)")
        labels = labels.to(self.device)
        masks = (labels[None] == torch.arange(1, count + 1, device=self.device)[:, None, None]).float()
        encoded = self.model.encode(frame[None].to(self.device)).expand(count)
        self.template = self.model.template(encoded, masks)
        self.previous = masks

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> TrackerStep:
        """The next frame ``(3, H, W)`` -> per-label probabilities ``(L, H, W)``."""
        if self.template is None or self.previous is None:
            raise RuntimeError("RANetTracker.step before start")
        frame = frame.to(self.device)
        height, width = frame.shape[-2:]
        if tuple(self.previous.shape[-2:]) != (height, width):
            raise ValueError(f"frame is {height}x{width} (HxW) but the video started at "
                             f"{self.previous.shape[-2]}x{self.previous.shape[-1]}")
        count = self.previous.shape[0]
        x0, y0, x1, y1 = (loose_box(self.previous, self.model.config.crop_scale, self.min_crop) if self.loose_crop
                          else (0, 0, width, height))
        cx0, cy0, cx1, cy1 = widen_box((x0, y0, x1, y1), self.context, height, width)
        current = self.model.encode(frame[None, :, cy0:cy1, cx0:cx1]).expand(count)
        logits = self.model.segment(self.template, current, self.previous[:, cy0:cy1, cx0:cx1])
        objects = torch.zeros(count, height, width, device=self.device)
        objects[:, y0:y1, x0:x1] = torch.sigmoid(logits.float())[:, y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
        self.last_view = (frame, (x0, y0, x1, y1), objects)
        probabilities = merge_objects(objects)
        labels = probabilities.argmax(dim=0)
        self.previous = F.one_hot(labels, count + 1).permute(2, 0, 1)[1:].float()
        return TrackerStep(probabilities)
