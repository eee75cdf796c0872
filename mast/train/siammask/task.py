"""``mast train-baseline siammask``: SiamMask [SiamMask] trained on videos with masks.

A training sample (:mod:`mast.train.siammask.data`) is a pair of annotated
frames of one video (at most ``data.max_gap`` annotated frames apart) and one
object visible in both: the exemplar is cropped around the object in the first
frame, the search region around it in the second (context rule, 127 / 255
pixels, mean padding, through :func:`mast.ops.crops.square_crop`), each
jittered as in the paper: shifts up to
``data.exemplar_shift`` / ``data.search_shift`` crop pixels, scales ``2^(+-data.exemplar_scale)`` and
``2^(+-data.search_scale)``. The losses are :mod:`mast.train.siammask.losses`'
``L_3B = 32 L_mask + L_score + L_box`` (three-branch) or ``L_2B = 32 L_mask + L_sim``
(two-branch), with the weights of ``loss``. The one training loop runs it (Adam
and its step schedule, not the paper's SGD with warm-up).

An ``init`` backbone (a ``backbone.pt``) starts the backbone from a ``mast pretrain`` checkpoint;
``model.*`` (colour space, widths, blocks) is then taken from that checkpoint and
the output stride set to 8, whatever the config says. The run leaves
``model.pt`` (:meth:`mast.models.siammask.model.SiamMask.save`: configs, the
``tracker`` section, weights), which ``load_tracker("siammask", checkpoint)`` reads.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mast.data.annotated import annotated_summary, discover_annotated, log_annotated
from mast.models.siammask.geometry import SEARCH_SIZE, make_anchors
from mast.models.siammask.model import SiamMask
from mast.models.siammask.tracker import SiamMaskTracker
from mast.train import checkpoint as ckpt
from mast.train.distributed import World
from mast.train.tasks import AnnotatedBaselineTask
from mast.train.siammask import losses
from mast.train.siammask.data import PairDataset, collate_pairs


class SiamMaskTask(AnnotatedBaselineTask):
    """SiamMask on the annotated videos under ``root`` (a :class:`~mast.train.tasks.TrainingTask`).

    Args:
        config: a resolved :class:`~mast.train.siammask.config.SiamMaskTrainingConfig`.
        root: a DAVIS or YouTube-VOS folder (:func:`mast.data.annotated.discover_annotated`).
        sequences: the sequences to train on; None: every sequence with masks.
        year: mask format (2016: 0/255, one object; 2017: palette ids).
        init: a ``mast pretrain`` backbone to start from; its architecture replaces ``model.*``.
    """

    def build(self, world: World) -> SiamMask:
        config, self.world = self.config, world
        self.videos = discover_annotated(self.root, self.sequences, self.year)
        torch.manual_seed(config.train.seed)
        self.model = SiamMask(config.model, config.siammask).to(world.device)
        if self.init_state is not None:
            self.model.load_backbone(self.init_state)
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

