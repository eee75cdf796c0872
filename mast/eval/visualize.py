"""Pictures of propagation results: overlays, a video per sequence, an HTML index.

People check propagation by looking, so ``mast visualize`` (and
``mast propagate`` with overlays) writes, per sequence, every frame with its
masks blended in (DAVIS colours, object contours drawn), an MP4 of them,
and one ``index.html`` showing all sequences.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch

from mast.common.files import PathLike
from mast.common.outputs import OutputFolder, check_separate
from mast.common.masks import davis_palette, read_mask


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


def write_sequence_pictures(
    name: str, frames: Iterable[tuple[str, torch.Tensor]], results_dir: Path, folder: OutputFolder, fps: float = 12.0
) -> dict:
    """Overlays of one sequence: ``<folder>/<name>/<stem>.jpg`` and ``<folder>/<name>.mp4``.

    Frames without a result PNG are skipped (none at all is an error naming the folder).
    Both are written under temporary names and renamed at the end.

    Returns:
        ``{"name", "frames", "video", "thumbnails"}`` for the index page.
    """
    stems: list[str] = []
    folder.check_entry(name)
    folder.check_entry(f"{name}.mp4")
    with folder.entry(name) as staging:

        def write_video(video_path: Path) -> None:
            writer = None
            for stem, frame in frames:
                mask_path = results_dir / name / f"{stem}.png"
                if not mask_path.is_file():
                    continue
                picture = overlay(_to_uint8(frame), read_mask(mask_path))
                cv2.imwrite(str(staging / f"{stem}.jpg"), picture[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
                if writer is None:
                    height, width = picture.shape[:2]
                    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                writer.write(picture[:, :, ::-1])
                stems.append(stem)
            if writer is None:
                raise FileNotFoundError(f"no result PNG matches a frame of {name!r} in {results_dir / name}")
            writer.release()

        folder.write_file(f"{name}.mp4", write_video)
    picks = np.linspace(0, len(stems) - 1, min(6, len(stems))).round().astype(int)
    return {"name": name, "frames": len(stems), "video": f"{name}.mp4",
            "thumbnails": [f"{name}/{stems[i]}.jpg" for i in picks]}


def index_page(sequences: list[dict], title: str = "mast propagation results") -> str:
    """A small HTML page: per sequence, the video and evenly spaced overlay frames."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}img,video{height:160px;margin:2px}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    for entry in sequences:
        name = html.escape(entry["name"])
        parts.append(f"<h2>{name} <small>({entry['frames']} frames)</small></h2>")
        parts.append(f"<video src='{html.escape(entry['video'])}' controls loop muted></video>")
        parts += [f"<a href='{html.escape(t)}'><img src='{html.escape(t)}' loading='lazy'></a>" for t in entry["thumbnails"]]
    return "\n".join(parts) + "\n"


def overlay_folder(out_dir: PathLike, results_dir: PathLike, inputs: dict[str, PathLike | None],
                   overwrite: bool = False) -> OutputFolder:
    """The recorded output folder of overlays of ``results_dir`` (not yet checked).

    ``out_dir`` may be a direct sub-folder of ``results_dir`` (``RESULTS/overlays``,
    the default) other than a sequence folder; it may not be, contain or lie in
    another input.
    """
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
    started here with :func:`overlay_folder`).
    """
    if not isinstance(folder, OutputFolder):
        folder = overlay_folder(folder, results_dir, {}).check()
        folder.start()
    entries = [write_sequence_pictures(name, frames, Path(results_dir), folder) for name, frames in items]
    page = index_page(entries)
    return folder.write_file("index.html", lambda path: path.write_text(page))
