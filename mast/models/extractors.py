"""Feature extractors for label propagation: one interface, any model.

An extractor maps an RGB frame to ``(as_query, as_key)`` features at
``1/stride`` resolution; the two differ only when the affinity is not a
plain dot product (the pixel baseline's negative squared distance).
"""
from __future__ import annotations

import os
from typing import Protocol

import torch

from mast.common.outputs import file_sha256
from mast.models.backbone import ResNetBackbone
from mast.models.pixel import lab_pixel_features, squared_distance_embedding
from mast.models.protocol import PropagationKnobs
from mast.models.published import load_any


class FeatureExtractor(Protocol):
    """Attributes:
    stride: the features' resolution is ``1/stride`` of the frame's.
    name: what the features are (a checkpoint is named by its hash), recorded with results.
    knobs: the propagation settings these features are meant to be used with.
    """

    stride: int
    name: str
    knobs: PropagationKnobs

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(as_query, as_key)``, each ``(B, C, ceil(H/s), ceil(W/s))``."""
        ...


class PixelExtractor:
    """Raw LAB pixels averaged over ``stride x stride`` cells, compared by
    negative squared distance: the baseline that needs no checkpoint.

    ``knobs`` are the propagation settings pixels need whatever the preset:
    a sharp softmax over few keys, and no cosine normalisation (which would
    break the squared-distance embedding).
    """

    knobs = PropagationKnobs(temperature=0.01, topk=16, normalize=False)

    def __init__(self, stride: int = 4) -> None:
        self.stride = stride
        self.name = f"lab-pixels/{stride}"

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return squared_distance_embedding(lab_pixel_features(frames, self.stride))


class BackboneExtractor:
    """A trained :class:`ResNetBackbone`; query and key features are the same."""

    def __init__(self, backbone: ResNetBackbone, knobs: PropagationKnobs = PropagationKnobs(),
                 name: str = "backbone") -> None:
        self.backbone = backbone.eval()
        self.stride = backbone.config.output_stride
        self.name = name
        self.knobs = knobs

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "BackboneExtractor":
        """A ``backbone.pt`` or a published checkpoint (:mod:`mast.models.published`), with the
        propagation knobs saved in it (a published one: its paper's protocol) as :attr:`knobs`."""
        converted = load_any(path, device)
        # Named by content: results folders compare it to tell runs apart.
        return cls(converted.backbone(path).to(device), converted.knobs, f"backbone:sha256:{file_sha256(path)}")

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(self.backbone.prepare(frames))
        return features, features

    def to(self, device: torch.device | str) -> "BackboneExtractor":
        self.backbone = self.backbone.to(device)
        return self

