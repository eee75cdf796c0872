"""What one kind of training learns, for the one training loop (:mod:`mast.train.loop`).

The loop owns everything that every kind of training shares: processes and
devices, step-indexed sampling and seeding, the optimiser and its schedule,
mixed precision, gradient clipping, non-finite steps, the time budget,
TensorBoard, the progress bar, atomic checkpoints and exact resume. A
:class:`TrainingTask` owns the rest: its data, its model, its losses, its
pictures, what its checkpoints must hold and the file a finished run leaves.

Tasks: :class:`mast.train.reconstruction.ReconstructionTask` (``mast
pretrain``/``finetune``: self-supervised reconstruction, ``backbone.pt``)
and the supervised baselines of ``mast train-baseline`` (``model.pt``), each
registered in :mod:`mast.train.baselines` with its config schema and its task
class, which :class:`BaselineTaskFactory` says how to call.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from mast.models.tracker import Tracker
from mast.train.checkpoint import read_backbone_init
from mast.train.distributed import World


class TrainingTask(Protocol):
    """One kind of training.

    Attributes:
        config: the run's config dataclass; the loop reads its ``train``
            (:class:`~mast.train.config.RunConfig`) and ``phases``
            (:class:`~mast.train.config.PhaseConfig`) sections and saves it as
            ``config.yaml``.
        inputs: the folders/files it reads (an output folder may not be, hold or
            lie inside one of them).
        final_name: the file a finished run leaves in its folder (``backbone.pt``, ``model.pt``).
    """

    config: Any
    inputs: list[str]
    final_name: str

    def build(self, world: World) -> nn.Module:
        """Checks the data and builds the model to train on ``world.device`` (with its
        ``init`` weights); writes nothing. Raises ValueError/FileNotFoundError, one line."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the data it found, recorded in ``run.json`` (e.g. video counts)."""
        ...

    def setup_outputs(self, out_dir: Path, world: World) -> None:
        """Writes what the run needs in its folder before the first step (called once
        every check passed, on every rank); most tasks need nothing."""
        ...

    def dataset(self, phase_index: int, samples: int) -> torch.utils.data.Dataset:
        """``samples`` items of phase ``phase_index``; item ``i`` depends only on
        ``(seed, phase, i)``. Items are dicts; :meth:`collate` batches them."""
        ...

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """A batch of :meth:`dataset` items; ``skipped_clips`` (int) counts replaced unreadable items."""
        ...

    def losses(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The losses of one batch (its tensors on the device): ``"loss"``, the scalar to
        minimise, and any components, each logged to TensorBoard as ``train/<name>``."""
        ...

    def picture(self) -> tuple[str, torch.Tensor] | None:
        """``(name, (3, H, W) float in [0, 1])``: what the last batch looked like, logged to
        TensorBoard as ``train/<name>``; None when there is nothing to show."""
        ...

    def checkpoint_state(self) -> dict[str, Any]:
        """What a training checkpoint holds beside the loop's own state: at least
        ``"model"`` (the weights) and what identifies the architecture."""
        ...

    def restore(self, path: Path, payload: dict[str, Any]) -> None:
        """Loads a :meth:`checkpoint_state` payload read from ``path`` into the model;
        a checkpoint of another architecture is a one-line ValueError naming both."""
        ...

    def validation_trackers(self) -> dict[str, Tracker]:
        """The ways to track with the model as it is now, by name (e.g. one per
        propagation protocol), each scored by the run's validator."""
        ...

    def save_final(self, path: Path, variant: str | None = None) -> None:
        """Writes the trained model to ``path`` (``final_name`` in the run folder, or
        ``best-<final_name>``), atomically, set up to track as ``variant`` (a name of
        :meth:`validation_trackers`) did best; None: as configured."""
        ...


class BaselineTaskFactory(Protocol):
    """How a supervised baseline's :class:`TrainingTask` is made: its class, called as
    ``Task(config, root, sequences, year, init)`` by ``mast train-baseline`` (the
    registry, :mod:`mast.train.baselines`, names the class beside its config schema)."""

    def __call__(self, config: Any, root: Path, sequences: list[str] | None = None, year: int = 2017,
                 init: Path | None = None) -> TrainingTask:
        """The task of one run; reads nothing but ``init`` (see :meth:`TrainingTask.build`).

        Args:
            config: the run's resolved config, an instance of the baseline's registered schema.
            root: a DAVIS or YouTube-VOS folder with ``Annotations/``.
            sequences: the sequences to train on; None: every sequence with masks.
            year: mask format: 2016 (0/255 masks, one object) or 2017 (palette object ids).
            init: a ``mast pretrain`` backbone to start the backbone from, or None. It is read
                here, not in ``build``: its architecture replaces the config's ``model.*``, and
                the loop saves :attr:`TrainingTask.config` as the run's ``config.yaml``.
        """
        ...


class AnnotatedBaselineTask:
    """What the supervised baselines' tasks share, made as :class:`BaselineTaskFactory` says: the
    annotated videos they train on and the ``mast pretrain`` backbone they may start from.

    ``init`` is read here, not in ``build``: its architecture replaces the config's ``model.*``
    (at the baselines' output stride 8), and the loop saves :attr:`config` as ``config.yaml``;
    :attr:`init_state` holds its weights for ``build``.
    """

    final_name = "model.pt"

    def __init__(self, config: Any, root: str | Path, sequences: list[str] | None = None, year: int = 2017,
                 init: str | Path | None = None) -> None:
        self.root, self.sequences, self.year = Path(root), sequences, year
        self.inputs = [str(root)]
        self.init = None if init is None else Path(init)
        self.init_state: dict[str, torch.Tensor] | None = None
        if self.init is not None:
            backbone, self.init_state = read_backbone_init(self.init, output_stride=8)
            config = replace(config, model=backbone)
        self.config = config
        self._last: Any = None  # what the last step saw, for the TensorBoard pictures
        #: The backbone stages :meth:`freeze_stages` keeps as they start.
        self.frozen: list[nn.Module] = []

    def freeze_stages(self, backbone: nn.Module, count: int) -> None:
        """Keeps the first ``count`` stages of ``backbone`` (the stem, layer1, layer2, ...) as they
        start: no gradient, and (with :meth:`hold_frozen` at every step) their BatchNorm statistics."""
        self.frozen = [backbone.stem, *backbone.layers][:count]
        for module in self.frozen:
            module.requires_grad_(False)

    def train_only(self, model: nn.Module, parts: tuple[str, ...]) -> None:
        """Keeps every parameter of ``model`` outside ``parts`` as it starts, and the statistics of
        every BatchNorm left without a trainable parameter (:meth:`hold_frozen`); no parts: no change.

        A part is a dotted name that selects itself and everything under it (``heads.score``
        selects ``heads.score.0.0.weight``, not ``heads.scores``): for training a few heads or
        gains of a model whose other parts must not move (docs/baselines.md, *Training part of a model*).

        Raises:
            ValueError: a part that names no parameter (the message lists the model's top-level
                parts), or only parameters ``freeze`` already keeps.
        """
        if not parts:
            return
        named = dict(model.named_parameters())
        for part in parts:
            chosen = [param for name, param in named.items() if _in_part(name, part)]
            if not chosen:
                tops = ", ".join(sorted({name.split(".")[0] for name in named}))
                raise ValueError(f"train_only: {part!r} names no parameter of the model; its parts are {tops}")
            if not any(param.requires_grad for param in chosen):
                raise ValueError(f"train_only: {part!r} names only parameters that freeze keeps")
        for name, param in named.items():
            if not any(_in_part(name, part) for part in parts):
                param.requires_grad_(False)
        self.frozen += [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
                        and not any(param.requires_grad for param in module.parameters())]

    def hold_frozen(self) -> None:
        """Puts the frozen stages back in eval mode: the loop puts the whole model in training mode,
        and their BatchNorm statistics must stay the ``init`` backbone's."""
        for module in self.frozen:
            module.eval()


def _in_part(name: str, part: str) -> bool:
    """Whether parameter ``name`` is ``part`` or lies under it (``train_only``)."""
    return name == part or name.startswith(part + ".")
