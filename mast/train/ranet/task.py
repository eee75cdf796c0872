"""``mast train-baseline ranet``: RANet [RANet] trained on videos with masks (docs/baselines.md §7.3).

The task of the one training loop (:mod:`mast.train.loop`): samples of
:mod:`mast.train.ranet.data` (template, current frame, perturbed previous
mask, one object each), the model of :mod:`mast.models.ranet.model`, the loss the
config's ``loss`` names (``bce``, ``soft-iou`` [Thesis] Eq. 3.1-3.3, or
``both``, their sum). The run leaves ``model.pt`` (:meth:`RANet.save`), which
``load_tracker("ranet", "RUN/model.pt")`` reads.

With an ``init`` backbone (a ``backbone.pt``) the backbone starts from a ``mast pretrain``
backbone and ``model.*`` is that checkpoint's (colour space, widths, feature
size), at output stride 8; the config's own ``model.*`` is then ignored.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mast.data.annotated import annotated_summary, discover_annotated, log_annotated
from mast.models.ranet.model import RANet
from mast.models.ranet.tracker import MIN_CROP, RANetTracker, loose_box
from mast.train import checkpoint as ckpt
from mast.train.distributed import World
from mast.train.panels import crop_tile, mask_tile, tile_rows
from mast.train.tasks import AnnotatedBaselineTask
from mast.train.ranet.data import RANetDataset, collate_samples
from mast.train.ranet.losses import mask_losses


class RANetTask(AnnotatedBaselineTask):
    """RANet training on the annotated videos under ``root`` (see :mod:`mast.train.tasks`).

    Args:
        config: a resolved :class:`~mast.train.ranet.config.RANetTrainingConfig`.
        root: a DAVIS or YouTube-VOS folder with ``Annotations/``.
        sequences: the sequences to use; None: every sequence with two or more masks.
        year: 2016 (0/255 masks, one object) or 2017 (palette object ids).
        init: a ``mast pretrain`` backbone to start from, or None.
    """

    #: The tracker the last validation scored, whose last frame :meth:`picture` shows.
    _validation_tracker: RANetTracker | None = None
    def build(self, world: World) -> RANet:
        self.world = world
        self.videos = discover_annotated(self.root, self.sequences, self.year)
        torch.manual_seed(self.config.train.seed)
        self.model = RANet(self.config.model, self.config.ranet)
        if self.init_state is not None:
            self.model.backbone.load_state_dict(self.init_state)
        self.freeze_stages(self.model.backbone, self.config.freeze)
        self.train_only(self.model, self.config.train_only)
        self.model.to(world.device)
        if world.is_main:
            log_annotated(self.videos, world.device, world.size)
        return self.model

    def describe(self) -> dict[str, Any]:
        return {**annotated_summary(self.videos), "year": self.year}

    def setup_outputs(self, out_dir: Path, world: World) -> None:
        """Nothing: RANet needs no file in its run folder before the first step."""

    def dataset(self, phase_index: int, samples: int) -> RANetDataset:
        return RANetDataset(self.videos, samples, self.config.data, self.config.train.seed, phase_index)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_samples(items)

    def losses(self, model: torch.nn.Module, batch: dict[str, Any],
               generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.hold_frozen()
        logits = model(batch["template"], batch["template_mask"], batch["current"], batch["previous"])
        self._last = {key: batch[key][0].detach() for key in ("current", "target", "previous")}
        self._last["prediction"] = torch.sigmoid(logits[0].detach().float())
        return mask_losses(logits, batch["target"], self.config.loss)

    def picture(self) -> tuple[str, torch.Tensor] | None:
        """The loose crop and the mask (issue 26), one row per view, each scaled to the sample's height.

        Training (the last batch's first sample; the box is the loose box of its previous mask, where
        the tracker would segment): the previous mask with the box | the prediction with the box |
        the prediction inside the box | the target inside the box. Validation (the last frame the
        last validation tracked, once there was one): the tracked mask with its loose box | inside it.
        """
        if self._last is None:
            return None
        last = self._last
        box = loose_box(last["previous"][None], self.model.config.crop_scale, MIN_CROP)
        rows = [[mask_tile(last["current"], last["previous"], box), mask_tile(last["current"], last["prediction"], box),
                 crop_tile(last["current"], last["prediction"], box), crop_tile(last["current"], last["target"], box)]]
        view = None if self._validation_tracker is None else self._validation_tracker.last_view
        if view is not None:
            frame, box, objects = view
            rows.append([mask_tile(frame, objects.amax(dim=0), box), crop_tile(frame, objects.amax(dim=0), box)])
        return "loose_crop_mask_train_validation", tile_rows(rows, last["current"].shape[-2])

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "backbone_config": asdict(self.model.backbone.config),
                "ranet_config": asdict(self.model.config)}

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        ckpt.restore_model(self.model, path, payload, {"backbone_config": asdict(self.model.backbone.config),
                                                       "ranet_config": asdict(self.model.config)}, "RANet")

    def validation_trackers(self) -> dict[str, RANetTracker]:
        """The model as it is now, tracking as ``load_tracker("ranet", ...)`` does."""
        self._validation_tracker = RANetTracker(self.model, self.world.device, name="training")
        return {"ranet": self._validation_tracker}

    def save_final(self, path: Path, variant: str | None = None) -> None:
        self.model.save(path)
