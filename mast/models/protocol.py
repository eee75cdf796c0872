"""Propagation settings: whole protocols, the presets, and partial settings over them.

Two forms: :class:`PropagationConfig`, a whole protocol (the engine's knobs,
the reference policy, the label feedback; docs/algorithm.md §5), and
:class:`PropagationKnobs`, some of its settings, the rest left to a preset.
A protocol is always a preset of :data:`PRESETS` (defined here only) with
layers of knobs over it: those the features need (the pixel baseline's, or
those a checkpoint was saved with), then the caller's.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from mast.common.config import require
from mast.common.errors import ArgumentError
from mast.common.references import ReferencePolicy
from mast.models.engine import EngineConfig


@dataclass(frozen=True)
class PropagationKnobs:
    """Some settings of a propagation protocol; None leaves a setting to the preset.

    The one typed form of partial settings: saved in ``backbone.pt`` (the
    knobs its features are meant to be used with), the ``propagation`` and
    ``validation.candidates`` sections of a training config, the pixel
    baseline's needs, and the settings a caller passes to
    :func:`mast.models.builder.load_tracker`.

    Attributes:
        long_term / short_term: the reference policy (frame indices / offsets back).
        window, near_range, max_dilation, roi_localisation, temperature, normalize,
            tile_elements: :class:`~mast.models.engine.EngineConfig` fields.
        topk: keep the ``k`` best keys per pixel; ``0`` keeps every key.
        soft_labels: predictions re-enter the memory as probabilities, not one-hot.
    """

    long_term: tuple[int, ...] | None = None
    short_term: tuple[int, ...] | None = None
    window: int | None = None
    near_range: int | None = None
    max_dilation: int | None = None
    roi_localisation: bool | None = None
    temperature: float | None = None
    topk: int | None = None
    normalize: bool | None = None
    tile_elements: int | None = None
    soft_labels: bool | None = None

    def __post_init__(self) -> None:
        require(self.topk is None or self.topk >= 0, "topk", "must be >= 0 (0: every key) or null", self.topk)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], source: str = "settings") -> "PropagationKnobs":
        """Knobs from flat names (``window=25``, ``topk=0``); an unknown name is an
        :class:`ArgumentError` naming it (``source`` says where the names came from)."""
        unknown = sorted(set(settings) - set(KNOB_NAMES))
        if unknown:
            raise ArgumentError(unknown[0], f"not a propagation setting of {source}; those are {', '.join(KNOB_NAMES)}")
        values = {key: tuple(value) if key in ("long_term", "short_term") and value is not None else value
                  for key, value in settings.items()}
        return cls(**values)

    def as_overrides(self) -> dict[str, Any]:
        """The knobs that are set, by name (what ``backbone.pt`` stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def over(self, base: "PropagationKnobs") -> "PropagationKnobs":
        """``base`` with the knobs set here replacing its own."""
        return replace(base, **self.as_overrides())

    def label(self) -> str:
        """A short name: ``dot``, ``cosine-t0.05-k16`` (unset knobs are left out)."""
        parts = ["dot" if self.normalize is False else "cosine" if self.normalize else "preset"]
        parts += [f"t{self.temperature:g}"] if self.temperature is not None else []
        parts += [f"k{self.topk}"] if self.topk is not None else []
        return "-".join(parts)


KNOB_NAMES = tuple(f.name for f in fields(PropagationKnobs))
_ENGINE_FIELDS = frozenset(f.name for f in fields(EngineConfig))
_POLICY_FIELDS = frozenset(f.name for f in fields(ReferencePolicy))

#: MAST's raw dot products.
DOT = PropagationKnobs(normalize=False)
#: Cosine similarity with a sharp softmax over the best keys: what a briefly
#: trained backbone needs (with raw dot products its softmax is nearly one-hot).
COSINE = PropagationKnobs(normalize=True, temperature=0.05, topk=16)


@dataclass(frozen=True)
class PropagationConfig:
    """The propagation protocol: the engine's knobs, the reference policy, the label feedback.

    Attributes:
        engine: window, ROI localisation, temperature, top-k, cosine or dot product
            (test-time window 25, MAST).
        policy: which past frames each frame reads (MAST: 0, 5, t-1, t-3, t-5).
        soft_labels: predictions re-enter the memory as probabilities, not one-hot.
    """

    engine: EngineConfig = field(default_factory=lambda: EngineConfig(window=25))
    policy: ReferencePolicy = field(default_factory=ReferencePolicy.mast)
    soft_labels: bool = False

    @classmethod
    def preset(cls, name: str, *knobs: PropagationKnobs) -> "PropagationConfig":
        """Preset ``name`` of :data:`PRESETS` with ``knobs`` applied in order (see :meth:`with_knobs`)."""
        if name not in PRESETS:
            raise ArgumentError("preset", f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return PRESETS[name].with_knobs(*knobs)

    def with_knobs(self, *knobs: PropagationKnobs) -> "PropagationConfig":
        """A copy with the set knobs of each of ``knobs`` replacing its settings, later ones last."""
        config = self
        for layer in knobs:
            flat = layer.as_overrides()
            if flat.get("topk") == 0:
                flat["topk"] = None  # the engine's "every key"
            engine = replace(config.engine, **{k: v for k, v in flat.items() if k in _ENGINE_FIELDS})
            policy = replace(config.policy, **{k: v for k, v in flat.items() if k in _POLICY_FIELDS})
            config = replace(config, engine=engine, policy=policy,
                             soft_labels=flat.get("soft_labels", config.soft_labels))
        return config

    @classmethod
    def from_dict(cls, data: dict) -> "PropagationConfig":
        """The inverse of ``dataclasses.asdict`` (JSON round trips)."""
        policy = {key: tuple(value) for key, value in data.get("policy", {}).items()}
        return cls(EngineConfig(**data.get("engine", {})), ReferencePolicy(**policy), data.get("soft_labels", False))


#: The propagation presets, by name (``load_tracker(preset=...)``).
#: ``mast``: refs 0, 5, t-1, t-3, t-5; 25x25; ROI localisation; hard labels.
#: ``crw``: first frame + 20 previous; radius 12; top-10; tau 0.05; cosine; soft labels.
#: ``quick``: frame 0 + the 3 previous frames; 13x13; no ROI (CPU-friendly).
PRESETS: dict[str, PropagationConfig] = {
    "mast": PropagationConfig(),
    "crw": PropagationConfig(EngineConfig(window=25, roi_localisation=False, topk=10, temperature=0.05, normalize=True),
                             ReferencePolicy.crw(20), soft_labels=True),
    "quick": PropagationConfig(EngineConfig(window=13, roi_localisation=False), ReferencePolicy((0,), (1, 2, 3))),
}
