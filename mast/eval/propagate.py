"""The one propagation writer: any :class:`~mast.models.tracker.Tracker`, a video, a results folder.

A first-frame annotation's object ids become contiguous labels, the tracker
is stepped through the video, and every frame's most probable labels are
written back as object ids in DAVIS palette PNGs named like the frames, in a
recorded results folder (:mod:`mast.common.outputs`) that ``mast evaluate``
scores. The self-supervised propagator and every baseline go through here.

Resuming: each sequence's entry in the folder's record holds its input's
identity (:attr:`PropagationInput.identity`), so a rerun under the same
settings can skip the sequences already written from the same input
(:func:`is_finished`) and redo those whose input changed.
"""
from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from mast.common.errors import ArgumentError
from mast.common.masks import VOID_ID, remove_void, write_palette_png
from mast.common.outputs import OutputFolder
from mast.eval.box_outputs import BoxRecorder
from mast.models.tracker import Tracker, TrackerStep, track

@dataclass
class PropagationInput:
    """One video to propagate.

    Attributes:
        name: output sub-folder.
        frames: callable returning a fresh iterator of ``(stem, frame)`` pairs:
            the output file stem and the ``(3, H, W)`` RGB frame in ``[0, 1]``.
        first_ids: ``(H, W)`` uint8 object ids of the first frame (0 = background).
        first_source: where ``first_ids`` came from, for error messages.
        num_frames: frame count if known (progress bars), else None; for a video file the
            count its container promises, made exact by :func:`check_frames`.
        identity: JSON-native values (str, int, lists) identifying the input (its files' sizes
            and modification times, the annotation's hash), compared with what a results
            folder's record reads back: a sequence is skipped only when they are equal
            (None: never skipped).
        frames_source: the video file or frame folder, for messages (default: ``name``).
    """

    name: str
    frames: Callable[[], Iterator[tuple[str, torch.Tensor]]]
    first_ids: np.ndarray
    first_source: str
    num_frames: int | None = None
    identity: dict | None = None
    frames_source: str | None = None


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


def first_frame_ids(ids: np.ndarray, source: str) -> np.ndarray:
    """A first-frame annotation as the writer takes it: ``(H, W)`` uint8 object ids, void (255)
    made background, as ``mast propagate`` reads DAVIS-2017 and first-mask PNGs.

    Raises:
        ArgumentError: (of ``first_mask``) naming ``source``: not a 2-D map of integer ids in
            ``0..255``, or only 0 and 255 (255 is void, so no object: save the object as id 1).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
        raise ArgumentError("first_mask", f"{source}: a first-frame mask is an (H, W) map of integer object ids, "
                                          f"got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > VOID_ID):
        raise ArgumentError("first_mask", f"{source}: object ids must lie in 0..{VOID_ID - 1} (0 background, "
                                          f"{VOID_ID} void), found {int(ids.min() if ids.min() < 0 else ids.max())}")
    ids = ids.astype(np.uint8)
    values = np.unique(ids)
    if VOID_ID in values and set(values.tolist()) <= {0, VOID_ID}:
        raise ArgumentError("first_mask", f"{source}: holds only 0 and {VOID_ID}, but {VOID_ID} is void (not an "
                                          "object, as in DAVIS), so there is no object; save the object as id 1 "
                                          "(for a 0/255 binary mask: value > 127 -> 1)")
    return remove_void(ids)


def check_frames(item: PropagationInput) -> dict:
    """Decodes every frame of ``item`` (before anything is written) and sets ``item.num_frames``
    to the count.

    Returns:
        What a results folder records about the frames beyond :attr:`PropagationInput.identity`:
        ``{}``, or ``{"frames_promised": n, "frames_decoded": m}`` when a video's container
        promised another count than decodes (with a ``RuntimeWarning`` saying so).

    Raises:
        ValueError: naming the file or frame: a frame that does not decode (the frame reader's
            rules: a cut-short file is refused), a frame of another size than the first
            annotation, fewer than 2 frames.
    """
    source = item.frames_source or item.name
    height, width = item.first_ids.shape
    count = 0
    for stem, frame in item.frames():
        if tuple(frame.shape[-2:]) != (height, width):
            raise ValueError(f"{source}: frame {stem} is {frame.shape[-1]}x{frame.shape[-2]} but the first frame "
                             f"and its annotation are {width}x{height}")
        count += 1
    if count < 2:
        raise ValueError(f"{source}: needs at least 2 frames, found {count}")
    promised, item.num_frames = item.num_frames, count
    if promised is None or promised == count:
        return {}
    warnings.warn(f"{source}: the container's frame count promised {promised} frames but only {count} decode; "
                  f"propagating those {count}", RuntimeWarning, stacklevel=2)
    return {"frames_promised": promised, "frames_decoded": count}


def is_finished(item: PropagationInput, folder: OutputFolder) -> bool:
    """Whether the checked ``folder`` holds ``item``'s sequence complete, written from the same
    input (equal :attr:`PropagationInput.identity`) under its settings."""
    details = folder.entry_details(item.name)
    return item.identity is not None and details is not None and details.get("input") == item.identity


def track_ids(tracker: Tracker, frames: Iterable[torch.Tensor], first_ids: np.ndarray,
              source: str) -> Iterator[np.ndarray]:
    """Object ids ``(H, W)`` uint8 of every frame: ``first_ids`` (the first frame's annotation,
    void already removed), then what ``tracker`` predicts for each later frame.

    ``frames``: ``(3, H, W)`` RGB in ``[0, 1]``, the first one annotated by ``first_ids``.
    """
    return (ids for ids, _ in track_steps(tracker, frames, first_ids, source))


def track_steps(tracker: Tracker, frames: Iterable[torch.Tensor], first_ids: np.ndarray,
                source: str) -> Iterator[tuple[np.ndarray, TrackerStep | None]]:
    """:func:`track_ids`'s masks, each with the tracker's :class:`TrackerStep` (its boxes; None
    for the first frame, the given annotation).

    The one loop of the writer and of ``mast.track``, so both give the same masks.
    """
    ids, lookup = label_lookup(first_ids, source)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{source}: no frame to track")
    if tuple(first.shape[-2:]) != first_ids.shape:
        raise ArgumentError("first_mask", f"{source} is {first_ids.shape[1]}x{first_ids.shape[0]} but the frames "
                                          f"are {first.shape[-1]}x{first.shape[-2]}")
    yield first_ids, None
    for result in track(tracker, itertools.chain([first], frames), torch.from_numpy(lookup[first_ids])):
        yield ids[result.labels().cpu().numpy()], result


def propagate_to_folder(
    item: PropagationInput, tracker: Tracker, folder: OutputFolder | str | os.PathLike,
    on_frame: Callable[[], None] | None = None, details: dict | None = None,
) -> Path:
    """Tracks one video and writes ``<folder>/<name>/<stem>.png`` palette PNGs (and boxes).

    The first frame's annotation is written as given. A tracker that predicts boxes also
    gets ``<folder>/<name>/boxes.json`` (:mod:`mast.eval.box_outputs`). The sequence is built
    in a temporary folder that replaces ``<folder>/<name>`` only on success,
    so an error never leaves a half-written sequence behind; ``folder``
    refuses to replace a sequence folder holding files mast did not write.
    ``folder`` is a started :class:`OutputFolder` or a path (checked and
    started here with :func:`results_folder`). The folder's record keeps,
    with the sequence, ``item.identity`` (for :func:`is_finished`), the
    number of frames written and ``details`` (e.g. :func:`check_frames`'s).
    """
    object_ids, _ = label_lookup(item.first_ids, item.first_source)  # no object: refused before anything is written
    if not isinstance(folder, OutputFolder):
        folder = results_folder(folder, tracker)
        folder.check_entry(item.name)
        folder.start({"sequences": [item.name]})
    folder.check_entry(item.name)
    stems: list[str] = []
    record = {"input": item.identity, **(details or {})}
    with folder.entry(item.name, record) as staging:

        def frames_only() -> Iterator[torch.Tensor]:
            for stem, frame in item.frames():
                stems.append(stem)
                yield frame

        boxes = BoxRecorder(object_ids, item.first_ids)
        for t, (ids, step) in enumerate(track_steps(tracker, frames_only(), item.first_ids, item.first_source)):
            write_palette_png(staging / f"{stems[t]}.png", ids)
            if step is not None:
                boxes.add(stems[t], step.boxes, step.rotated_boxes)
            if t > 0 and on_frame is not None:
                on_frame()
        if len(stems) < 2:
            raise ValueError(f"{item.name}: needs at least 2 frames, found {len(stems)}")
        boxes.write(staging, stems[0], tracker.name)
        record["frames"] = len(stems)  # the entry records its details when it closes, after this
    return folder.path / item.name
