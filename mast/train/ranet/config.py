"""What a ``mast train-baseline ranet`` run is given: its config schema (``config.yaml``).

:class:`RANetTrainingConfig` holds the backbone, network, loss, data and loop
sections; ``configs/ranet.yaml`` is the packaged recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mast.common.config import require
from mast.models.backbone import BackboneConfig
from mast.models.ranet.model import RANetConfig
from mast.train.config import (MAX_CROP_SIZE, PhaseConfig, RunConfig, ValidationConfig, require_freeze,
                               require_train_only)
from mast.train.ranet.losses import MASK_LOSSES


@dataclass(frozen=True)
class RANetDataConfig:
    """Attributes:
        size: ``(height, width)`` of the training samples, in pixels (each at most
            :data:`~mast.train.config.MAX_CROP_SIZE`).
        frames: 3: ``M_{t-1}`` is the mask of an annotated frame between template and current
            frame; 2: the current frame's own mask (both perturbed).
        max_gap: the frames of a sample are at most this many annotated frames apart.
        scale: ``(low, high)`` area fractions of the random crop (of the largest crop of ``size``'s
            aspect). At 256 x 256, 0.28 of a 480p frame keeps its scale: lower bounds near that train
            at the scale of inference, which segments the frames (or loose boxes) at their own size.
        hflip: probability of a horizontal flip (of the whole sample).
        rotate: each view is rotated by a random angle within this many degrees ([Thesis] §3.3: 30).
        independent: the template frame gets a crop and rotation of its own, the previous and
            current frames share another ([Thesis] §3.3); False: one for all frames.
        dilate: the previous mask is dilated or eroded (equally often) by up to this many pixels.
        shift: ... and shifted by up to this many pixels in x and in y.
        workers: DataLoader worker processes (0: load in the training process).
    """

    size: tuple[int, int] = (256, 256)
    frames: int = 3
    max_gap: int = 20
    scale: tuple[float, float] = (0.25, 1.0)
    hflip: float = 0.5
    rotate: float = 0.0
    independent: bool = False
    dilate: int = 8
    shift: int = 8
    workers: int = 2

    def __post_init__(self) -> None:
        require(len(self.size) == 2 and 16 <= min(self.size) and max(self.size) <= MAX_CROP_SIZE, "size",
                f"must be [height, width], each in 16..{MAX_CROP_SIZE} pixels (a larger sample only upsamples "
                "the frames, at a memory cost that grows with its area)", self.size)
        require(self.frames in (2, 3), "frames", "must be 2 or 3", self.frames)
        require(self.max_gap >= 1, "max_gap", "must be an integer >= 1", self.max_gap)
        require(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1, "scale",
                "must be [low, high] with 0 < low <= high <= 1", self.scale)
        require(0 <= self.hflip <= 1, "hflip", "must be a probability in [0, 1]", self.hflip)
        require(0 <= self.rotate <= 180, "rotate", "must be a number of degrees in [0, 180]", self.rotate)
        require(self.dilate >= 0, "dilate", "must be an integer >= 0 (pixels)", self.dilate)
        require(self.shift >= 0, "shift", "must be an integer >= 0 (pixels)", self.shift)
        require(self.workers >= 0, "workers", "must be an integer >= 0", self.workers)
        object.__setattr__(self, "size", tuple(self.size))
        object.__setattr__(self, "scale", tuple(self.scale))


@dataclass(frozen=True)
class RANetTrainingConfig:
    """A RANet run (``config.yaml``); ``configs/ranet.yaml`` is the packaged recipe.

    Attributes:
        model: the backbone (output stride 8; taken from the ``init`` checkpoint when given).
        ranet: the ranking attention module, decoder and inference crop.
        loss: bce | soft-iou | both (their sum).
        freeze: the first this many backbone stages (the stem, layer1, layer2, ...) keep their
            initial weights and BatchNorm statistics (those of the ``init`` backbone): 0 trains them all.
            The backbone's ``head`` and RANet's ``embed`` block are not stages: they still train.
        train_only: the parts to train, dotted names each selecting itself and everything under it
            (``decoder.out``, ``prior_gain``); the rest is held (after ``freeze``); empty: all train.
        data: samples, their size and the previous-mask perturbation.
        train / phases: the loop's sections (a phase's ``mode`` and ``pair_gaps`` are not used).
        validation: how the training's validator scores the model: ``every``, ``max_frames`` and early
            stopping (``patience``, ``min_delta``); ``preset`` and ``candidates`` are the
            self-supervised backbone's and not used.
    """

    model: BackboneConfig = field(default_factory=lambda: BackboneConfig(
        colour_space="rgb", output_stride=8, feature_dim=64, widths=(32, 64, 128, 128), blocks=(1, 1, 1, 1)))
    ranet: RANetConfig = field(default_factory=RANetConfig)
    loss: str = "both"
    freeze: int = 0
    train_only: tuple[str, ...] = ()
    data: RANetDataConfig = field(default_factory=RANetDataConfig)
    train: RunConfig = field(default_factory=lambda: RunConfig(batch_size=8))
    phases: tuple[PhaseConfig, ...] = (PhaseConfig(name="ranet", steps=20000, lr=1e-4),)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        require(self.model.output_stride == 8, "model.output_stride", "must be 8 (RANet's correlation maps)",
                self.model.output_stride)
        require(self.model.in_channels == 3, "model.in_channels", "must be 3 (colour frames)", self.model.in_channels)
        require(self.loss in MASK_LOSSES, "loss", f"must be one of {', '.join(MASK_LOSSES)}", self.loss)
        require_freeze(self.freeze, self.model)
        require_train_only(self.train_only)
        require(bool(self.phases), "phases", "must be a non-empty list of phase mappings", list(self.phases))
