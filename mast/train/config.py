"""The training config: one schema of dataclasses, YAML files, dotted ``key=value`` overrides.

:class:`TrainingConfig` nests the model's own configs (``model``:
:class:`BackboneConfig`, ``engine``: :class:`EngineConfig`, ``memory``:
:class:`ReferencePolicy`) beside the sections that only training has
(``objective``, ``data``, ``train``, ``phases``). A YAML file holds any part
of it; what it leaves out keeps the default, a typo is an error naming the key
and listing the known ones, and every value is checked by the ``__post_init__``
of the dataclass it belongs to, so a bad value fails up front, before a run
writes anything. Loading and overrides are :mod:`mast.common.config`'s.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mast.common.config import ConfigError, apply_overrides, complete, from_dict, read_yaml, require, to_dict
from mast.common.files import atomic_write_text
from mast.common.references import ReferencePolicy
from mast.models.backbone import BackboneConfig
from mast.models.engine import EngineConfig
from mast.models.protocol import COSINE, DOT, PRESETS, PropagationKnobs

OBJECTIVES = ("lab-huber", "kmeans-ce", "mask-ce")
T = TypeVar("T")

#: The largest side of a training crop, in pixels (``data.size``). A crop is cut from a frame
#: and resized to this side, so a side larger than the frame only upsamples it (no detail is
#: gained) while memory grows with its square: the clip alone is ``batch x frames x 3 x size^2``
#: floats (2.4 GB at 2048 for 24 pairs), the backbone's activations many times that. 2048 is
#: above the longer side of full-HD video (1920), the largest footage training usually reads,
#: so no crop at a frame's own resolution is refused; the recipes train at 256.
MAX_CROP_SIZE = 2048


@dataclass(frozen=True)
class ObjectiveConfig:
    """What is reconstructed and how it is scored (:mod:`mast.train.objectives`).

    Attributes:
        name: lab-huber (MAST) | kmeans-ce (CorrFlow) | mask-ce (supervised upper bound).
        upsample: compare at full resolution (thesis Table 4.3), not at feature resolution.
        huber_scale: lab-huber: reconstruction and target are scaled by this before the Huber loss.
        clusters: kmeans-ce: number of colour centroids.
        centroids: kmeans-ce: a centroids file; None: ``OUT/centroids.json``, built from
            the training videos when missing.
        keep_all_prob: kmeans-ce: CorrFlow's channel dropout keeps every channel this often.
        max_objects: mask-ce: object ids ``1..max_objects``.
    """

    name: str = "lab-huber"
    upsample: bool = True
    huber_scale: float = 20.0
    clusters: int = 16
    centroids: str | None = None
    keep_all_prob: float = 0.3
    max_objects: int = 10

    def __post_init__(self) -> None:
        require(self.name in OBJECTIVES, "name", f"must be one of {', '.join(OBJECTIVES)}", self.name)
        require(self.huber_scale > 0, "huber_scale", "must be a number > 0", self.huber_scale)
        require(self.clusters >= 1, "clusters", "must be an integer >= 1", self.clusters)
        require(self.centroids is None or bool(self.centroids), "centroids", "must be a file path or null", self.centroids)
        require(0 <= self.keep_all_prob <= 1, "keep_all_prob", "must be a probability in [0, 1]", self.keep_all_prob)
        require(self.max_objects >= 1, "max_objects", "must be an integer >= 1", self.max_objects)


@dataclass(frozen=True)
class DataConfig:
    """Clips: their size, augmentation and loading.

    Attributes:
        size: side of the square training crops, in pixels (at most :data:`MAX_CROP_SIZE`).
        frame_stride: use every n-th frame of a video.
        scale: ``(low, high)`` area fractions of the random crops.
        hflip: probability of a horizontal flip.
        rotate90: also rotate clips by multiples of 90 degrees.
        workers: DataLoader worker processes (0: load in the training process).
    """

    size: int = 256
    frame_stride: int = 1
    scale: tuple[float, float] = (0.25, 1.0)
    hflip: float = 0.5
    rotate90: bool = False
    workers: int = 2

    def __post_init__(self) -> None:
        require(1 <= self.size <= MAX_CROP_SIZE, "size", f"must be an integer of pixels in 1..{MAX_CROP_SIZE} "
                "(a larger crop only upsamples the frames, at a memory cost that grows with its square)", self.size)
        require(self.frame_stride >= 1, "frame_stride", "must be an integer >= 1", self.frame_stride)
        require(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1, "scale",
                "must be [low, high] with 0 < low <= high <= 1", self.scale)
        require(0 <= self.hflip <= 1, "hflip", "must be a probability in [0, 1]", self.hflip)
        require(self.workers >= 0, "workers", "must be an integer >= 0", self.workers)


@dataclass(frozen=True)
class AnnotatedDataConfig:
    """Frames with masks for the supervised baselines (:mod:`mast.data.annotated`).

    Attributes:
        max_gap: frames of one training sample are at most this many annotated frames apart.
        workers: DataLoader worker processes (0: load in the training process).
    """

    max_gap: int = 20
    workers: int = 2

    def __post_init__(self) -> None:
        require(self.max_gap >= 1, "max_gap", "must be an integer >= 1", self.max_gap)
        require(self.workers >= 0, "workers", "must be an integer >= 0", self.workers)


def require_freeze(freeze: int, model: BackboneConfig) -> None:
    """A baseline's ``freeze``: how many of the backbone's stages (the stem, layer1, ...) keep the
    ``init`` backbone's weights, 0 up to all of them."""
    require(0 <= freeze <= model.stages + 1, "freeze",
            f"must be an integer in 0..{model.stages + 1} (the stem and layer1..layer{model.stages})", freeze)


def require_train_only(parts: tuple[str, ...]) -> None:
    """A baseline's ``train_only``: the model's parts to train, as dotted names (``decoder.out``,
    ``prior_gain``); they are checked against the model when it is built
    (:meth:`~mast.train.tasks.AnnotatedBaselineTask.train_only`)."""
    for part in parts:
        require(isinstance(part, str) and part.strip() == part and part != "", "train_only",
                "must be a list of the model's parts, dotted names (non-empty, no spaces around)", list(parts))


@dataclass(frozen=True)
class ValidationConfig:
    """How validation (:class:`~mast.train.validation.Validator`) scores the backbone during training (:mod:`mast.train.validation`).

    Attributes:
        every: validate every this many steps (a validator's ``every`` overrides it).
        max_frames: track only the first this many frames of each sequence (None: all).
        preset: the propagation preset the candidates modify (quick: frame 0 and the
            3 previous frames, 13x13 windows, no ROI: affordable on a CPU).
        candidates: propagation knobs tried at every validation; the best one is saved
            in ``backbone.pt`` (instead of the ``propagation`` section) for ``mast propagate``.
        patience: early stopping: end the run after this many validations in a row that
            do not beat the best by more than ``min_delta`` (None: train to the end or budget).
        min_delta: the smallest validation J&F gain that counts as better (a new best).
        at_start: also validate before the first step (step 0): the learning curve then starts
            from the model as it was given (its ``init``), so it shows what training added.
    """

    every: int = 500
    max_frames: int | None = 40
    preset: str = "quick"
    # MAST's raw dot products, and the cosine protocol briefly trained features need.
    candidates: tuple[PropagationKnobs, ...] = (DOT, COSINE)
    patience: int | None = None
    min_delta: float = 0.0
    at_start: bool = False

    def __post_init__(self) -> None:
        require(self.every >= 1, "every", "must be an integer >= 1", self.every)
        require(self.max_frames is None or self.max_frames >= 3, "max_frames",
                "must be an integer >= 3 (first and last frames are not scored) or null", self.max_frames)
        require(self.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}", self.preset)
        require(bool(self.candidates), "candidates", "must list at least one set of propagation knobs",
                list(self.candidates))
        require(self.patience is None or self.patience >= 1, "patience", "must be an integer >= 1 or null",
                self.patience)
        require(self.min_delta >= 0, "min_delta", "must be >= 0", self.min_delta)


@dataclass(frozen=True)
class RunConfig:
    """How a run goes: batches, precision, logging, checkpoints, budget, device.

    Attributes:
        seed: seeds the initial weights and every step's random choices.
        batch_size: clips per step on every process.
        clip_grad: gradient norm clipping threshold.
        amp: mixed precision on CUDA (ignored on the CPU).
        log_every / image_every: TensorBoard scalars / pictures every this many steps.
        checkpoint_every: a checkpoint every this many steps of a phase (and at its end).
        max_bad_steps: consecutive non-finite losses before the run aborts.
        time_budget_minutes: stop (with a checkpoint and ``backbone.pt``) after this much
            training time (validation excluded; a resumed run gets what is left of it);
            None: run every phase to its end.
        device: auto, cpu, cuda or cuda:N.
    """

    seed: int = 0
    batch_size: int = 24
    clip_grad: float = 1.0
    amp: bool = True
    log_every: int = 10
    image_every: int = 200
    checkpoint_every: int = 1000
    max_bad_steps: int = 10
    time_budget_minutes: float | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        require(self.seed >= 0, "seed", "must be an integer >= 0", self.seed)
        for name in ("batch_size", "log_every", "image_every", "checkpoint_every", "max_bad_steps"):
            require(getattr(self, name) >= 1, name, "must be an integer >= 1", getattr(self, name))
        require(self.clip_grad > 0, "clip_grad", "must be a number > 0", self.clip_grad)
        require(self.time_budget_minutes is None or self.time_budget_minutes > 0, "time_budget_minutes",
                "must be a number of minutes > 0 or null", self.time_budget_minutes)
        require(bool(self.device.strip()), "device", "must be a device name (auto, cpu, cuda, cuda:N)", self.device)


@dataclass(frozen=True)
class PhaseConfig:
    """One phase of a run: its clips, length and learning-rate schedule.

    Attributes:
        name: shown on the progress bar.
        mode: pairs (query + one reference, MAST phase 1) or memory (the full
            long/short-term memory of ``TrainingConfig.memory``).
        steps: optimiser steps.
        lr: Adam's learning rate at the start of the phase.
        lr_milestones: fractions of ``steps`` at which the rate is multiplied by ``lr_gamma``.
        lr_gamma: the factor at each milestone.
        pair_gaps: pairs mode: the frame gaps between query and reference ...
        pair_gap_probs: ... and how often each is drawn (one per gap, summing to 1).
    """

    name: str = "phase"
    mode: str = "pairs"
    steps: int = 1000
    lr: float = 1.0e-3
    lr_milestones: tuple[float, ...] = (0.4, 0.6, 0.8)
    lr_gamma: float = 0.5
    pair_gaps: tuple[int, ...] = (2, 5, 8)
    pair_gap_probs: tuple[float, ...] = (0.4, 0.4, 0.2)

    def __post_init__(self) -> None:
        require(bool(self.name), "name", "must be a non-empty name", self.name)
        require(self.mode in ("pairs", "memory"), "mode", "must be pairs or memory", self.mode)
        require(self.steps >= 1, "steps", "must be an integer >= 1", self.steps)
        require(self.lr > 0, "lr", "must be a number > 0", self.lr)
        require(all(0 < f < 1 for f in self.lr_milestones), "lr_milestones",
                "must be a list of fractions of the phase's steps, each in (0, 1)", self.lr_milestones)
        require(self.lr_gamma > 0, "lr_gamma", "must be a number > 0", self.lr_gamma)
        require(bool(self.pair_gaps) and min(self.pair_gaps) >= 1, "pair_gaps",
                "must be a non-empty list of frame gaps >= 1", self.pair_gaps)
        require(all(0 <= p <= 1 for p in self.pair_gap_probs), "pair_gap_probs",
                "must be a list of probabilities in [0, 1]", self.pair_gap_probs)
        require(len(self.pair_gap_probs) == len(self.pair_gaps) and math.isclose(sum(self.pair_gap_probs), 1.0,
                                                                                  abs_tol=1e-6),
                "pair_gap_probs", f"must give one probability per pair gap {list(self.pair_gaps)} and sum to 1",
                self.pair_gap_probs)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything a training run is given (``config.yaml`` of a run folder).

    The defaults are MAST's first phase; ``configs/*.yaml`` hold the recipes.
    ``engine`` defaults to the training window 13 (25 at test time, ``mast propagate``).
    """

    model: BackboneConfig = field(default_factory=BackboneConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(window=13))
    memory: ReferencePolicy = field(default_factory=ReferencePolicy.mast)
    data: DataConfig = field(default_factory=DataConfig)
    train: RunConfig = field(default_factory=RunConfig)
    phases: tuple[PhaseConfig, ...] = (PhaseConfig(name="pairs"),)
    propagation: PropagationKnobs = field(default_factory=PropagationKnobs)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        require(bool(self.phases), "phases", "must be a non-empty list of phase mappings", list(self.phases))
        # The backbone reads colour frames, and lab-huber reconstructs their LAB channels.
        require(self.model.in_channels == 3, "model.in_channels", "must be 3 (colour frames)", self.model.in_channels)
        if self.objective.name == "lab-huber" and self.model.colour_space != "lab":
            raise ConfigError("objective.name lab-huber reconstructs LAB colour: it needs model.colour_space lab, "
                              f"got {self.model.colour_space!r}")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                schema: type[T] = TrainingConfig) -> T:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides
    (see :func:`mast.common.config.apply_overrides`), checked once all are in.

    ``schema``: the run's config dataclass (:class:`TrainingConfig` for
    ``mast pretrain``; each baseline of ``mast train-baseline`` has its own,
    with the same ``train`` and ``phases`` sections).

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: one line naming the key (and the file, for the file's own errors).
    """
    data: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = complete(schema, read_yaml(path.read_text()) or {})
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    data = apply_overrides(data, overrides or [], schema)
    try:
        return from_dict(schema, data)
    except ConfigError as error:
        if path is not None and not overrides:
            raise ConfigError(f"{path}: {error}") from None
        raise


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Writes the config as YAML (sections in schema order, lists for tuples), atomically;
    :func:`load_config` reads it back equal."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
