"""Label propagation: a first-frame annotation carried through a video.

Every model goes through this one loop (docs/algorithm.md §5): the first-frame
mask becomes one-hot values (background included) at feature resolution;
for each next frame the reconstruction engine reads per-object
probabilities out of the memory bank, they are upsampled bilinearly to the
frame's size and argmaxed; the frame then enters the memory with its
predicted labels, hard (MAST) or soft (CRW).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from mast.common.outputs import OutputFolder
from mast.common.masks import write_palette_png
from mast.models.engine import EngineConfig, ReconstructionEngine
from mast.models.extractors import FeatureExtractor
from mast.common.references import ReferencePolicy
from mast.models.memory import MemoryBank


PRESETS = ("mast", "crw", "quick")

# Cosine similarity with a sharp softmax over the best keys: what a briefly
# trained backbone needs (with raw dot products its softmax is nearly one-hot).
COSINE_KNOBS = {"normalize": True, "temperature": 0.05, "topk": 16}


@dataclass(frozen=True)
class PropagationConfig:
    """Protocol knobs; :meth:`preset` gives the two protocols in use.

    Attributes:
        long_term / short_term: the reference policy (absolute frames / offsets back).
        window: attention window ``P``.
        roi_localisation: two-stage ROI localisation for references > ``near_range`` frames away.
        topk: keep the ``k`` best keys per pixel (None: all).
        temperature: softmax temperature.
        normalize: cosine similarity instead of raw dot products.
        soft_labels: predictions re-enter the memory as probabilities, not one-hot.
    """

    long_term: tuple[int, ...] = (0, 5)
    short_term: tuple[int, ...] = (1, 3, 5)
    window: int = 25
    roi_localisation: bool = True
    near_range: int = 15
    topk: int | None = None
    temperature: float = 1.0
    normalize: bool = False
    soft_labels: bool = False

    @classmethod
    def preset(cls, name: str, **overrides) -> "PropagationConfig":
        """``"mast"``: refs 0, 5, t-1, t-3, t-5; 25x25; ROI localisation; hard labels.
        ``"crw"``: first frame + 20 previous; radius 12; top-10; tau 0.05; soft labels.
        ``"quick"``: frame 0 + the 3 previous frames; 13x13; no ROI (CPU-friendly)."""
        presets = {
            "mast": cls(),
            "crw": cls(
                long_term=(0,), short_term=tuple(range(1, 21)), window=25, roi_localisation=False,
                topk=10, temperature=0.05, normalize=True, soft_labels=True,
            ),
            "quick": cls(long_term=(0,), short_term=(1, 2, 3), window=13, roi_localisation=False),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
        return replace(presets[name], **{k: v for k, v in overrides.items() if v is not None})

    @property
    def policy(self) -> ReferencePolicy:
        return ReferencePolicy(self.long_term, self.short_term)

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig(
            window=self.window, near_range=self.near_range, roi_localisation=self.roi_localisation,
            temperature=self.temperature, topk=self.topk, normalize=self.normalize,
        )


def one_hot_labels(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(H, W)`` long labels -> ``(1, num_labels, H, W)`` float one-hot."""
    return F.one_hot(labels, num_labels).permute(2, 0, 1).unsqueeze(0).float()


class Propagator:
    """Streams a video's frames through the memory bank and the engine.

    Memory is bounded by the policy's capacity whatever the video length:
    only the frames the policy may still read are kept (features and
    ``num_labels`` value channels at feature resolution).
    """

    def __init__(self, extractor: FeatureExtractor, config: PropagationConfig, device: torch.device | str = "cpu"):
        self.extractor = extractor
        self.config = config
        self.device = torch.device(device)
        self.engine = ReconstructionEngine(config.engine)
        self.last_bank: MemoryBank | None = None  # the bank of the latest run, for inspection

    @torch.no_grad()
    def run(self, frames: Iterable[torch.Tensor], first_labels: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yields the labels of every frame after the first.

        Args:
            frames: the video's frames in order, each ``(3, H, W)`` RGB in ``[0, 1]``,
                the first one being the annotated frame.
            first_labels: ``(H, W)`` long, ``0..L-1`` (0 = background), contiguous.

        Yields:
            ``(H, W)`` long labels of frames 1, 2, ... (on the CPU).
        """
        num_labels = int(first_labels.max()) + 1
        bank = self.last_bank = MemoryBank(self.config.policy)
        for t, frame in enumerate(frames):
            frame = frame.to(self.device, torch.float32).unsqueeze(0)
            if t == 0 and frame.shape[-2:] != first_labels.shape:
                raise ValueError(
                    f"first-frame mask is {tuple(first_labels.shape)} (H, W) but the frame is {tuple(frame.shape[-2:])}"
                )
            as_query, as_key = self.extractor(frame)
            if t == 0:
                full = one_hot_labels(first_labels.to(self.device), num_labels)
                values = F.interpolate(full, size=as_key.shape[-2:], mode="area")
            else:
                probabilities = self.engine(as_query, bank.references(t))
                upsampled = F.interpolate(probabilities, size=frame.shape[-2:], mode="bilinear", align_corners=False)
                labels = upsampled.argmax(dim=1)[0]
                yield labels.cpu()
                values = probabilities if self.config.soft_labels else one_hot_labels(probabilities.argmax(1)[0], num_labels)
            bank.add(t, as_key, values)


@dataclass
class PropagationInput:
    """One video to propagate.

    Attributes:
        name: output sub-folder.
        frames: callable returning a fresh iterator of ``(stem, frame)`` pairs:
            the output file stem and the ``(3, H, W)`` RGB frame in ``[0, 1]``.
        first_ids: ``(H, W)`` uint8 object ids of the first frame (0 = background).
        first_source: where ``first_ids`` came from, for error messages.
        num_frames: frame count if known (progress bars), else None.
    """

    name: str
    frames: Callable[[], Iterator[tuple[str, torch.Tensor]]]
    first_ids: np.ndarray
    first_source: str
    num_frames: int | None = None


def label_lookup(first_ids: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Maps possibly non-contiguous object ids (``{0, 2, 7}``) to labels ``0..L-1``.

    Returns:
        ``(ids, lookup)``: ``ids[label]`` is the object id of a label and
        ``lookup[id]`` the label of an id (``(256,)`` int64).
    """
    ids = np.union1d(np.unique(first_ids), [0]).astype(np.uint8)
    if len(ids) < 2:
        raise ValueError(f"{source}: the first-frame annotation has no object (all background)")
    lookup = np.zeros(256, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    return ids, lookup


def propagation_settings(propagator: Propagator, **inputs) -> dict:
    """What makes a results folder's masks: the features (checkpoint by content),
    the protocol, and where the annotations came from (``inputs``)."""
    return {"features": propagator.extractor.name, "protocol": asdict(propagator.config), "inputs": inputs}


def results_folder(out_dir: str | os.PathLike, propagator: Propagator, overwrite: bool = False,
                   **inputs) -> OutputFolder:
    """The checked, recorded output folder of propagation results (see :mod:`mast.common.outputs`)."""
    return OutputFolder(out_dir, "propagate", propagation_settings(propagator, **inputs), overwrite).check()


def propagate_to_folder(
    item: PropagationInput, propagator: Propagator, folder: OutputFolder | str | os.PathLike,
    on_frame: Callable[[], None] | None = None,
) -> Path:
    """Propagates one video and writes ``<folder>/<name>/<stem>.png`` palette PNGs.

    The first frame's annotation is written as given. The sequence is built
    in a temporary folder that replaces ``<folder>/<name>`` only on success,
    so an error never leaves a half-written sequence behind; ``folder``
    refuses to replace a sequence folder holding files mast did not write.
    ``folder`` is a started :class:`OutputFolder` or a path (checked and
    started here with :func:`results_folder`).
    """
    ids, lookup = label_lookup(item.first_ids, item.first_source)
    if not isinstance(folder, OutputFolder):
        folder = results_folder(folder, propagator)
        folder.check_entry(item.name)
        folder.start({"sequences": [item.name]})
    folder.check_entry(item.name)
    with folder.entry(item.name) as staging:
        stems: list[str] = []

        def frames_only() -> Iterator[torch.Tensor]:
            for stem, frame in item.frames():
                stems.append(stem)
                yield frame

        first_labels = torch.from_numpy(lookup[item.first_ids])
        for t, labels in enumerate(propagator.run(frames_only(), first_labels), start=1):
            if t == 1:
                write_palette_png(staging / f"{stems[0]}.png", item.first_ids)
            write_palette_png(staging / f"{stems[t]}.png", ids[labels.numpy()])
            if on_frame is not None:
                on_frame()
        if len(stems) < 2:
            raise ValueError(f"{item.name}: needs at least 2 frames, found {len(stems)}")
    return folder.path / item.name
