"""Pictures of propagation results: overlays, a video per sequence, an HTML index.

People check propagation by looking, so ``mast visualize`` (and
``mast propagate`` with overlays) writes, per sequence, every frame with its
masks blended in (DAVIS colours, object contours drawn), a VP9 WebM video of
them (a format current browsers play; OpenCV's ``mp4v`` MP4 is not), and one
``index.html`` showing all sequences. Every frame needs its result PNG, of the
frame's size: :func:`check_results` says so before anything is written.
"""
from __future__ import annotations

import contextlib
import functools
import html
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import quote

import cv2
import numpy as np
import torch

from mast.common.files import PathLike
from mast.common.outputs import OutputFolder, check_separate
from mast.common.masks import davis_palette, read_mask

VIDEO_SUFFIX = ".webm"
VIDEO_TYPE = "video/webm"
_VIDEO_CODEC = "VP90"  # VP9, through OpenCV's FFmpeg (libvpx)


def overlay(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends object colours into a frame and draws their contours.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        ids: ``(H, W)`` uint8 object ids (0 = background, left untouched).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    if frame.shape[:2] != ids.shape:
        raise ValueError(f"mask {ids.shape} and frame {frame.shape[:2]} differ in size")
    palette = davis_palette()
    out = frame.astype(np.float32)
    objects = ids > 0
    out[objects] = (1 - alpha) * out[objects] + alpha * palette[ids[objects]]
    out = np.ascontiguousarray(out.round().astype(np.uint8))
    for object_id in np.unique(ids[objects]):
        contours, _ = cv2.findContours((ids == object_id).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        colour = tuple(int(c) for c in np.minimum(palette[object_id].astype(int) + 80, 255))
        cv2.drawContours(out, contours, -1, colour, thickness=max(1, round(min(ids.shape) / 240)))
    return out


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float RGB in ``[0, 1]`` -> ``(H, W, 3)`` uint8."""
    return (frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# -- videos -------------------------------------------------------------------

def _not_the_tag_notice(line: str) -> bool:
    """False for the line OpenCV's FFmpeg writer prints on opening a WebM (``tag ... 'VP90' is
    not supported with codec id 166 and format 'webm / WebM'``). A WebM names its codec in its
    own header, not by a four-character tag, so every tag draws it while the video is VP9 all
    the same: it would read as a failure."""
    return "is not supported with codec id" not in line


@contextlib.contextmanager
def _native_stderr(passes: Callable[[str], bool]) -> Iterator[None]:
    """Passes on only the lines for which ``passes`` is true of what native code prints meanwhile.

    OpenCV prints with C stdio, past Python and OpenCV's log level, hence file descriptor 2
    borrowed for the time.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(filter(passes, lines)))


def _open_video(path: Path, width: int, height: int, fps: float, codec: str,
                passes: Callable[[str], bool] = _not_the_tag_notice) -> cv2.VideoWriter:
    """An open writer of ``codec`` frames (BGR, ``(height, width, 3)`` uint8) to ``path``; what
    OpenCV prints on opening it is passed on where ``passes``."""
    with _native_stderr(passes):
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV {cv2.__version__} cannot write {codec} videos to {path}")
    return writer


@functools.cache
def _writes_readable_video(codec: str) -> bool:
    """Whether a 2-frame ``codec`` WebM written to a temporary folder (not the output) reads back."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / f"probe{VIDEO_SUFFIX}"
        try:
            writer = _open_video(probe, 16, 16, 12.0, codec, passes=lambda line: False)  # the check says it all
        except OSError:
            return False
        for value in (0, 255):
            writer.write(np.full((16, 16, 3), value, np.uint8))
        writer.release()
        capture = cv2.VideoCapture(str(probe))
        frames = 0
        while capture.read()[0]:
            frames += 1
        capture.release()
    return frames == 2


def check_video_writer() -> None:
    """Raises ``OSError`` (one line) unless this OpenCV writes VP9 WebM videos (probed once in a
    temporary folder): without it, overlay videos would be files browsers cannot play."""
    if not _writes_readable_video(_VIDEO_CODEC):
        raise OSError(f"this OpenCV ({cv2.__version__}) cannot write VP9 WebM videos, the overlay videos browsers "
                      "play; install an OpenCV whose FFmpeg has libvpx (the opencv-python-headless wheels do)")


# -- results --------------------------------------------------------------------

def _result_ids(results_dir: Path, name: str, stem: str, size: tuple[int, int]) -> np.ndarray:
    """The ``(H, W)`` uint8 ids of ``results_dir/name/stem.png``, checked to be ``size`` ``(H, W)``."""
    path = results_dir / name / f"{stem}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: every frame of {name!r} needs a result")
    ids = read_mask(path)  # a ValueError naming the file when it does not decode
    if ids.shape != size:
        raise ValueError(f"{path} is {ids.shape[1]}x{ids.shape[0]} but the frames of {name!r} "
                         f"are {size[1]}x{size[0]}")
    return ids


def check_results(sequences: Iterable[tuple[str, Iterator[tuple[str, torch.Tensor]]]],
                  results_dir: PathLike) -> None:
    """Checks, before anything is written, that every frame of every ``(name, frames)`` sequence
    has a readable result PNG ``results_dir/<name>/<stem>.png`` of the frame's size.

    ``frames`` yields ``(stem, (3, H, W) frame)`` pairs; every frame and result is read once.

    Raises:
        FileNotFoundError: a sequence folder or a frame's result is missing (naming it).
        ValueError: a result does not decode or is not the size of its frame (naming it).
    """
    results = Path(results_dir)
    for name, frames in sequences:
        if not (results / name).is_dir():
            raise FileNotFoundError(f"{results / name} is missing: no results for the sequence {name!r}")
        count = 0
        for stem, frame in frames:
            _result_ids(results, name, stem, tuple(frame.shape[-2:]))
            count += 1
        if count == 0:
            raise ValueError(f"{name!r} has no frames")


# -- pictures -------------------------------------------------------------------

def write_sequence_pictures(
    name: str, frames: Iterable[tuple[str, torch.Tensor]], results_dir: Path, folder: OutputFolder, fps: float = 12.0
) -> dict:
    """Overlays of one sequence: ``<folder>/<name>/<stem>.jpg`` and ``<folder>/<name>.webm`` (VP9).

    Every frame needs its result PNG of its size (:func:`check_results` checks a
    whole run first). Both are written under temporary names and renamed at the end.

    Returns:
        ``{"name", "frames", "video", "thumbnails"}`` for the index page.
    """
    stems: list[str] = []
    video = f"{name}{VIDEO_SUFFIX}"
    folder.check_entry(name)
    folder.check_entry(video)
    with folder.entry(name) as staging:

        def write_video(video_path: Path) -> None:
            writer = None
            try:
                for stem, frame in frames:
                    picture = overlay(_to_uint8(frame), _result_ids(results_dir, name, stem, tuple(frame.shape[-2:])))
                    cv2.imwrite(str(staging / f"{stem}.jpg"), picture[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
                    if writer is None:
                        writer = _open_video(video_path, picture.shape[1], picture.shape[0], fps, _VIDEO_CODEC)
                    writer.write(picture[:, :, ::-1])
                    stems.append(stem)
            finally:
                if writer is not None:
                    writer.release()
            if not stems:
                raise ValueError(f"{name!r} has no frames")

        folder.write_file(video, write_video)
    picks = np.linspace(0, len(stems) - 1, min(6, len(stems))).round().astype(int)
    return {"name": name, "frames": len(stems), "video": video,
            "thumbnails": [f"{name}/{stems[i]}.jpg" for i in picks]}


def _url(path: str) -> str:
    """A relative file path as an attribute value: percent-encoded (``#``, ``?``, spaces), then HTML-escaped."""
    return html.escape(quote(path))


def index_page(sequences: list[dict], title: str = "mast propagation results") -> str:
    """A small HTML page: per sequence, its video (a muted loop, with controls) and evenly spaced
    overlay frames."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}img,video{height:160px;margin:2px}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    for entry in sequences:
        video = _url(entry["video"])
        parts.append(f"<h2>{html.escape(entry['name'])} <small>({entry['frames']} frames)</small></h2>")
        parts.append(f"<video controls muted loop playsinline preload='metadata'>"
                     f"<source src='{video}' type='{VIDEO_TYPE}'><a href='{video}'>{video}</a></video>")
        parts += [f"<a href='{_url(t)}'><img src='{_url(t)}' loading='lazy'></a>" for t in entry["thumbnails"]]
    return "\n".join(parts) + "\n"


def overlay_folder(out_dir: PathLike, results_dir: PathLike, inputs: dict[str, PathLike | None],
                   overwrite: bool = False) -> OutputFolder:
    """The recorded output folder of overlays of ``results_dir`` (not yet checked).

    ``out_dir`` may be a direct sub-folder of ``results_dir`` (``RESULTS/overlays``,
    the default) other than a sequence folder; it may not be, contain or lie in
    another input. Raises ``OSError`` first when this OpenCV cannot write the
    videos (:func:`check_video_writer`).
    """
    check_video_writer()
    out, results = Path(out_dir), Path(results_dir)
    # A sequence folder of the results holds PNGs and no record: OutputFolder.check refuses it.
    direct_child = out.resolve().parent == results.resolve()
    check_separate(out, {**inputs, "results": results},
                   may_hold_output=frozenset({"results"}) if direct_child else frozenset())
    return OutputFolder(out, "visualize", {"results": str(results.resolve())}, overwrite)


def visualize(items: Iterable[tuple[str, Iterator[tuple[str, torch.Tensor]]]], results_dir: PathLike,
              folder: OutputFolder | PathLike) -> Path:
    """Pictures for every ``(name, frames)`` item, then the index page; returns its path.

    ``folder`` is a started :class:`OutputFolder` or a path (checked and
    started here with :func:`overlay_folder`). Results this run did not just
    write are best checked first with :func:`check_results`: a missing or
    wrong-size one stops the run at its sequence, earlier ones written.
    """
    if not isinstance(folder, OutputFolder):
        folder = overlay_folder(folder, results_dir, {}).check()
        folder.start()
    entries = [write_sequence_pictures(name, frames, Path(results_dir), folder) for name, frames in items]
    page = index_page(entries)
    return folder.write_file("index.html", lambda path: path.write_text(page))
