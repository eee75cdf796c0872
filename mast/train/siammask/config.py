"""What a ``mast train-baseline siammask`` run is given: its config schema (``config.yaml``).

:class:`SiamMaskTrainingConfig` holds the backbone, network, tracker, loss, data
and loop sections; ``configs/siammask.yaml`` is the packaged recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mast.common.config import ConfigError, require
from mast.models.backbone import BackboneConfig
from mast.models.siammask.model import SiamMaskConfig
from mast.models.siammask.tracker import TrackerConfig
from mast.train.config import (AnnotatedDataConfig, PhaseConfig, RunConfig, ValidationConfig, require_freeze,
                               require_train_only)


@dataclass(frozen=True)
class SiamMaskDataConfig(AnnotatedDataConfig):
    """Training pairs: :class:`AnnotatedDataConfig` plus the paper's jitter.

    Attributes:
        exemplar_shift / search_shift: largest random shift of each crop's centre from the
            object's, in crop pixels (the paper: 8 for both). A small search shift keeps the
            target at the centre RoWs, which a briefly trained network learns as a position
            prior instead of matching appearance; ``configs/siammask.yaml`` uses 32.
        exemplar_scale / search_scale: crops are rescaled by ``2^u``, ``u`` uniform in
            ``+-`` this (the paper: 1/8 and 1/4).
        min_pixels: an object is used in a frame only with at least this many mask pixels.
        negative: the probability that a pair is negative [DaSiamRPN]: its search region is
            cropped around an object of another video, every RoW is background and no mask is
            learnt, so a score must come from matching the exemplar, not from looking like the
            training objects (needs two or more videos).
        hflip: the probability that each crop (exemplar and search, independently) is mirrored.
        colour: each crop's brightness, contrast and saturation are scaled by ``1 + u``, ``u``
            uniform in ``+-colour`` (independently per crop and property).
    """

    exemplar_shift: float = 8.0
    search_shift: float = 8.0
    exemplar_scale: float = 0.125
    search_scale: float = 0.25
    min_pixels: int = 16
    negative: float = 0.0
    hflip: float = 0.0
    colour: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("exemplar_shift", "search_shift", "exemplar_scale", "search_scale"):
            require(getattr(self, name) >= 0, name, "must be a number >= 0", getattr(self, name))
        require(self.min_pixels >= 1, "min_pixels", "must be an integer >= 1", self.min_pixels)
        for name in ("negative", "hflip"):
            require(0 <= getattr(self, name) <= 1, name, "must be a probability in [0, 1]", getattr(self, name))
        require(0 <= self.colour < 1, "colour", "must be a number in [0, 1)", self.colour)


@dataclass(frozen=True)
class SiamMaskLossConfig:
    """Attributes:
    mask_weight / score_weight / box_weight: ``lambda_1..3`` of [SiamMask] Eq. 4-5 (32, 1, 1);
        ``score_weight`` weights ``L_sim`` in the two-branch variant.
    positive_iou / negative_iou: three-branch anchor labels (IoU >= positive: positive, < negative:
        negative, between: ignored).
    positive_radius: two-branch: RoWs within this many search-crop pixels of the target centre are positive.
    hard_negatives: keep only the hardest ``negative_ratio`` negatives per positive.
    mask_balance: ``L_mask`` as the mean of the object pixels' and the background pixels' mean
        losses (off: the mean over all pixels, [SiamMask] Eq. 3). Object pixels are a minority
        of a RoW's window (about 10 % on DAVIS), and the plain mean leaves them under-segmented.
    """

    mask_weight: float = 32.0
    score_weight: float = 1.0
    box_weight: float = 1.0
    positive_iou: float = 0.6
    negative_iou: float = 0.3
    positive_radius: float = 16.0
    hard_negatives: bool = False
    negative_ratio: float = 3.0
    mask_balance: bool = False

    def __post_init__(self) -> None:
        for name in ("mask_weight", "score_weight", "box_weight"):
            require(getattr(self, name) >= 0, name, "must be a number >= 0", getattr(self, name))
        require(0 < self.positive_iou <= 1, "positive_iou", "must be in (0, 1]", self.positive_iou)
        require(0 <= self.negative_iou <= self.positive_iou, "negative_iou", "must be in [0, positive_iou]",
                self.negative_iou)
        require(self.positive_radius >= 0, "positive_radius", "must be a number >= 0", self.positive_radius)
        require(self.negative_ratio > 0, "negative_ratio", "must be a number > 0", self.negative_ratio)


@dataclass(frozen=True)
class SiamMaskTrainingConfig:
    """Everything a SiamMask run is given (its ``config.yaml``); ``configs/siammask.yaml`` is the default.

    ``tracker`` is not used in training: it is saved in ``model.pt`` as the tracking
    heuristics ``mast propagate`` applies (validation tracks with it too). ``freeze``: the first
    this many backbone stages (the stem, layer1, ...) keep the ``init`` backbone's weights and
    BatchNorm statistics (0 trains them all). ``train_only``: the parts to train, dotted
    names each selecting itself and everything under it (``heads.score``, ``score_gain``); the rest
    is held (after ``freeze``; empty: all train). ``validation``: how
    the training's validator scores the model, ``every``, ``max_frames`` and early stopping
    (``patience``, ``min_delta``); ``preset`` and ``candidates`` are the self-supervised
    backbone's and not used.
    """

    model: BackboneConfig = field(default_factory=lambda: BackboneConfig(colour_space="rgb", output_stride=8))
    siammask: SiamMaskConfig = field(default_factory=SiamMaskConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    loss: SiamMaskLossConfig = field(default_factory=SiamMaskLossConfig)
    freeze: int = 0
    train_only: tuple[str, ...] = ()
    data: SiamMaskDataConfig = field(default_factory=SiamMaskDataConfig)
    train: RunConfig = field(default_factory=RunConfig)
    phases: tuple[PhaseConfig, ...] = (PhaseConfig(name="siammask"),)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        require(bool(self.phases), "phases", "must be a non-empty list of phase mappings", list(self.phases))
        if self.model.output_stride != 8:
            raise ConfigError("model.output_stride must be 8 for SiamMask (17x17 RoWs), "
                              f"got {self.model.output_stride}")
        require(self.model.in_channels == 3, "model.in_channels", "must be 3 (colour frames)", self.model.in_channels)
        require_freeze(self.freeze, self.model)
        require_train_only(self.train_only)
