"""``mast train-baseline siammask``: SiamMask [SiamMask] trained on videos with masks.

A training sample (:mod:`mast.train.siammask.data`) is a pair of annotated
frames of one video (at most ``data.max_gap`` annotated frames apart) and one
object visible in both: the exemplar is cropped around the object in the first
frame, the search region around it in the second (context rule, 127 / 255
pixels, mean padding, through :func:`mast.ops.crops.square_crop`), each
jittered as in the paper: shifts up to
``data.exemplar_shift`` / ``data.search_shift`` crop pixels, scales ``2^(+-data.exemplar_scale)`` and
``2^(+-data.search_scale)``; optionally mirrored and colour-jittered. A share
``data.negative`` of the pairs is negative: the search region comes from another
video, every RoW (anchor) is background and no mask is learnt. The losses are :mod:`mast.train.siammask.losses`'
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

from mast.data.annotated import annotated_summary, discover_annotated, log_annotated
from mast.models.siammask.geometry import EXEMPLAR_SIZE, decode_boxes, make_anchors, row_coordinates, unravel_rows
from mast.models.siammask.model import SiamMask
from mast.models.siammask.tracker import SearchView, SiamMaskTracker, window_in_search
from mast.train import checkpoint as ckpt
from mast.train.distributed import World
from mast.train.panels import search_tiles, tile_rows
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
        self.freeze_stages(self.model.backbone, self.config.freeze)
        self.train_only(self.model, self.config.train_only)
        self.anchors = make_anchors(config.siammask.anchor_ratios, config.siammask.anchor_scale, world.device)
        if world.is_main:
            log_annotated(self.videos, world.device, world.size)
        self._validation: SiamMaskTracker | None = None
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
        """``loss``, its components ``score`` (two-branch: ``similarity``), ``box``, ``mask``, and the
        class balance of each (:meth:`_balance`)."""
        net, weights = self.config.siammask, self.config.loss
        hard = weights.negative_ratio if weights.hard_negatives else None
        self.hold_frozen()
        boxes, pairs = batch["box"].float(), batch["positive"].view(-1, 1, 1)  # negative pairs: all background
        if net.branches == 3:
            labels, deltas = losses.anchor_labels(self.anchors, boxes, weights.positive_iou, weights.negative_iou)
            labels = torch.where(pairs.unsqueeze(1), labels, 0)
            rows = losses.positive_rows((labels == 1).any(dim=1))
        else:
            positive = losses.similarity_labels(boxes, weights.positive_radius) & pairs
            rows = losses.positive_rows(positive)
        masked = net.mask and len(rows) > 0  # a batch of negative pairs only has no mask to learn
        out = model(batch["exemplar"], batch["search"], rows if masked else None, batch["exemplar_mask"])
        parts: dict[str, torch.Tensor] = {}
        if net.branches == 3:
            terms = losses.score_terms(out["score"].float(), labels, hard)
            parts["score"] = sum(terms) / 2
            parts["box"] = losses.box_loss(out["box"].float(), deltas, labels)
            total = weights.score_weight * parts["score"] + weights.box_weight * parts["box"]
            parts.update(self._balance("score", terms, (labels == 1).float().mean()))
        else:
            terms = losses.similarity_terms(out["score"].float(), positive, hard)
            parts["similarity"] = sum(terms) / 2
            total = weights.score_weight * parts["similarity"]
            parts.update(self._balance("similarity", terms, positive.float().mean()))
        if masked:
            targets = losses.mask_targets(batch["search_mask"], rows, net.mask_size)
            pixels = losses.mask_pixel_losses(out["masks"].float(), targets)
            terms = losses.class_means(pixels, targets > 0, targets < 0)
            # balanced: object and background pixels weigh half each, as the score's classes do
            parts["mask"] = sum(terms) / 2 if weights.mask_balance else pixels.mean()
            total = total + weights.mask_weight * parts["mask"]
            parts.update(self._balance("mask", terms, (targets > 0).float().mean()))
            parts["mask_predicted_fraction"] = (out["masks"].detach() > 0).float().mean()
        self._last = (batch, {key: _first(value) for key, value in out.items() if key != "masks"})
        return {"loss": total, **parts}

    @staticmethod
    def _balance(name: str, terms: tuple[torch.Tensor, torch.Tensor], fraction: torch.Tensor) -> dict[str, torch.Tensor]:
        """A loss's class balance, logged beside it: ``<name>_object`` / ``<name>_background`` (the
        mean loss of each class) and ``<name>_object_fraction`` (the share of object anchors, RoWs
        or mask pixels)."""
        return {f"{name}_object": terms[0].detach(), f"{name}_background": terms[1].detach(),
                f"{name}_object_fraction": fraction.detach()}

    def picture(self) -> tuple[str, torch.Tensor] | None:
        """``(3, 255, 765)``: the last batch's first pair (:meth:`_training_view`) as
        :func:`~mast.train.panels.search_tiles` draws it, beside the ground truth; once the model
        has been validated, a second row below: the last validation frame's tracking step."""
        if self._last is None:
            return None
        batch, _ = self._last
        rows = [search_tiles(self._training_view(), batch["box"][0], batch["search_mask"][0, 0] > 0.5)]
        view = None if self._validation is None else self._validation.view
        if view is not None:
            rows.append(search_tiles(view))
        return "search_score_box_mask", tile_rows(rows, rows[0][0].shape[-2])

    @torch.no_grad()
    def _training_view(self) -> SearchView:
        """The first pair of the last batch as the tracker would see it: its best RoW (three-branch:
        anchor) by score, that anchor's decoded box (two-branch: the RoW's window), its mask."""
        batch, out = self._last
        score = out["score"][0].float()
        if self.config.siammask.branches == 3:
            probabilities = score.softmax(dim=1)[:, 1]  # (k, 17, 17)
            anchor, i, j = unravel_rows(probabilities.flatten().argmax())
            box = decode_boxes(out["box"][0, anchor, :, i, j].float(), self.anchors[anchor, i, j])
            score = probabilities.max(dim=0).values
        else:
            score = score[0].sigmoid()
            _, i, j = unravel_rows(score.flatten().argmax())
            coords = row_coordinates(score.device)
            box = torch.stack([coords[j], coords[i], coords.new_tensor(EXEMPLAR_SIZE), coords.new_tensor(EXEMPLAR_SIZE)])
        mask = None
        if self.config.siammask.mask:
            row = torch.tensor([[0, i, j]], device=score.device)
            mask = window_in_search(self.model.row_masks(out, row)[0].float().sigmoid(), row[0, 1:])
        return SearchView(batch["search"][0].float(), score, box, mask)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "backbone_config": asdict(self.config.model),
                "siammask_config": asdict(self.config.siammask)}

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        ckpt.restore_model(self.model, path, payload, {"backbone_config": asdict(self.config.model),
                                                       "siammask_config": asdict(self.config.siammask)}, "SiamMask")

    def validation_trackers(self) -> dict[str, SiamMaskTracker]:
        """The model as it is now, tracking with the config's ``tracker`` settings."""
        self._validation = SiamMaskTracker(self.model, self.config.tracker, self.world.device, name="training")
        self._validation.record_view = True  # the last validation frame becomes the second row of picture()
        return {"siammask": self._validation}

    def save_final(self, path: Path, variant: str | None = None) -> None:
        self.model.save(path, tracker=asdict(self.config.tracker))



def _first(value: Any) -> Any:
    """The first sample of a batched tensor (or of each tensor of a list), detached."""
    if isinstance(value, list):
        return [_first(item) for item in value]
    return value[:1].detach()
