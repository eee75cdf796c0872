"""One inference interface for every model that carries first-frame labels through a video.

A :class:`Tracker` is started on the annotated first frame and then stepped
frame by frame; each step returns per-label probabilities at the frame's
resolution (and, for trackers that predict them, one box per object). The
propagation writer (:mod:`mast.eval.propagate`), ``mast propagate`` and the
benchmarks drive this interface only, so the self-supervised propagator and
the supervised baselines are run, written and scored the same way.

Labels are contiguous: ``0`` is the background and ``1..L-1`` the objects
(the writer maps a mask's object ids to labels and back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, runtime_checkable

import torch


@dataclass
class TrackerStep:
    """What a tracker says about one frame.

    Attributes:
        probabilities: ``(L, H, W)`` float, per-label probabilities (label 0 =
            background) at the frame's resolution; the argmax is the mask.
        boxes: ``(L - 1, 4)`` float ``(x, y, w, h)`` in pixels per object
            (pixel-inclusive: the box spans columns ``x .. x + w - 1``), or None
            for trackers that predict masks only; a row of NaN: no box.
        rotated_boxes: ``(L - 1, 5)`` float ``(cx, cy, w, h, angle)`` per object,
            the centre and sides in pixels and the angle in degrees of a rotated
            rectangle (``cv2.minAreaRect``'s convention), or None for trackers
            that predict no rotated boxes; a row of NaN: none on this frame.

    The writer keeps the boxes in the sequence's ``boxes.json``
    (:mod:`mast.eval.box_outputs`).
    """

    probabilities: torch.Tensor
    boxes: torch.Tensor | None = None
    rotated_boxes: torch.Tensor | None = None

    def labels(self) -> torch.Tensor:
        """``(H, W)`` long: the most probable label of every pixel."""
        return self.probabilities.argmax(dim=0)


@runtime_checkable
class Tracker(Protocol):
    """A model for semi-supervised video object segmentation or tracking.

    Attributes:
        name: what the results were made with (a checkpoint is named by its hash),
            recorded in the results' ``run.json``.
    """

    name: str

    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        """Begins a video: ``frame`` ``(3, H, W)`` RGB in ``[0, 1]``, ``labels`` ``(H, W)`` long ``0..L-1``."""
        ...

    def step(self, frame: torch.Tensor) -> TrackerStep:
        """The next frame ``(3, H, W)`` RGB in ``[0, 1]`` -> its :class:`TrackerStep`."""
        ...

    def settings(self) -> dict:
        """JSON-able settings that, with :attr:`name`, determine the results."""
        ...


def track(tracker: Tracker, frames: Iterable[torch.Tensor], first_labels: torch.Tensor) -> Iterator[TrackerStep]:
    """Starts ``tracker`` on the first of ``frames`` and yields a step for every later frame."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("a video to track needs at least one frame")
    if first.shape[-2:] != first_labels.shape:
        raise ValueError(f"first-frame mask is {tuple(first_labels.shape)} (H, W) but the frame is "
                         f"{tuple(first.shape[-2:])}")
    tracker.start(first, first_labels)
    for frame in frames:
        yield tracker.step(frame)
