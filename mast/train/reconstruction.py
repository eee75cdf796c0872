"""Self-supervised reconstruction, the task of ``mast pretrain`` and ``mast finetune``.

A query frame's colour (lab-huber), colour-cluster labels (kmeans-ce) or,
as a supervised upper bound, object labels (mask-ce) are reconstructed from
reference frames of the same clip through the memory engine
(docs/algorithm.md §1-4). The run leaves ``backbone.pt`` with the
propagation knobs of the config's ``propagation`` section.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mast.data.augment import ClipAugment
from mast.data.clips import ClipDataset, collate_clips
from mast.data.video import discover_videos
from mast.models.backbone import ResNetBackbone
from mast.models.builder import load_tracker
from mast.models.engine import ReconstructionEngine
from mast.models.memory import Reference
from mast.models.protocol import PropagationKnobs
from mast.models.tracker import Tracker
from mast.train import checkpoint as ckpt
from mast.train import distributed
from mast.train.centroids import ensure_centroids
from mast.train.config import ObjectiveConfig, PhaseConfig, TrainingConfig
from mast.train.distributed import World
from mast.train.objectives import KMeansCrossEntropy, LabHuber, MaskCrossEntropy, Objective, Prepared

logger = logging.getLogger(__name__)


def build_objective(objective: ObjectiveConfig, backbone: ResNetBackbone, centroids: torch.Tensor | None) -> Objective:
    """The objective ``objective.name`` names; ``centroids`` ``(k, 3)`` are kmeans-ce's."""
    if objective.name == "lab-huber":
        return LabHuber(objective.upsample, objective.huber_scale)
    if objective.name == "kmeans-ce":
        return KMeansCrossEntropy(centroids, backbone.prepare, objective.upsample, objective.keep_all_prob)
    return MaskCrossEntropy(objective.max_objects, backbone.prepare, objective.upsample)


def reconstruct(
    model: torch.nn.Module, engine: ReconstructionEngine, batch: dict[str, Any], prepared: Prepared
) -> torch.Tensor:
    """The query frame of every clip reconstructed from its other frames: ``(B, K, h, w)``."""
    clips, count = prepared.inputs.shape[:2]
    # The engine runs in float32 even under autocast: raw dot products of
    # 64-d features overflow float16 as training sharpens them.
    features = model(prepared.inputs.flatten(0, 1)).unflatten(0, (clips, count)).float()
    size = features.shape[-2:]
    values = F.interpolate(prepared.values.flatten(0, 1), size=size, mode="area").unflatten(0, (clips, count))
    indices, valid = batch["indices"].cpu(), batch["valid"]
    query = indices[:, -1]
    references = [
        Reference(
            features[:, j], values[:, j].to(features.dtype),
            distance=(query - indices[:, j]).clamp_min(1).tolist(),
            valid=None if bool(valid[:, j].all()) else valid[:, j].to(features.device),
        )
        for j in range(count - 1)
    ]
    return engine(features[:, -1], references)


class ReconstructionTask:
    """Pretraining (``init`` None) or fine-tuning (``init``: weights to start from) on ``data``.

    Args:
        config: a resolved :class:`TrainingConfig`.
        data: folders/files of videos (see :func:`mast.data.video.discover_videos`).
        init: ``backbone.pt`` or a training checkpoint to start the backbone from, or None.
        centroids_path: kmeans-ce's centroids file when ``objective.centroids`` names none
            (the run folder's ``centroids.json``).
    """

    final_name = "backbone.pt"

    def __init__(self, config: TrainingConfig, data: list[str], init: str | Path | None = None,
                 centroids_path: Path | None = None) -> None:
        self.config, self.inputs = config, [str(d) for d in data]
        self.init = None if init is None else Path(init)
        self.centroids_path = centroids_path
        self.centroids: torch.Tensor | None = None
        self._last: tuple | None = None

    def build(self, world: World) -> torch.nn.Module:
        config = self.config
        self.world = world
        self.sources = discover_videos(self.inputs, frame_stride=config.data.frame_stride)
        # Built now, not per phase, so that data unfit for a phase fails before anything is written.
        self.datasets = [self._phase_dataset(phase) for phase in config.phases]
        torch.manual_seed(config.train.seed)
        self.backbone = ResNetBackbone(config.model).to(world.device)
        if self.init is not None:
            self.backbone.load_state_dict(ckpt.read_init_weights(self.init, self.backbone))
        self.engine = ReconstructionEngine(config.engine)
        if world.is_main:
            logger.info("%d videos (%d unreadable, skipped) on %s, %d process(es)", len(self.sources),
                        self.sources.num_skipped, world.device, world.size)
        return self.backbone

    def describe(self) -> dict[str, Any]:
        return {"videos": len(self.sources), "skipped_videos": [str(p) for p, _ in self.sources.skipped]}

    def setup_outputs(self, out_dir: Path, world: World) -> None:
        """kmeans-ce: reads (rank 0 first builds, when missing) the colour centroids."""
        objective = self.config.objective
        if objective.name == "kmeans-ce":
            self.centroids = self._centroids(self.centroids_path or out_dir / "centroids.json", world)
        self.objective = build_objective(objective, self.backbone, self.centroids)

    def _centroids(self, default: Path, world: World) -> torch.Tensor:
        objective = self.config.objective
        path = Path(objective.centroids) if objective.centroids else default
        if world.is_main and not path.exists():
            logger.info("building %d colour centroids from the training videos -> %s", objective.clusters, path)
        # Rank 0 goes first (building a missing file); the others wait, then read what it wrote.
        if not world.is_main:
            distributed.barrier(world)
        centroids = ensure_centroids(path, self.inputs, k=objective.clusters,
                                     frame_stride=self.config.data.frame_stride, seed=self.config.train.seed)
        if world.is_main:
            distributed.barrier(world)
        return centroids

    def _phase_dataset(self, phase: PhaseConfig) -> ClipDataset:
        data, train = self.config.data, self.config.train
        return ClipDataset(
            self.sources,
            samples_per_epoch=phase.steps * train.batch_size * self.world.size,
            transform=ClipAugment(output_size=(data.size, data.size), scale=data.scale,
                                  hflip_prob=data.hflip, rotate90=data.rotate90),
            seed=train.seed, mode=phase.mode, pair_gaps=phase.pair_gaps, pair_gap_probs=phase.pair_gap_probs,
            policy=self.config.memory, with_masks=self.config.objective.name == "mask-ce",
        )

    def dataset(self, phase_index: int, samples: int) -> ClipDataset:
        dataset = self.datasets[phase_index]
        dataset.set_epoch(phase_index)
        return dataset

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_clips(items)

    def losses(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        prepared = self.objective.prepare(batch, generator)
        reconstruction = reconstruct(model, self.engine, batch, prepared)
        self._last = (batch["frames"], prepared, reconstruction.detach())
        return {"loss": self.objective.loss(reconstruction, prepared)}

    def picture(self) -> tuple[str, torch.Tensor] | None:
        if self._last is None:
            return None
        from mast.train.panels import class_colours, reconstruction_panel

        frames, prepared, reconstruction = self._last
        colours = class_colours(self.objective.name, reconstruction.shape[1], self.centroids)
        return "query_target_reconstruction", reconstruction_panel(self.objective, frames, prepared,
                                                                   reconstruction, colours)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.backbone.state_dict(), "backbone_config": self.backbone.config.__dict__,
                "centroids": self.centroids}

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        if "backbone_config" not in payload:
            raise ValueError(f"{path} is not a mast pretraining checkpoint (no backbone_config)")
        ckpt.check_architecture(path, payload["backbone_config"], self.backbone,
                                f"this run's config ({path.parent.parent / 'config.yaml'}) builds")
        self.backbone.load_state_dict(ckpt.matching_state(path, payload["model"], self.backbone))

    def _candidates(self) -> dict[str, PropagationKnobs]:
        return {knobs.label(): knobs for knobs in self.config.validation.candidates}

    def validation_trackers(self) -> dict[str, Tracker]:
        """The backbone under the validation preset with each candidate's knobs."""
        preset = self.config.validation.preset
        return {name: load_tracker("mast", self.backbone, preset, self.world.device, **knobs.as_overrides())
                for name, knobs in self._candidates().items()}

    def save_final(self, path: Path, variant: str | None = None) -> None:
        """``backbone.pt`` with the knobs of ``variant`` (a validation candidate) or else the
        config's ``propagation`` section."""
        self.backbone.save(path, self.config.propagation if variant is None else self._candidates()[variant])
