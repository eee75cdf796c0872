"""The boxes a tracker predicts, as a results folder keeps them: ``<sequence>/boxes.json``.

The propagation writer (:mod:`mast.eval.propagate`) records the boxes of
trackers that predict them (:attr:`mast.models.tracker.TrackerStep.boxes`) with
:class:`BoxRecorder`; the box scores of ``mast evaluate`` read them back with
:func:`read_tracker_boxes` and score them instead of the masks' min-max boxes
(docs/evaluation.md §6.9). Layout (``BOXES_FORMAT`` 1)::

    {"format": 1, "source": "<tracker name>", "objects": [1, 2],
     "box": "x, y, w, h in pixels, pixel-inclusive", "rotated": true,
     "frames": [{"frame": "00000",
                 "boxes": {"1": [x, y, w, h], "2": null},
                 "rotated": {"1": {"centre": [cx, cy], "size": [w, h], "angle": a,
                                   "corners": [[x, y], [x, y], [x, y], [x, y]]}, "2": null}},
                ...]}

One entry per frame, in frame order, named like its mask PNG; ``boxes`` holds
every object id of ``objects`` (``null``: no box that frame). The first frame's
boxes are those of its annotation (min-max, and for rotated trackers the
minimum-area rectangle). ``rotated`` (per frame) is present only for trackers
that predict rotated boxes (SiamMask with ``box_from="rotated"``): the
rectangle's centre, sides, angle in degrees and its four corners.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mast.eval.boxes import Box, mask_box
from mast.models.siammask.geometry import rotated_box

BOXES_FILE = "boxes.json"
BOXES_FORMAT = 1
BOX_CONVENTION = "x, y, w, h in pixels, pixel-inclusive"
#: Decimals kept in the file: a thousandth of a pixel (or of a degree).
_DECIMALS = 3


def _rounded(values) -> list[float]:
    return [round(float(value), _DECIMALS) for value in values]


def rotated_record(cx: float, cy: float, w: float, h: float, angle: float) -> dict[str, Any] | None:
    """A rotated box as boxes.json keeps it: centre, sides, angle (degrees) and its 4 corners
    (``cv2.boxPoints``, the convention of ``cv2.minAreaRect`` that made it); None if any is NaN."""
    if any(math.isnan(value) for value in (cx, cy, w, h, angle)):
        return None
    corners = cv2.boxPoints(((cx, cy), (w, h), angle))
    return {"centre": _rounded((cx, cy)), "size": _rounded((w, h)), "angle": round(float(angle), _DECIMALS),
            "corners": [_rounded(corner) for corner in corners]}


def _box_record(box: torch.Tensor | tuple) -> list[float] | None:
    """``(x, y, w, h)`` as a list, None where the tracker gave NaN (no box)."""
    values = [float(value) for value in box]
    return None if any(math.isnan(value) for value in values) else _rounded(values)


class BoxRecorder:
    """Collects one sequence's boxes as the writer steps its tracker, then writes boxes.json.

    Args:
        object_ids: ``(L,)`` the object id of each label (label 0, the background, included).
        first_ids: ``(H, W)`` uint8 object ids of the first frame (its boxes are derived from them).
    """

    def __init__(self, object_ids: np.ndarray, first_ids: np.ndarray) -> None:
        self.objects = [int(i) for i in object_ids[1:]]
        self.first_ids = first_ids
        self.frames: list[dict[str, Any]] = []
        self.predicts, self.rotated = False, False

    def add(self, stem: str, boxes: torch.Tensor | None, rotated: torch.Tensor | None) -> None:
        """The tracker's boxes of frame ``stem``: ``boxes`` ``(L - 1, 4)`` ``(x, y, w, h)``, ``rotated``
        ``(L - 1, 5)`` ``(cx, cy, w, h, angle)``, either None; NaN rows: no box."""
        self.predicts, self.rotated = self.predicts or boxes is not None, self.rotated or rotated is not None
        frame: dict[str, Any] = {"frame": stem}
        if boxes is not None:
            frame["boxes"] = {str(i): _box_record(box) for i, box in zip(self.objects, boxes.tolist())}
        if rotated is not None:
            frame["rotated"] = {str(i): rotated_record(*box) for i, box in zip(self.objects, rotated.tolist())}
        self.frames.append(frame)

    def _first_frame(self, stem: str) -> dict[str, Any]:
        """The annotation's boxes: min-max, and the minimum-area rectangle for rotated trackers."""
        frame: dict[str, Any] = {"frame": stem, "boxes": {}}
        for object_id in self.objects:
            box = mask_box(self.first_ids, object_id)
            frame["boxes"][str(object_id)] = None if box is None else list(box)
        if self.rotated:
            frame["rotated"] = {str(i): rotated_record(*rotated_box(torch.from_numpy(self.first_ids == i)))
                                for i in self.objects}
        return frame

    def write(self, folder: Path, first_stem: str, source: str) -> Path | None:
        """Writes ``folder/boxes.json`` when the tracker predicted boxes (None, nothing written, otherwise).
        Every later frame must have been :meth:`add`-ed with boxes."""
        if not self.predicts:
            return None
        missing = [frame["frame"] for frame in self.frames if "boxes" not in frame]
        if missing:
            raise ValueError(f"the tracker gave no boxes for frame {missing[0]} but did for others")
        content = {"format": BOXES_FORMAT, "source": source, "objects": self.objects, "box": BOX_CONVENTION,
                   "rotated": self.rotated, "frames": [self._first_frame(first_stem), *self.frames]}
        path = folder / BOXES_FILE
        path.write_text(json.dumps(content) + "\n")
        return path


# --------------------------------------------------------------------------
# Reading back (mast evaluate)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackerBoxes:
    """A checked boxes.json: its ``source`` (tracker name), ``objects`` ids and, per frame stem,
    each object's ``(x, y, w, h)`` box (None: no box on that frame)."""

    path: str
    source: str
    objects: tuple[int, ...]
    frames: dict[str, dict[int, Box | None]]


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"{path}: {message} (not a boxes.json of mast propagate, format {BOXES_FORMAT})")


def _check_box(value: Any, path: Path, where: str) -> Box | None:
    """A ``[x, y, w, h]`` of finite numbers with ``w, h > 0``, or None."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            or min(value[2:]) <= 0):
        raise _fail(path, f"{where}: a box is null or [x, y, w, h] of finite numbers with w, h > 0, got {value!r}")
    return tuple(value)


def _check_objects(content: dict, path: Path) -> tuple[int, ...]:
    objects = content.get("objects")
    if (not isinstance(objects, list) or not objects or len(set(objects)) != len(objects)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= 254 for i in objects)):
        raise _fail(path, f"'objects' must list distinct object ids in 1..254, got {objects!r}")
    return tuple(objects)


def _check_frame(frame: Any, objects: tuple[int, ...], path: Path, index: int) -> tuple[str, dict[int, Box | None]]:
    if not (isinstance(frame, dict) and isinstance(frame.get("frame"), str) and isinstance(frame.get("boxes"), dict)):
        raise _fail(path, f"frame entry {index} must hold a 'frame' name and a 'boxes' object")
    stem, boxes = frame["frame"], frame["boxes"]
    if set(boxes) != {str(i) for i in objects}:
        raise _fail(path, f"frame {stem}: boxes are given for objects {sorted(boxes)}, but 'objects' is "
                          f"{list(objects)}")
    return stem, {i: _check_box(boxes[str(i)], path, f"frame {stem}, object {i}") for i in objects}


def read_tracker_boxes(path: Path, result_stems: list[str]) -> TrackerBoxes:
    """Reads and checks a boxes.json; its frames must be ``result_stems``, the mask PNGs beside it.

    Raises:
        ValueError: one line naming ``path``: unreadable JSON, another format, a malformed box,
            objects that differ between frames, or frames that are not the results'.
    """
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(content, dict) or content.get("format") != BOXES_FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise _fail(path, f"format {found!r}")
    if not isinstance(content.get("source"), str) or not isinstance(content.get("frames"), list):
        raise _fail(path, "needs a 'source' name and a list of 'frames'")
    objects = _check_objects(content, path)
    frames = dict(_check_frame(frame, objects, path, index) for index, frame in enumerate(content["frames"]))
    if len(frames) != len(content["frames"]):
        raise _fail(path, "a frame is listed twice")
    if set(frames) != set(result_stems):
        extra, missing = sorted(set(frames) - set(result_stems)), sorted(set(result_stems) - set(frames))
        raise ValueError(f"{path}: its frames are not the results' mask PNGs beside it ("
                         + "; ".join(filter(None, [extra and f"no PNG for {', '.join(extra[:3])}",
                                                   missing and f"no box for {', '.join(missing[:3])}"])) + ")")
    return TrackerBoxes(str(path), content["source"], objects, frames)
