"""The self-supervised tracker: label propagation through a memory of past frames.

docs/algorithm.md §5: the first-frame mask becomes one-hot values
(background included) at feature resolution; for each next frame the
reconstruction engine reads per-label probabilities out of the memory bank,
they are upsampled bilinearly to the frame's size; the frame then enters the
memory with its predicted labels, hard (MAST) or soft (CRW).
:class:`Propagator` is the first implementation of
:class:`mast.models.tracker.Tracker`; its protocol is a
:class:`~mast.models.protocol.PropagationConfig`.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F

from mast.models.engine import ReconstructionEngine
from mast.models.extractors import BackboneExtractor, FeatureExtractor, PixelExtractor
from mast.models.memory import MemoryBank
from mast.models.protocol import PropagationConfig, PropagationKnobs
from mast.models.tracker import TrackerStep, track


def one_hot_labels(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(H, W)`` long labels -> ``(1, num_labels, H, W)`` float one-hot."""
    return F.one_hot(labels, num_labels).permute(2, 0, 1).unsqueeze(0).float()


class Propagator:
    """Streams a video's frames through the memory bank and the engine (a :class:`Tracker`).

    Memory is bounded by the policy's capacity whatever the video length:
    only the frames the policy may still read are kept (features and
    ``num_labels`` value channels at feature resolution).
    """

    def __init__(self, extractor: FeatureExtractor, config: PropagationConfig, device: torch.device | str = "cpu"):
        self.extractor = extractor
        self.config = config
        self.device = torch.device(device)
        self.engine = ReconstructionEngine(config.engine)
        self.name = extractor.name
        self.bank: MemoryBank | None = None  # the memory of the current video, for inspection
        self._time, self._num_labels = 0, 0

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None, preset: str = "mast", *knobs: PropagationKnobs,
                        device: torch.device | str = "cpu") -> "Propagator":
        """A ``backbone.pt`` (None: the LAB-pixel baseline) under ``preset``, then the knobs the
        features need (the checkpoint's saved ones, or the pixels'), then ``knobs`` in order."""
        extractor = PixelExtractor() if path is None else BackboneExtractor.from_checkpoint(path, device)
        return cls(extractor, PropagationConfig.preset(preset, extractor.knobs, *knobs), device)

    def settings(self) -> dict:
        return {"model": "mast", "protocol": asdict(self.config)}

    @torch.no_grad()
    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        self._time, self._num_labels = 0, int(labels.max()) + 1
        self.bank = MemoryBank(self.config.policy)
        _, as_key = self.extractor(frame.to(self.device, torch.float32).unsqueeze(0))
        full = one_hot_labels(labels.to(self.device), self._num_labels)
        self.bank.add(0, as_key, F.interpolate(full, size=as_key.shape[-2:], mode="area"))

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> TrackerStep:
        if self.bank is None:
            raise RuntimeError("Propagator.step() before start()")
        self._time += 1
        frame = frame.to(self.device, torch.float32).unsqueeze(0)
        as_query, as_key = self.extractor(frame)
        probabilities = self.engine(as_query, self.bank.references(self._time))
        upsampled = F.interpolate(probabilities, size=frame.shape[-2:], mode="bilinear", align_corners=False)
        values = probabilities if self.config.soft_labels else one_hot_labels(probabilities.argmax(1)[0], self._num_labels)
        self.bank.add(self._time, as_key, values)
        return TrackerStep(upsampled[0])

    def run(self, frames: Iterable[torch.Tensor], first_labels: torch.Tensor) -> Iterator[torch.Tensor]:
        """``(H, W)`` long labels (on the CPU) of every frame after the first.

        Args:
            frames: the video's frames in order, each ``(3, H, W)`` RGB in ``[0, 1]``,
                the first one being the annotated frame.
            first_labels: ``(H, W)`` long, ``0..L-1`` (0 = background), contiguous.
        """
        for result in track(self, frames, first_labels):
            yield result.labels().cpu()
