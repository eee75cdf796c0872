"""What a ``mast train-baseline detector`` run is given: its config schema (``config.yaml``).

:class:`DetectorTrainingConfig` holds the backbone, network, tracker, loss, data
and loop sections; ``configs/detector.yaml`` is the packaged recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mast.common.config import require
from mast.models.backbone import BackboneConfig
from mast.models.detector.model import DetectorConfig
from mast.models.detector.tracker import TrackerConfig
from mast.train.config import MAX_CROP_SIZE, AnnotatedDataConfig, PhaseConfig, RunConfig


@dataclass(frozen=True)
class DetectorDataConfig(AnnotatedDataConfig):
    """Training pairs: :class:`AnnotatedDataConfig` plus the crops.

    Attributes:
        size: odd side of the square training crops, in pixels (at most
            :data:`~mast.train.config.MAX_CROP_SIZE`); a crop covers the frame's shorter
            side (times ``2^u``), as the tracker's ``input_size`` scales whole frames.
        shift: largest shift of each crop's centre from its object's, in crop pixels (the
            object is not always at the centre, which a detector would learn as a prior).
        scale: crops cover ``2^u`` times the shorter side, ``u`` uniform in ``+-scale``.
        min_pixels: an object is used in a frame only with at least this many mask pixels in its crop.
    """

    size: int = 255
    shift: float = 64.0
    scale: float = 0.25
    min_pixels: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        require(31 <= self.size <= MAX_CROP_SIZE and self.size % 2 == 1, "size",
                f"must be an odd number of pixels in 31..{MAX_CROP_SIZE}", self.size)
        require(self.shift >= 0, "shift", "must be a number >= 0", self.shift)
        require(self.scale >= 0, "scale", "must be a number >= 0", self.scale)
        require(self.min_pixels >= 1, "min_pixels", "must be an integer >= 1", self.min_pixels)


@dataclass(frozen=True)
class DetectorLossConfig:
    """Attributes:
    objectness_weight / proposal_box_weight: the proposal stage's objectness and side losses.
    score_weight / box_weight / mask_weight: the box head's score and delta losses, the mask head's.
    positive_radius: a cell of the level a box maps to is a positive proposal cell when it lies
        inside the box and within this many strides of its centre (the nearest cell at least).
    positive_iou: a region is a positive of the heads at this IoU with the object's box.
    jitter: jittered copies of the box added to each image's regions (:func:`~.losses.jittered_boxes`).
    """

    objectness_weight: float = 1.0
    proposal_box_weight: float = 1.0
    score_weight: float = 1.0
    box_weight: float = 1.0
    mask_weight: float = 1.0
    positive_radius: float = 1.5
    positive_iou: float = 0.5
    jitter: int = 4

    def __post_init__(self) -> None:
        for name in ("objectness_weight", "proposal_box_weight", "score_weight", "box_weight", "mask_weight"):
            require(getattr(self, name) >= 0, name, "must be a number >= 0", getattr(self, name))
        require(self.positive_radius > 0, "positive_radius", "must be a number of strides > 0", self.positive_radius)
        require(0 < self.positive_iou <= 1, "positive_iou", "must be in (0, 1]", self.positive_iou)
        require(self.jitter >= 0, "jitter", "must be an integer >= 0", self.jitter)


@dataclass(frozen=True)
class DetectorTrainingConfig:
    """Everything a detector run is given (its ``config.yaml``); ``configs/detector.yaml`` is the default.

    ``tracker`` is not used in training: it is saved in ``model.pt`` as the settings
    ``mast propagate`` tracks with (its ``input_size`` should be ``data.size``).
    """

    model: BackboneConfig = field(default_factory=lambda: BackboneConfig(
        colour_space="rgb", output_stride=8, widths=(32, 64, 128, 128), blocks=(1, 1, 1, 1)))
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    loss: DetectorLossConfig = field(default_factory=DetectorLossConfig)
    data: DetectorDataConfig = field(default_factory=DetectorDataConfig)
    train: RunConfig = field(default_factory=lambda: RunConfig(batch_size=8))
    phases: tuple[PhaseConfig, ...] = (PhaseConfig(name="detector"),)

    def __post_init__(self) -> None:
        require(bool(self.phases), "phases", "must be a non-empty list of phase mappings", list(self.phases))
        require(self.model.output_stride == 8, "model.output_stride", "must be 8 (the pyramid reads strides 4 and 8)",
                self.model.output_stride)
        require(self.model.in_channels == 3, "model.in_channels", "must be 3 (colour frames)", self.model.in_channels)
