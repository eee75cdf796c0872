"""The Python API: a tracker from a name and a checkpoint, masks through a video, J&F.

Everything a notebook needs, in the spirit of Cutie's ``scripting_demo.py``::

    import mast
    tracker = mast.load_tracker("mast", checkpoint="runs/mast/backbone.pt", preset="quick")
    masks = list(mast.track(tracker, "video.mp4", first_mask="frame0.png"))   # (H, W) uint8 ids each
    global_table, per_object = mast.evaluate("results/", "DAVIS", split="val")

The same rules as ``mast propagate`` apply: a first-frame mask holds object ids
(0 background, 255 void, which becomes background), and ``track`` yields exactly
the masks the command writes (both run :func:`mast.eval.propagate.track_ids`).
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from mast.common.errors import ArgumentError
from mast.common.masks import read_mask
from mast.eval.davis import score_davis
from mast.eval.propagate import first_frame_ids, track_ids
from mast.eval.sources import box_to_ids, parse_box, video_stream
from mast.models.builder import load_backbone, load_tracker
from mast.models.tracker import Tracker

__all__ = ["evaluate", "load_backbone", "load_tracker", "track"]

#: What ``track`` reads frames from: a path, a ``(T, H, W, 3)`` uint8 RGB array, or an
#: iterable of ``(H, W, 3)`` uint8 RGB arrays or ``(3, H, W)`` float tensors in ``[0, 1]``.
Frames = str | os.PathLike | np.ndarray | Iterable[np.ndarray | torch.Tensor]


def _as_tensor(frame: np.ndarray | torch.Tensor, index: int) -> torch.Tensor:
    """One frame -> ``(3, H, W)`` float RGB in ``[0, 1]``."""
    if isinstance(frame, torch.Tensor) and frame.ndim == 3 and frame.shape[0] == 3 and frame.is_floating_point():
        return frame
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ArgumentError("frames", f"frame {index} is {array.dtype} {array.shape}; frames are RGB uint8 arrays "
                                      "(H, W, 3) or float tensors (3, H, W) in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255


def _frame_tensors(frames: Frames) -> Iterator[torch.Tensor]:
    """The frames of any accepted form as ``(3, H, W)`` tensors, read one at a time."""
    if isinstance(frames, (str, os.PathLike)):
        try:
            stream = video_stream(frames)
        except ArgumentError as error:  # the reader's "video" is this function's "frames"
            raise type(error)("frames", error.message) from None
        return (frame for _, frame in stream.frames())
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ArgumentError("frames", f"an array of frames is (T, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
    return (_as_tensor(frame, index) for index, frame in enumerate(frames))


def _first_ids(first_mask: Any, first_box: Any, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The first frame's object ids ``(H, W)`` uint8 and what they came from."""
    if (first_mask is None) == (first_box is None):
        raise ArgumentError("first_mask", "give exactly one of first_mask (ids or a PNG) or first_box (x, y, w, h)")
    if first_box is not None:
        return box_to_ids(parse_box(first_box), *size), f"first_box {first_box}"
    if isinstance(first_mask, (str, os.PathLike)):
        return first_frame_ids(read_mask(first_mask), str(first_mask)), str(first_mask)
    return first_frame_ids(first_mask, "the array"), "the array"


def track(tracker: Tracker, frames: Frames, first_mask: Any = None, first_box: Any = None) -> Iterator[np.ndarray]:
    """One ``(H, W)`` uint8 object-id mask per frame, the first being the given annotation.

    Args:
        tracker: from :func:`load_tracker`.
        frames: a video file (mp4/avi/mov/mkv) or a frame folder; a ``(T, H, W, 3)`` uint8 RGB
            array; or an iterable of ``(H, W, 3)`` uint8 RGB arrays or ``(3, H, W)`` float
            tensors in ``[0, 1]``. Read one at a time, so long videos stream.
        first_mask: the first frame's object ids: an ``(H, W)`` integer array or a mask PNG
            (palette, grayscale or DAVIS colours); 0 is background and 255 void, which
            becomes background. Ids must lie in 0..255.
        first_box: instead of a mask, ``(x, y, w, h)`` in pixels (or ``"x,y,w,h"``), object 1,
            clipped to the frame with a warning.

    Returns:
        An iterator of masks; the first frame and its annotation are checked before it is returned.

    Raises:
        ArgumentError / ValueError: bad frames, no object in the first mask (only 0 and 255),
            ids outside 0..255, a mask of another size than the frames.
    """
    stream = _frame_tensors(frames)
    first = next(stream, None)
    if first is None:
        raise ArgumentError("frames", "holds no frame")
    ids, source = _first_ids(first_mask, first_box, tuple(first.shape[-2:]))
    masks = track_ids(tracker, itertools.chain([first], stream), ids, source)
    next(masks)  # checks the annotation's size against the first frame now, not at the first next()
    return itertools.chain([ids], masks)


def evaluate(results: str | os.PathLike, davis_root: str | os.PathLike, split: str = "val", year: int = 2017,
             sequences: list[str] | None = None, objects: str = "davis", boxes: bool = False,
             processes: int | None = None) -> tuple[dict[str, float], list[dict]]:
    """DAVIS J&F of a results folder, the numbers ``mast evaluate`` prints (it also writes them
    as CSVs; this writes nothing). See :func:`mast.eval.davis.score_davis` for every argument.

    Returns:
        ``(global_table, per_object)``: ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean",
        "F-Recall", "F-Decay"}`` and one ``{"Sequence": "<seq>_<id>", "J-Mean", "F-Mean"}`` per object.
    """
    return score_davis(davis_root, results, split, year, processes, objects, boxes, sequences)
