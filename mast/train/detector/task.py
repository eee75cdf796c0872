"""``mast train-baseline detector``: the detection-based tracker [Dave] trained on videos with masks.

A training sample (:mod:`mast.train.detector.data`) is a template crop and a
search crop of one object in two annotated frames of one video [Dave §3.5].
The template crop's box gives the discriminative template, which reweights the
search crop's pyramid (unless ``detector.attention`` is off); the losses
(:mod:`mast.train.detector.losses`) train the proposals on the search crop's
box, and the box and mask heads on the proposals and that box. The one training
loop runs it (Adam and its step schedule; [Dave] fine-tunes a COCO-trained
Mask R-CNN, which we do not have: the run trains from random weights, or from a
``mast pretrain`` backbone with ``init``).

With ``init`` the backbone starts from the checkpoint and ``model.*`` is its
architecture at output stride 8, whatever the config says. The run leaves
``model.pt`` (:meth:`mast.models.detector.model.Detector.save`: configs, the
``tracker`` section, weights), which ``load_tracker("detector", checkpoint)`` reads.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mast.data.annotated import annotated_summary, discover_annotated, log_annotated
from mast.models.detector.model import Detector
from mast.models.detector.tracker import DetectorTracker
from mast.train import checkpoint as ckpt
from mast.train.detector import losses
from mast.train.detector.data import DetectorPairDataset, collate
from mast.train.distributed import World
from mast.train.tasks import AnnotatedBaselineTask


class DetectorTask(AnnotatedBaselineTask):
    """The detector on the annotated videos under ``root`` (a :class:`~mast.train.tasks.TrainingTask`).

    Args:
        config: a resolved :class:`~mast.train.detector.config.DetectorTrainingConfig`.
        root: a DAVIS or YouTube-VOS folder (:func:`mast.data.annotated.discover_annotated`).
        sequences: the sequences to train on; None: every sequence with masks.
        year: mask format (2016: 0/255, one object; 2017: palette ids).
        init: a ``mast pretrain`` backbone to start from; its architecture replaces ``model.*``.
    """

    def build(self, world: World) -> Detector:
        self.world = world
        self.videos = discover_annotated(self.root, self.sequences, self.year)
        torch.manual_seed(self.config.train.seed)
        self.model = Detector(self.config.model, self.config.detector).to(world.device)
        if self.init_state is not None:
            self.model.load_backbone(self.init_state)
        if world.is_main:
            log_annotated(self.videos, world.device, world.size)
        return self.model

    def describe(self) -> dict[str, Any]:
        return {**annotated_summary(self.videos), "year": self.year,
                "init": None if self.init is None else str(self.init)}

    def setup_outputs(self, out_dir: Path, world: World) -> None:
        """The detector writes nothing before its first step."""

    def dataset(self, phase_index: int, samples: int) -> DetectorPairDataset:
        return DetectorPairDataset(self.videos, samples, self.config.train.seed, phase_index, self.config.data)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate(items)

    def losses(self, model: torch.nn.Module, batch: dict[str, Any],
               generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``loss`` and its components ``objectness``, ``proposal_box``, ``score``, ``box``, ``mask``."""
        weights, net = self.config.loss, self.config.detector
        boxes = batch["search_box"].float()
        extra = losses.jittered_boxes(boxes, weights.jitter, generator)
        out = model(batch["template"], batch["template_box"].float(), batch["search"], extra_rois=extra)
        positives, targets = losses.proposal_targets(boxes, [level.shape[-2:] for level in out["objectness"]],
                                                     net.canonical_size, weights.positive_radius)
        region_boxes = boxes[out["batch_index"]]
        labels = losses.region_labels(out["rois"], region_boxes, weights.positive_iou)
        parts = {
            "objectness": losses.objectness_loss(out["objectness"], positives),
            "proposal_box": losses.side_loss(out["sides"], targets, positives),
            "score": losses.score_loss(out["score"], labels),
            "box": losses.delta_loss(out["delta"], out["rois"], region_boxes, labels),
            "mask": losses.mask_loss(out["masks"], out["rois"], batch["search_mask"], out["batch_index"], labels),
        }
        total = sum(getattr(weights, f"{name}_weight") * value for name, value in parts.items())
        self._last = (batch["search"][0].detach(), out["objectness"][0][0, 0].detach())
        return {"loss": total, **parts}

    def picture(self) -> tuple[str, torch.Tensor] | None:
        """The first search crop beside its finest objectness map, ``(3, S, 2 S)``."""
        if self._last is None:
            return None
        search, objectness = self._last
        heat = F.interpolate(objectness.float().sigmoid()[None, None], size=search.shape[-2:], mode="nearest")[0]
        return "search_objectness", torch.cat([search.float().cpu(), heat.expand(3, -1, -1).cpu()], dim=2).clamp(0, 1)

    def _architecture(self) -> dict[str, Any]:
        return {"backbone_config": asdict(self.config.model), "detector_config": asdict(self.config.detector)}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), **self._architecture()}

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        ckpt.restore_model(self.model, path, payload, self._architecture(), "detector")

    def validation_trackers(self) -> dict[str, DetectorTracker]:
        """The model as it is now, tracking with the config's ``tracker`` settings."""
        return {"detector": DetectorTracker(self.model, self.config.tracker, self.world.device, name="training")}

    def save_final(self, path: Path, variant: str | None = None) -> None:
        self.model.save(path, tracker=asdict(self.config.tracker))
