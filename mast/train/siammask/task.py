"""``mast train-baseline siammask``: SiamMask [SiamMask] trained on videos with masks.

A training sample is a pair of annotated frames of one video (at most
``data.max_gap`` annotated frames apart) and one object visible in both: the
exemplar is cropped around the object in the first frame, the search region
around it in the second (context rule, 127 / 255 pixels, mean padding, through
:func:`mast.ops.crops.square_crop`), each jittered as in the paper: shifts up to
``data.exemplar_shift`` / ``data.search_shift`` crop pixels, scales ``2^(+-data.exemplar_scale)`` and
``2^(+-data.search_scale)``. The losses are :mod:`mast.train.siammask.losses`'
``L_3B = 32 L_mask + L_score + L_box`` (three-branch) or ``L_2B = 32 L_mask + L_sim``
(two-branch), with the weights of ``loss``. The one training loop runs it (Adam
and its step schedule, not the paper's SGD with warm-up).

``--init BACKBONE.pt`` starts the backbone from a ``mast pretrain`` checkpoint;
``model.*`` (colour space, widths, blocks) is then taken from that checkpoint and
the output stride set to 8, whatever the config says. The run leaves
``model.pt`` (:meth:`mast.models.siammask.model.SiamMask.save`: configs, the
``tracker`` section, weights), which ``mast propagate --model siammask`` reads.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mast.common.config import ConfigError, require
from mast.data.annotated import AnnotatedVideo, annotated_summary, discover_annotated, draw_frames, log_annotated
from mast.data.clips import item_generator
from mast.models.backbone import BackboneConfig
from mast.models.siammask.geometry import (
    EXEMPLAR_SIZE, SEARCH_SIZE, exemplar_side, make_anchors, minmax_box, search_side,
)
from mast.models.siammask.model import SiamMask, SiamMaskConfig
from mast.models.siammask.tracker import SiamMaskTracker, TrackerConfig
from mast.ops.crops import square_crop
from mast.train import checkpoint as ckpt
from mast.train.siammask import losses
from mast.train.config import AnnotatedDataConfig, PhaseConfig, RunConfig
from mast.train.distributed import World


#: Draws of a training pair before a sample gives up finding an object visible in both frames.
MAX_DRAWS = 50


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
    """

    exemplar_shift: float = 8.0
    search_shift: float = 8.0
    exemplar_scale: float = 0.125
    search_scale: float = 0.25
    min_pixels: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("exemplar_shift", "search_shift", "exemplar_scale", "search_scale"):
            require(getattr(self, name) >= 0, name, "must be a number >= 0", getattr(self, name))
        require(self.min_pixels >= 1, "min_pixels", "must be an integer >= 1", self.min_pixels)


@dataclass(frozen=True)
class SiamMaskLossConfig:
    """Attributes:
    mask_weight / score_weight / box_weight: ``lambda_1..3`` of [SiamMask] Eq. 4-5 (32, 1, 1);
        ``score_weight`` weights ``L_sim`` in the two-branch variant.
    positive_iou / negative_iou: three-branch anchor labels (IoU >= positive: positive, < negative:
        negative, between: ignored).
    positive_radius: two-branch: RoWs within this many search-crop pixels of the target centre are positive.
    hard_negatives: keep only the hardest ``negative_ratio`` negatives per positive.
    """

    mask_weight: float = 32.0
    score_weight: float = 1.0
    box_weight: float = 1.0
    positive_iou: float = 0.6
    negative_iou: float = 0.3
    positive_radius: float = 16.0
    hard_negatives: bool = False
    negative_ratio: float = 3.0

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
    heuristics ``mast propagate`` applies.
    """

    model: BackboneConfig = field(default_factory=lambda: BackboneConfig(colour_space="rgb", output_stride=8))
    siammask: SiamMaskConfig = field(default_factory=SiamMaskConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    loss: SiamMaskLossConfig = field(default_factory=SiamMaskLossConfig)
    data: SiamMaskDataConfig = field(default_factory=SiamMaskDataConfig)
    train: RunConfig = field(default_factory=RunConfig)
    phases: tuple[PhaseConfig, ...] = (PhaseConfig(name="siammask"),)

    def __post_init__(self) -> None:
        require(bool(self.phases), "phases", "must be a non-empty list of phase mappings", list(self.phases))
        if self.model.output_stride != 8:
            raise ConfigError("model.output_stride must be 8 for SiamMask (17x17 RoWs), "
                              f"got {self.model.output_stride}")
        require(self.model.in_channels == 3, "model.in_channels", "must be 3 (colour frames)", self.model.in_channels)



def _uniform(generator: torch.Generator, bound: float, count: int = 1) -> torch.Tensor:
    return (torch.rand(count, generator=generator) * 2 - 1) * bound


def jittered_crop(frame: torch.Tensor, box: torch.Tensor, side: float, size: int, shift: float, log_scale: float,
                  generator: torch.Generator, mask: torch.Tensor | None = None):
    """A ``size``-pixel crop of ``frame`` ``(3, H, W)`` around ``box`` ``(4,)``, jittered.

    The crop's side is ``side * 2^u`` (``u`` uniform in ``+-log_scale``), its centre the box's
    shifted by up to ``shift`` crop pixels per axis; outside the frame it is the frame's mean.

    Returns:
        ``(crop (3, size, size), box in crop pixels (4,), cropped mask (1, size, size) or None)``.
    """
    side = side * 2 ** float(_uniform(generator, log_scale))
    scale = size / side
    center = box[:2] + _uniform(generator, shift, 2) / scale
    centers, sides = center.view(1, 2), torch.tensor([side])
    crop = square_crop(frame[None], centers, sides, size, fill=frame.mean((1, 2))[None])[0]
    in_crop = torch.cat([(box[:2] - center) * scale + (size - 1) / 2, box[2:] * scale])
    cropped = None if mask is None else square_crop(mask[None, None].float(), centers, sides, size)[0]
    return crop, in_crop, cropped


class PairDataset(torch.utils.data.Dataset):
    """``samples`` training pairs of one phase; item ``i`` depends only on ``(seed, phase, i)``.

    Items: ``exemplar`` ``(3, 127, 127)``, ``search`` ``(3, 255, 255)``, ``search_mask``
    ``(1, 255, 255)`` in ``[0, 1]``, ``box`` ``(4,)`` the target in search-crop pixels.
    """

    def __init__(self, videos: list[AnnotatedVideo], samples: int, seed: int, phase: int,
                 data: SiamMaskDataConfig) -> None:
        self.videos, self.samples, self.seed, self.phase, self.data = videos, samples, seed, phase, data

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        data = self.data
        for draw in range(MAX_DRAWS):
            generator = item_generator(self.seed, self.phase, index, draw)
            number, (first, second) = draw_frames(self.videos, 2, data.max_gap, generator)
            video = self.videos[number]
            (frame_a, ids_a), (frame_b, ids_b) = video.read(first), video.read(second)
            common = [int(i) for i in torch.unique(ids_a) if i != 0
                      and int((ids_a == i).sum()) >= data.min_pixels and int((ids_b == i).sum()) >= data.min_pixels]
            if not common:
                continue
            target = common[int(torch.randint(len(common), (1,), generator=generator))]
            box_a, box_b = minmax_box(ids_a == target), minmax_box(ids_b == target)
            exemplar, _, _ = jittered_crop(frame_a, box_a, float(exemplar_side(box_a[2], box_a[3])), EXEMPLAR_SIZE,
                                           data.exemplar_shift, data.exemplar_scale, generator)
            search, box, mask = jittered_crop(frame_b, box_b, float(search_side(box_b[2], box_b[3])), SEARCH_SIZE,
                                              data.search_shift, data.search_scale, generator, mask=ids_b == target)
            return {"exemplar": exemplar, "search": search, "search_mask": mask, "box": box}
        raise ValueError(f"no object with {data.min_pixels}+ mask pixels in two frames of a pair after "
                         f"{MAX_DRAWS} draws (last: {self.videos[number].name}); check the masks under "
                         f"{self.videos[number].mask_paths[0].parent.parent}")


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of :class:`PairDataset` items (no item is ever replaced: ``skipped_clips`` 0)."""
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    batch["skipped_clips"] = 0
    return batch


class SiamMaskTask:
    """SiamMask on the annotated videos under ``root`` (a :class:`~mast.train.tasks.TrainingTask`).

    Args:
        config: a resolved :class:`SiamMaskTrainingConfig`.
        root: a DAVIS or YouTube-VOS folder (:func:`mast.data.annotated.discover_annotated`).
        sequences: the sequences to train on; None: every sequence with masks.
        year: mask format (2016: 0/255, one object; 2017: palette ids).
        init: a ``mast pretrain`` backbone to start from; its architecture replaces ``model.*``.
    """

    final_name = "model.pt"

    def __init__(self, config: SiamMaskTrainingConfig, root: str | Path, sequences: list[str] | None = None,
                 year: int = 2017, init: str | Path | None = None) -> None:
        self.root, self.sequences, self.year = Path(root), sequences, year
        self.inputs = [str(root)]
        self.init = None if init is None else Path(init)
        self._init_state = None
        if self.init is not None:
            backbone, self._init_state = ckpt.read_backbone_init(self.init, output_stride=8)
            config = replace(config, model=backbone)
        self.config = config
        self._last: tuple | None = None

    def build(self, world: World) -> SiamMask:
        config, self.world = self.config, world
        self.videos = discover_annotated(self.root, self.sequences, self.year)
        torch.manual_seed(config.train.seed)
        self.model = SiamMask(config.model, config.siammask).to(world.device)
        if self._init_state is not None:
            self.model.load_backbone(self._init_state)
        self.anchors = make_anchors(config.siammask.anchor_ratios, config.siammask.anchor_scale, world.device)
        if world.is_main:
            log_annotated(self.videos, world.device, world.size)
        return self.model

    def describe(self) -> dict[str, Any]:
        return {**annotated_summary(self.videos), "year": self.year,
                "init": None if self.init is None else str(self.init)}

    def setup_outputs(self, out_dir: Path, world: World) -> None:
        """SiamMask writes nothing before its first step."""

    def dataset(self, phase_index: int, samples: int) -> PairDataset:
        return PairDataset(self.videos, samples, self.config.train.seed, phase_index, self.config.data)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(items)

    def losses(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``loss`` and its components ``score`` (two-branch: ``similarity``), ``box``, ``mask``."""
        net, weights = self.config.siammask, self.config.loss
        hard = weights.negative_ratio if weights.hard_negatives else None
        boxes = batch["box"].float()
        if net.branches == 3:
            labels, deltas = losses.anchor_labels(self.anchors, boxes, weights.positive_iou, weights.negative_iou)
            rows = losses.positive_rows((labels == 1).any(dim=1))
        else:
            positive = losses.similarity_labels(boxes, weights.positive_radius)
            rows = losses.positive_rows(positive)
        out = model(batch["exemplar"], batch["search"], rows if net.mask else None)
        parts: dict[str, torch.Tensor] = {}
        if net.branches == 3:
            parts["score"] = losses.score_loss(out["score"].float(), labels, hard)
            parts["box"] = losses.box_loss(out["box"].float(), deltas, labels)
            total = weights.score_weight * parts["score"] + weights.box_weight * parts["box"]
        else:
            parts["similarity"] = losses.similarity_loss(out["score"].float(), positive, hard)
            total = weights.score_weight * parts["similarity"]
        if net.mask:
            targets = losses.mask_targets(batch["search_mask"], rows, net.mask_size)
            parts["mask"] = losses.mask_loss(out["masks"].float(), targets)
            total = total + weights.mask_weight * parts["mask"]
        self._last = (batch["search"][0].detach(), out["score"][0].detach())
        return {"loss": total, **parts}

    def picture(self) -> tuple[str, torch.Tensor] | None:
        """The first search crop beside its object score map (best anchor per RoW), ``(3, 255, 510)``."""
        if self._last is None:
            return None
        search, score = self._last
        if self.config.siammask.branches == 3:
            score = score.float().softmax(dim=1)[:, 1].max(dim=0).values
        else:
            score = score.float()[0].sigmoid()
        heat = F.interpolate(score[None, None], size=(SEARCH_SIZE, SEARCH_SIZE), mode="nearest")[0]
        return "search_score", torch.cat([search.float().cpu(), heat.expand(3, -1, -1).cpu()], dim=2).clamp(0, 1)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "backbone_config": asdict(self.config.model),
                "siammask_config": asdict(self.config.siammask)}

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        ckpt.restore_model(self.model, path, payload, {"backbone_config": asdict(self.config.model),
                                                       "siammask_config": asdict(self.config.siammask)}, "SiamMask")

    def validation_trackers(self) -> dict[str, SiamMaskTracker]:
        """The model as it is now, tracking with the config's ``tracker`` settings."""
        return {"siammask": SiamMaskTracker(self.model, self.config.tracker, self.world.device, name="training")}

    def save_final(self, path: Path, variant: str | None = None) -> None:
        self.model.save(path, tracker=asdict(self.config.tracker))

