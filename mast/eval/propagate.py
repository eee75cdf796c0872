"""The one propagation writer: any :class:`~mast.models.tracker.Tracker`, a video, a results folder.

A first-frame annotation's object ids become contiguous labels, the tracker
is stepped through the video, and every frame's most probable labels are
written back as object ids in DAVIS palette PNGs named like the frames, in a
recorded results folder (:mod:`mast.common.outputs`) that ``mast evaluate``
scores. The self-supervised propagator and every baseline go through here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from mast.common.masks import write_palette_png
from mast.common.outputs import OutputFolder
from mast.models.tracker import Tracker, track

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


def propagation_settings(tracker: Tracker, **inputs) -> dict:
    """What makes a results folder's masks: the tracker (a checkpoint by content),
    its settings, and where the annotations came from (``inputs``)."""
    return {"tracker": tracker.name, **tracker.settings(), "inputs": inputs}


def results_folder(out_dir: str | os.PathLike, tracker: Tracker, overwrite: bool = False,
                   **inputs) -> OutputFolder:
    """The checked, recorded output folder of propagation results (see :mod:`mast.common.outputs`)."""
    return OutputFolder(out_dir, "propagate", propagation_settings(tracker, **inputs), overwrite).check()


def propagate_to_folder(
    item: PropagationInput, tracker: Tracker, folder: OutputFolder | str | os.PathLike,
    on_frame: Callable[[], None] | None = None,
) -> Path:
    """Tracks one video and writes ``<folder>/<name>/<stem>.png`` palette PNGs.

    The first frame's annotation is written as given. The sequence is built
    in a temporary folder that replaces ``<folder>/<name>`` only on success,
    so an error never leaves a half-written sequence behind; ``folder``
    refuses to replace a sequence folder holding files mast did not write.
    ``folder`` is a started :class:`OutputFolder` or a path (checked and
    started here with :func:`results_folder`).
    """
    ids, lookup = label_lookup(item.first_ids, item.first_source)
    if not isinstance(folder, OutputFolder):
        folder = results_folder(folder, tracker)
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
        for t, result in enumerate(track(tracker, frames_only(), first_labels), start=1):
            if t == 1:
                write_palette_png(staging / f"{stems[0]}.png", item.first_ids)
            write_palette_png(staging / f"{stems[t]}.png", ids[result.labels().cpu().numpy()])
            if on_frame is not None:
                on_frame()
        if len(stems) < 2:
            raise ValueError(f"{item.name}: needs at least 2 frames, found {len(stems)}")
    return folder.path / item.name
