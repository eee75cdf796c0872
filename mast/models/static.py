"""Zero motion: the first-frame mask repeated on every frame.

The bar every tracker must clear (issue 26: a supervised baseline earns its
row by beating zero motion on unseen video; docs/baselines.md §7.3). It reads
no frame after the first, has no weights and no settings, so its J&F says
how much of a sequence's score comes from objects that barely move, and its
frames/s is what writing and scoring masks cost alone.
"""
from __future__ import annotations

import torch

from mast.models.tracker import TrackerStep


class StaticTracker:
    """Predicts the first frame's labels on every later frame.

    Attributes:
        name: ``static`` (there are no weights to name by hash).
    """

    name = "static"

    def __init__(self) -> None:
        self.probabilities: torch.Tensor | None = None

    def settings(self) -> dict:
        return {"model": "static"}

    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        """``frame`` ``(3, H, W)`` (only its size is read), ``labels`` ``(H, W)`` long ``0..L-1``."""
        if tuple(labels.shape) != tuple(frame.shape[-2:]):
            raise ValueError(f"first-frame labels are {tuple(labels.shape)} but the frame is {tuple(frame.shape[-2:])}")
        count = int(labels.max()) + 1
        self.probabilities = (labels[None] == torch.arange(count, device=labels.device)[:, None, None]).float()

    def step(self, frame: torch.Tensor) -> TrackerStep:
        """The next frame ``(3, H, W)`` -> the first frame's labels as one-hot ``(L, H, W)``."""
        if self.probabilities is None:
            raise RuntimeError("StaticTracker.step before start")
        if tuple(frame.shape[-2:]) != tuple(self.probabilities.shape[-2:]):
            raise ValueError(f"frame is {frame.shape[-2]}x{frame.shape[-1]} (HxW) but the video started at "
                             f"{self.probabilities.shape[-2]}x{self.probabilities.shape[-1]}")
        return TrackerStep(self.probabilities.clone())
