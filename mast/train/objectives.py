"""Self-supervised objectives: what is reconstructed, and how it is scored.

An objective turns a batch of clips into the backbone's input frames and
the values every frame offers (``prepare``), and scores the engine's
reconstruction of the query frame against the query's own values (``loss``):

* ``lab-huber`` (MAST): LAB input with one of a/b dropped; the dropped
  channel is reconstructed and compared with a Huber loss (both scaled by 20).
* ``kmeans-ce`` (CorrFlow): every pixel is labelled by its nearest colour
  centroid; one-hot labels are reconstructed and scored by cross-entropy.
* ``mask-ce`` (supervised upper bound): the same with real object masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from mast.common.colour import drop_ab_channel, drop_channels_corrflow, normalize_lab, rgb_to_lab


@dataclass
class Prepared:
    """Attributes:
    inputs: ``(B, N, 3, H, W)`` backbone input of every frame.
    values: ``(B, N, K, H, W)`` what every frame offers to be read (full resolution).
    target: ``(B, H, W)`` long class labels or ``(B, K, H, W)`` values of the query.
    dropped: ``(B,)`` the LAB channel each clip lost (lab-huber), for pictures.
    """

    inputs: torch.Tensor
    values: torch.Tensor
    target: torch.Tensor
    dropped: torch.Tensor | None = None


class Objective(Protocol):
    name: str

    def prepare(self, batch: dict, generator: torch.Generator) -> Prepared:
        """``batch["frames"]`` ``(B, N, 3, H, W)`` RGB in ``[0, 1]``, the query last
        (and ``batch["masks"]`` ``(B, N, H, W)`` object ids for mask-ce)."""
        ...

    def loss(self, reconstruction: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        """``reconstruction`` ``(B, K, h, w)`` at feature resolution -> scalar loss."""
        ...


def _to_size(reconstruction: torch.Tensor, target: torch.Tensor, upsample: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Brings reconstruction and target to one resolution: full (bilinear) or feature (area)."""
    if upsample:
        size = target.shape[-2:]
        return F.interpolate(reconstruction, size=size, mode="bilinear", align_corners=False), target
    return reconstruction, F.interpolate(target, size=reconstruction.shape[-2:], mode="area")


class LabHuber:
    """MAST: reconstruct the dropped a/b channel of the query (normalised LAB)."""

    name = "lab-huber"

    def __init__(self, upsample: bool = True, scale: float = 20.0) -> None:
        self.upsample, self.scale = upsample, scale

    def prepare(self, batch: dict, generator: torch.Generator) -> Prepared:
        frames = batch["frames"]
        clips, count = frames.shape[:2]
        lab = normalize_lab(rgb_to_lab(frames.flatten(0, 1))).unflatten(0, (clips, count))
        inputs, channel = drop_ab_channel(lab, generator)
        values = lab[torch.arange(clips, device=lab.device), :, channel].unsqueeze(2)  # (B, N, 1, H, W)
        return Prepared(inputs, values, values[:, -1], channel)

    def loss(self, reconstruction: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        reconstruction, target = _to_size(reconstruction, prepared.target, self.upsample)
        return F.smooth_l1_loss(self.scale * reconstruction.float(), self.scale * target.float())


class KMeansCrossEntropy:
    """CorrFlow: reconstruct one-hot colour-cluster labels, score by cross-entropy.

    Args:
        centroids: ``(k, 3)`` LAB cluster centres (``mast centroids``).
        prepare_input: RGB ``(M, 3, H, W)`` -> backbone input (the backbone's colour space).
        keep_all_prob: CorrFlow's channel dropout keeps every channel this often.
    """

    name = "kmeans-ce"

    def __init__(
        self,
        centroids: torch.Tensor,
        prepare_input: Callable[[torch.Tensor], torch.Tensor],
        upsample: bool = True,
        keep_all_prob: float = 0.3,
    ) -> None:
        self.centroids = centroids.float()
        self.prepare_input = prepare_input
        self.upsample, self.keep_all_prob = upsample, keep_all_prob

    def prepare(self, batch: dict, generator: torch.Generator) -> Prepared:
        from mast.train.centroids import assign_labels

        frames = batch["frames"]
        clips, count = frames.shape[:2]
        flat = frames.flatten(0, 1)
        labels = assign_labels(rgb_to_lab(flat), self.centroids.to(flat.device))  # (B*N, H, W)
        one_hot = F.one_hot(labels, len(self.centroids)).permute(0, 3, 1, 2).float()
        inputs = self.prepare_input(flat).unflatten(0, (clips, count))
        inputs = drop_channels_corrflow(inputs, self.keep_all_prob, generator)
        query_labels = labels.unflatten(0, (clips, count))[:, -1].contiguous()  # nll_loss needs it contiguous
        return Prepared(inputs, one_hot.unflatten(0, (clips, count)), query_labels)

    def loss(self, reconstruction: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        return reconstructed_cross_entropy(reconstruction, prepared.target, self.upsample)


class MaskCrossEntropy:
    """Supervised upper bound (thesis Table 4.1): reconstruct the reference frames'
    object masks and score the query's by cross-entropy.

    Args:
        max_objects: ids ``1..max_objects`` (0 = background); more is an error.
        prepare_input: RGB ``(M, 3, H, W)`` -> backbone input.
    """

    name = "mask-ce"

    def __init__(self, max_objects: int, prepare_input: Callable[[torch.Tensor], torch.Tensor], upsample: bool = True):
        self.max_objects, self.prepare_input, self.upsample = max_objects, prepare_input, upsample

    def prepare(self, batch: dict, generator: torch.Generator) -> Prepared:
        frames, masks = batch["frames"], batch.get("masks")
        if masks is None:
            raise ValueError("mask-ce needs annotated clips (batch['masks'])")
        if int(masks.max()) > self.max_objects:
            raise ValueError(f"object id {int(masks.max())} exceeds objective.max_objects={self.max_objects}")
        clips, count = frames.shape[:2]
        one_hot = F.one_hot(masks.flatten(0, 1), self.max_objects + 1).permute(0, 3, 1, 2).float()
        inputs = self.prepare_input(frames.flatten(0, 1)).unflatten(0, (clips, count))
        return Prepared(inputs, one_hot.unflatten(0, (clips, count)), masks[:, -1].contiguous())

    def loss(self, reconstruction: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        return reconstructed_cross_entropy(reconstruction, prepared.target, self.upsample)


def reconstructed_cross_entropy(reconstruction: torch.Tensor, target: torch.Tensor, upsample: bool) -> torch.Tensor:
    """Cross-entropy of reconstructed class distributions ``(B, K, h, w)`` with labels ``(B, H, W)``.

    The reconstruction is already a distribution (a convex mix of one-hot labels),
    so its log is taken directly (Eq. 4.4-4.11).
    """
    if upsample:
        reconstruction = F.interpolate(reconstruction, size=target.shape[-2:], mode="bilinear", align_corners=False)
    else:
        target = F.interpolate(target[:, None].float(), size=reconstruction.shape[-2:], mode="nearest")[:, 0].long()
    return F.nll_loss(torch.log(reconstruction.float().clamp_min(1e-6)).contiguous(), target)
