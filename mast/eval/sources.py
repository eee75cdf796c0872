"""Where propagation inputs come from: DAVIS folders, a video file or frame
folder with a first-frame mask, or a first-frame box.

First-frame annotations follow one rule on every path (a DAVIS folder,
read by :class:`mast.data.davis.DavisDataset`, and a video with a mask PNG,
read by :func:`mast.eval.propagate.first_frame_ids`, which ``mast.track``
uses too): pixel values are object ids, 0 is background and 255 is void,
which is not an object (it becomes background, as the DAVIS-2017 toolkit
reads it). A mask holding only 0 and 255 therefore has no object and is an
error: for a DAVIS folder it suggests year 2016 (DAVIS-2016 masks are 0/255
with 255 = the object, read as ``> 127``); for a mask PNG it asks for the
object as id 1. A first box reaching outside the frame is clipped to it, with
a warning giving the clipped box.

Every input carries an identity (:attr:`mast.eval.propagate.PropagationInput.identity`)
that changes when its files do: frame files by name, size and modification
time, a video file by path, size and modification time, and the first-frame
annotation by content. A rerun of ``mast propagate`` skips a sequence only
when it is equal.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from mast.common.errors import ArgumentError, MissingPathError
from mast.common.masks import read_mask
from mast.data.davis import DavisDataset
from mast.data.video import VIDEO_EXTENSIONS, FrameFolderSource, VideoFileSource, VideoSource
from mast.eval.propagate import PropagationInput, first_frame_ids

def _named_frames(source: VideoSource, stems: list[str] | None = None):
    """A callable giving ``(stem, frame)`` pairs: frame-file stems, else ``00000``, ``00001``, ..."""

    def frames() -> Iterator[tuple[str, torch.Tensor]]:
        for index, frame in enumerate(source.iter_frames()):
            yield (stems[index] if stems else f"{index:05d}"), frame

    return frames


def _frame_files_identity(folder: Path, paths: Sequence[Path]) -> dict:
    """A frame folder by path, and its frame files by name, size and modification time: any frame
    changed, added or removed changes the hash."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}/{stat.st_size}/{stat.st_mtime_ns}\n".encode())
    return {"frame_folder": str(folder.resolve()), "frame_files": len(paths), "frame_files_sha256": digest.hexdigest()}


def _video_file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"video_file": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _annotation_identity(ids: np.ndarray) -> dict:
    """A first-frame annotation by content (as read, so the year rule and a box count too)."""
    digest = hashlib.sha256(f"{ids.shape}".encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.uint8).tobytes())
    return {"annotation_sha256": digest.hexdigest()}


def parse_box(box: str | Sequence[float]) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` or 4 numbers (pixels) -> whole pixels; width and height must be positive."""
    try:
        x, y, w, h = (int(round(float(v))) for v in (box.split(",") if isinstance(box, str) else box))
    except (TypeError, ValueError, OverflowError):  # not 4 numbers, or inf / nan
        x = y = w = h = 0
    if w <= 0 or h <= 0:
        raise ArgumentError("first_box", f"must be 'x,y,w,h': 4 finite numbers in pixels with w, h > 0; got {box!r}")
    return x, y, w, h


def box_to_ids(box: tuple[int, int, int, int], height: int, width: int) -> np.ndarray:
    """A box-shaped first-frame mask ``(H, W)`` uint8 (object id 1), clipped to the frame.

    A box partly outside the frame is clipped, with a ``UserWarning`` giving
    the clipped ``x,y,w,h``; a box wholly outside is an ``ArgumentError``.
    """
    x, y, w, h = box
    left, top, right, bottom = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if right <= left or bottom <= top:
        raise ArgumentError("first_box", f"{x},{y},{w},{h} lies outside the {width}x{height} frame")
    clipped = (left, top, right - left, bottom - top)
    if clipped != (x, y, w, h):
        warnings.warn(
            f"first box {x},{y},{w},{h} reaches outside the {width}x{height} frame; "
            f"clipped to {','.join(map(str, clipped))}",
            UserWarning,
            stacklevel=2,
        )
    ids = np.zeros((height, width), dtype=np.uint8)
    ids[top:bottom, left:right] = 1
    return ids


@dataclass
class FrameStream:
    """A video's frames, decoded on demand.

    Attributes:
        name: sequence name (folder name or file stem).
        frames: callable returning a fresh iterator of ``(stem, (3, H, W) frame)`` pairs.
        num_frames: frame count as far as known.
        frames_source: the video file or frame folder.
        identity: what identifies the files (see the module docstring), JSON-native values.
    """

    name: str
    frames: Callable[[], Iterator[tuple[str, torch.Tensor]]]
    num_frames: int
    frames_source: str = ""
    identity: dict = field(default_factory=dict)

    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the first frame."""
        _, first = next(iter(self.frames()), (None, None))
        if first is None:
            raise ValueError(f"{self.name}: no decodable frame")
        return tuple(first.shape[-2:])


def video_stream(video: str | os.PathLike) -> FrameStream:
    """A video file (mp4/avi/mov/mkv) or a folder of frames."""
    video = Path(video)
    if video.is_dir():
        source = FrameFolderSource.from_folder(video)
        # DAVIS-like sample folders (<seq>/JPEGImages/, <seq>/JPEGImages/480p/) are named after <seq>.
        named = video.parent if video.name in ("JPEGImages", "480p") else video
        named = named.parent if named.name == "JPEGImages" else named
        return _folder_stream(named.name, source, video)
    if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
        source = VideoFileSource.open(video)
        return FrameStream(video.stem, _named_frames(source), source.num_frames, str(video),
                           _video_file_identity(video))
    if video.exists():
        raise ArgumentError("video", f"{video}: not a frame folder or a {'/'.join(sorted(VIDEO_EXTENSIONS))} file")
    raise MissingPathError("video", f"{video} does not exist")


def davis_streams(
    root: str | os.PathLike, split: str = "val", year: int = 2017, sequences: list[str] | None = None
) -> list[FrameStream]:
    """The frame folders of a DAVIS split (or of ``sequences``), checked up front."""
    dataset = DavisDataset.at(root, year)
    streams = []
    for name in sequences or dataset.sequences(split):
        source = FrameFolderSource(name, tuple(dataset.frame_paths(name)))
        streams.append(_folder_stream(name, source, dataset.frames_dir(name)))
    return streams


def _folder_stream(name: str, source: FrameFolderSource, folder: Path) -> FrameStream:
    return FrameStream(name, _named_frames(source, [p.stem for p in source.frame_paths]), source.num_frames,
                       str(folder), _frame_files_identity(folder, source.frame_paths))


def _checked_mask(ids: np.ndarray, path: str, size: tuple[int, int]) -> np.ndarray:
    if ids.shape != size:
        raise ValueError(f"{path}: mask is {ids.shape[1]}x{ids.shape[0]} but the frames are {size[1]}x{size[0]}")
    return ids


def video_input(
    video: str | os.PathLike, first_mask: str | os.PathLike | None = None, first_box: str | None = None
) -> PropagationInput:
    """One video file or frame folder, annotated by a mask PNG or a box.

    ``first_mask``: a PNG of object ids the size of the frames (palette,
    grayscale or DAVIS-colour RGB; 0 = background, 255 = void, not an
    object). ``first_box``: ``"x,y,w,h"`` in pixels, object id 1, clipped to
    the frame with a warning.
    """
    if (first_mask is None) == (first_box is None):
        raise ArgumentError("first_mask", "give exactly one of first_mask (a PNG) or first_box (x,y,w,h)",
                            mentions=("first_mask", "first_box"))
    stream = video_stream(video)
    height, width = stream.size()
    if first_box is not None:
        ids, mask_source = box_to_ids(parse_box(first_box), height, width), f"first box {first_box}"
    else:
        mask_source = str(first_mask)
        ids = _checked_mask(first_frame_ids(read_mask(first_mask), mask_source), mask_source, (height, width))
    return _input(stream, ids, mask_source)


def _input(stream: FrameStream, ids: np.ndarray, mask_source: str) -> PropagationInput:
    identity = {**stream.identity, **_annotation_identity(ids)}
    return PropagationInput(stream.name, stream.frames, ids, mask_source, stream.num_frames, identity,
                            stream.frames_source)


def davis_inputs(
    root: str | os.PathLike, split: str = "val", year: int = 2017, sequences: list[str] | None = None
) -> list[PropagationInput]:
    """The sequences of a DAVIS split, each with its first-frame annotation, read under the
    ``year`` rule of :class:`~mast.data.davis.DavisDataset` (a DAVIS-2017 first frame holding
    only 0 and 255 is an error suggesting year 2016)."""
    dataset = DavisDataset.at(root, year)
    inputs = []
    for stream in davis_streams(root, split, year, sequences):
        stem = next(stream.frames())[0]
        mask_path = dataset.mask_path(stream.name, stem)
        if not mask_path.is_file():
            raise FileNotFoundError(f"first-frame annotation missing: {mask_path}")
        ids = _checked_mask(dataset.read_first_ids(mask_path), str(mask_path), stream.size())
        inputs.append(_input(stream, ids, str(mask_path)))
    return inputs
