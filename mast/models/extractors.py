"""Feature extractors for label propagation: one interface, any model.

An extractor maps an RGB frame to ``(as_query, as_key)`` features at
``1/stride`` resolution; the two differ only when the affinity is not a
plain dot product (the pixel baseline's negative squared distance).
"""
from __future__ import annotations

import os
from typing import Protocol

import torch

from mast.common.checkpoints import load_checkpoint
from mast.common.outputs import file_sha256
from mast.models.backbone import ResNetBackbone
from mast.models.pixel import lab_pixel_features, squared_distance_embedding


class FeatureExtractor(Protocol):
    stride: int
    name: str

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(as_query, as_key)``, each ``(B, C, ceil(H/s), ceil(W/s))``."""
        ...


class PixelExtractor:
    """Raw LAB pixels averaged over ``stride x stride`` cells, compared by
    negative squared distance: the baseline that needs no checkpoint.

    ``propagation`` holds the propagation settings pixels need whatever
    the preset: a sharp softmax over few keys, and no cosine normalisation
    (which would break the squared-distance embedding).
    """

    propagation = {"temperature": 0.01, "topk": 16, "normalize": False}

    def __init__(self, stride: int = 4) -> None:
        self.stride = stride
        self.name = f"lab-pixels/{stride}"

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return squared_distance_embedding(lab_pixel_features(frames, self.stride))


class BackboneExtractor:
    """A trained :class:`ResNetBackbone`; query and key features are the same."""

    def __init__(self, backbone: ResNetBackbone) -> None:
        self.backbone = backbone.eval()
        self.stride = backbone.config.output_stride
        self.name = "backbone"
        #: the propagation knobs the checkpoint was saved with (flat names, see PropagationConfig)
        self.propagation: dict = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "BackboneExtractor":
        """A ``backbone.pt``; its saved propagation knobs (if any) are in :attr:`propagation`."""
        payload = load_checkpoint(path, "backbone checkpoint", device)
        extractor = cls(ResNetBackbone.from_payload(payload, path).to(device))
        extractor.propagation = dict(payload.get("propagation", {}))
        # Named by content: results folders compare it to tell runs apart.
        extractor.name = f"backbone:sha256:{file_sha256(path)}"
        return extractor

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(self.backbone.prepare(frames))
        return features, features

    def to(self, device: torch.device | str) -> "BackboneExtractor":
        self.backbone = self.backbone.to(device)
        return self
