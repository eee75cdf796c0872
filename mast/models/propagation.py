"""The self-supervised tracker: label propagation through a memory of past frames.

docs/algorithm.md §5: the first-frame mask becomes one-hot values
(background included) at feature resolution; for each next frame the
reconstruction engine reads per-label probabilities out of the memory bank,
they are upsampled bilinearly to the frame's size; the frame then enters the
memory with its predicted labels, hard (MAST) or soft (CRW).
:class:`Propagator` is the first implementation of
:class:`mast.models.tracker.Tracker`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F

from mast.common.references import ReferencePolicy
from mast.models.engine import EngineConfig, ReconstructionEngine
from mast.models.extractors import FeatureExtractor
from mast.models.memory import MemoryBank
from mast.models.tracker import TrackerStep, track

PRESETS = ("mast", "crw", "quick")

# Cosine similarity with a sharp softmax over the best keys: what a briefly
# trained backbone needs (with raw dot products its softmax is nearly one-hot).
COSINE_KNOBS = {"normalize": True, "temperature": 0.05, "topk": 16}

_ENGINE_FIELDS = frozenset(f.name for f in fields(EngineConfig))
_POLICY_FIELDS = frozenset(f.name for f in fields(ReferencePolicy))


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
    def preset(cls, name: str, **overrides) -> "PropagationConfig":
        """``"mast"``: refs 0, 5, t-1, t-3, t-5; 25x25; ROI localisation; hard labels.
        ``"crw"``: first frame + 20 previous; radius 12; top-10; tau 0.05; cosine; soft labels.
        ``"quick"``: frame 0 + the 3 previous frames; 13x13; no ROI (CPU-friendly).
        ``overrides`` are flat knob names (see :meth:`with_overrides`); None values are ignored."""
        presets = {
            "mast": cls(),
            "crw": cls(EngineConfig(window=25, roi_localisation=False, topk=10, temperature=0.05, normalize=True),
                       ReferencePolicy.crw(20), soft_labels=True),
            "quick": cls(EngineConfig(window=13, roi_localisation=False), ReferencePolicy((0,), (1, 2, 3))),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
        return presets[name].with_overrides(**{k: v for k, v in overrides.items() if v is not None})

    def with_overrides(self, **knobs) -> "PropagationConfig":
        """A copy with flat knobs replaced: engine fields (``window``, ``topk``, ...),
        policy fields (``long_term``, ``short_term``) and ``soft_labels``."""
        unknown = set(knobs) - _ENGINE_FIELDS - _POLICY_FIELDS - {"soft_labels"}
        if unknown:
            raise ValueError(f"unknown propagation setting(s) {', '.join(sorted(unknown))}")
        engine = replace(self.engine, **{k: v for k, v in knobs.items() if k in _ENGINE_FIELDS})
        policy = replace(self.policy, **{k: v for k, v in knobs.items() if k in _POLICY_FIELDS})
        return replace(self, engine=engine, policy=policy, soft_labels=knobs.get("soft_labels", self.soft_labels))

    @classmethod
    def from_dict(cls, data: dict) -> "PropagationConfig":
        """The inverse of ``dataclasses.asdict`` (JSON round trips)."""
        policy = {key: tuple(value) for key, value in data.get("policy", {}).items()}
        return cls(EngineConfig(**data.get("engine", {})), ReferencePolicy(**policy), data.get("soft_labels", False))


def one_hot_labels(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(H, W)`` long labels -> ``(1, num_labels, H, W)`` float one-hot."""
    return F.one_hot(labels, num_labels).permute(2, 0, 1).unsqueeze(0).float()


class Propagator:
    """Streams a video's frames through the memory bank and the engine (a :class:`Tracker`).

    Memory is bounded by the policy's capacity whatever the video length:
    only the frames the policy may still read are kept (features and
    ``num_labels`` value channels at feature resolution).
    """

    def __init__(self, extractor: FeatureExtractor, config: PropagationConfig, device: torch.device | str = "cpu"):
        self.extractor = extractor
        self.config = config
        self.device = torch.device(device)
        self.engine = ReconstructionEngine(config.engine)
        self.name = extractor.name
        self.bank: MemoryBank | None = None  # the memory of the current video, for inspection
        self._time, self._num_labels = 0, 0

    def settings(self) -> dict:
        return {"model": "mast", "protocol": asdict(self.config)}

    @torch.no_grad()
    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        self._time, self._num_labels = 0, int(labels.max()) + 1
        self.bank = MemoryBank(self.config.policy)
        _, as_key = self.extractor(frame.to(self.device, torch.float32).unsqueeze(0))
        full = one_hot_labels(labels.to(self.device), self._num_labels)
        self.bank.add(0, as_key, F.interpolate(full, size=as_key.shape[-2:], mode="area"))

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> TrackerStep:
        if self.bank is None:
            raise RuntimeError("Propagator.step() before start()")
        self._time += 1
        frame = frame.to(self.device, torch.float32).unsqueeze(0)
        as_query, as_key = self.extractor(frame)
        probabilities = self.engine(as_query, self.bank.references(self._time))
        upsampled = F.interpolate(probabilities, size=frame.shape[-2:], mode="bilinear", align_corners=False)
        values = probabilities if self.config.soft_labels else one_hot_labels(probabilities.argmax(1)[0], self._num_labels)
        self.bank.add(self._time, as_key, values)
        return TrackerStep(upsampled[0])

    def run(self, frames: Iterable[torch.Tensor], first_labels: torch.Tensor) -> Iterator[torch.Tensor]:
        """``(H, W)`` long labels (on the CPU) of every frame after the first.

        Args:
            frames: the video's frames in order, each ``(3, H, W)`` RGB in ``[0, 1]``,
                the first one being the annotated frame.
            first_labels: ``(H, W)`` long, ``0..L-1`` (0 = background), contiguous.
        """
        for result in track(self, frames, first_labels):
            yield result.labels().cpu()
