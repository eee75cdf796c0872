"""The one place that turns a model name and a checkpoint into a runnable tracker.

``load_tracker`` serves the Python API (``mast.load_tracker``), ``mast
propagate``, the demo, validation during training and every script, in the
spirit of pysot's ``build_tracker``: a new model is one function and one line
of :data:`TRACKERS`. Settings are keyword arguments named as in Python
(``window=25``, ``normalize=True``, ``box_from="rotated"``); a setting the
model does not have is an :class:`~mast.common.errors.ArgumentError` naming it.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from mast.common.config import FieldError
from mast.common.devices import resolve_device
from mast.common.errors import ArgumentError
from mast.models.backbone import ResNetBackbone
from mast.models.detector.tracker import DetectorTracker
from mast.models.extractors import BackboneExtractor
from mast.models.propagation import Propagator
from mast.models.protocol import KNOB_NAMES, PropagationConfig, PropagationKnobs
from mast.models.published import load_any
from mast.models.shipped import checkpoint_path
from mast.models.ranet.tracker import RANetTracker
from mast.models.siammask.tracker import SiamMaskTracker
from mast.models.static import StaticTracker
from mast.models.tracker import Tracker

#: A checkpoint file, or (model ``mast`` only) a backbone already in memory.
Checkpoint = str | os.PathLike | ResNetBackbone | None


def _memory_propagator(checkpoint: Checkpoint, preset: str | None, device: torch.device,
                       settings: dict[str, Any]) -> Propagator:
    """``mast``: a ``backbone.pt`` (None: the LAB-pixel baseline) through the memory engine, under
    ``preset`` (default ``mast``), the knobs the features need, then ``settings``."""
    knobs = PropagationKnobs.from_settings(settings, "model mast (the memory propagator)")
    if checkpoint is None and knobs.normalize:
        raise ArgumentError("normalize", "the LAB-pixel baseline (no checkpoint) compares pixels by squared "
                                         "distance and cannot use cosine similarity; give a checkpoint")
    try:
        if isinstance(checkpoint, ResNetBackbone):
            extractor = BackboneExtractor(checkpoint.to(device))
            return Propagator(extractor, PropagationConfig.preset(preset or "mast", extractor.knobs, knobs), device)
        return Propagator.from_checkpoint(checkpoint, preset or "mast", knobs, device=device)
    except FieldError as error:  # a knob the engine or the reference policy refuses, by its name
        raise ArgumentError(error.key, f"{error.rule}, got {error.value!r}") from None


def _check_baseline(model: str, checkpoint: Checkpoint, preset: str | None, settings: dict[str, Any]) -> None:
    """A baseline needs its own ``model.pt`` and takes none of the memory propagator's settings."""
    if checkpoint is None or isinstance(checkpoint, ResNetBackbone):
        raise ArgumentError("checkpoint", f"model {model} needs the model.pt its training run wrote "
                                          f"(mast train-baseline {model})", mentions=("model",))
    given = (["preset"] if preset is not None else []) + [name for name in settings if name in KNOB_NAMES]
    if given:
        raise ArgumentError(given[0], f"a setting of the memory propagator (model mast), not of model {model}",
                            mentions=("model",))


def _siammask(checkpoint: Checkpoint, preset: str | None, device: torch.device,
              settings: dict[str, Any]) -> SiamMaskTracker:
    """``siammask``: a ``model.pt`` of ``mast train-baseline siammask``; ``settings`` override its tracker's."""
    _check_baseline("siammask", checkpoint, preset, settings)
    return SiamMaskTracker.from_checkpoint(checkpoint, device, **settings)


def _ranet(checkpoint: Checkpoint, preset: str | None, device: torch.device, settings: dict[str, Any]) -> RANetTracker:
    """``ranet``: a ``model.pt`` of ``mast train-baseline ranet``; it has no settings."""
    _check_baseline("ranet", checkpoint, preset, settings)
    if settings:
        raise ArgumentError(next(iter(settings)), "not a setting of model ranet (it has none)", mentions=("model",))
    return RANetTracker.from_checkpoint(checkpoint, device)


def _detector(checkpoint: Checkpoint, preset: str | None, device: torch.device,
              settings: dict[str, Any]) -> DetectorTracker:
    """``detector``: a ``model.pt`` of ``mast train-baseline detector``; ``settings`` override its tracker's."""
    _check_baseline("detector", checkpoint, preset, settings)
    return DetectorTracker.from_checkpoint(checkpoint, device, **settings)


def _static(checkpoint: Checkpoint, preset: str | None, device: torch.device,
            settings: dict[str, Any]) -> StaticTracker:
    """``static``: the first-frame mask on every frame (zero motion); no checkpoint, no settings."""
    if checkpoint is not None:
        raise ArgumentError("checkpoint", "model static repeats the first-frame mask and reads no checkpoint",
                            mentions=("model",))
    given = (["preset"] if preset is not None else []) + list(settings)
    if given:
        raise ArgumentError(given[0], "not a setting of model static (it has none)", mentions=("model",))
    return StaticTracker()


#: Model names and how each becomes a tracker: ``(checkpoint, preset, device, settings) -> Tracker``.
TRACKERS: dict[str, Callable[[Checkpoint, str | None, torch.device, dict[str, Any]], Tracker]] = {
    "mast": _memory_propagator, "siammask": _siammask, "ranet": _ranet, "detector": _detector,
    "static": _static,
}


def load_tracker(model: str = "mast", checkpoint: Checkpoint = None, preset: str | None = None,
                 device: str | torch.device = "auto", **settings: Any) -> Tracker:
    """A ready :class:`~mast.models.tracker.Tracker`.

    Args:
        model: a name of :data:`TRACKERS`: ``mast`` (the self-supervised memory propagator),
            ``siammask``, ``ranet``, ``detector`` (the supervised baselines), ``static`` (the
            first-frame mask on every frame: zero motion, the bar every model must beat).
        checkpoint: ``mast``: a ``backbone.pt`` (its saved propagation knobs apply) or the name of
            a shipped one (:data:`mast.models.shipped.SHIPPED`, e.g. ``"cpu-hour"``), a
            :class:`ResNetBackbone` in memory, or None for the LAB-pixel baseline; a baseline:
            the ``model.pt`` of its training run (required); ``static``: None.
        preset: ``mast`` only: a name of :data:`mast.models.protocol.PRESETS` (default ``mast``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        settings: ``mast``: propagation knobs (:class:`~mast.models.protocol.PropagationKnobs`
            fields, e.g. ``window=13, topk=0, normalize=True``), applied over the preset and the
            checkpoint's knobs; ``siammask``: tracker settings (e.g. ``box_from="rotated"``).

    Raises:
        ArgumentError: an unknown model, preset, device or setting, or a missing checkpoint.
        FileNotFoundError / ValueError: a checkpoint that does not exist or is not the model's.
    """
    if model not in TRACKERS:
        raise ArgumentError("model", f"unknown model {model!r}; choose from {', '.join(TRACKERS)}")
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = checkpoint_path(checkpoint)
    return TRACKERS[model](checkpoint, preset, resolve_device(device), settings)


def load_backbone(path: str | os.PathLike, device: str | torch.device = "cpu") -> ResNetBackbone:
    """The backbone of a ``backbone.pt``, of a shipped one by name (``"cpu-hour"``: docs/cpu-hour.md)
    or of a published checkpoint (MAST, CorrFlow, CRW, a torchvision ResNet-18/34: docs/models.md), in eval mode: ``.extract(frame)`` turns an RGB
    uint8 ``(H, W, 3)`` frame into ``(C, ceil(H/s), ceil(W/s))`` features after the
    checkpoint's own colour conversion, ``.stride`` is ``s`` and ``.channels`` is ``C``."""
    device, path = resolve_device(device), checkpoint_path(path)
    return load_any(path, device).backbone(path).to(device).eval()
