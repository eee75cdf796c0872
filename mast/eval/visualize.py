"""Pictures of propagation results: overlays, a video per sequence, an HTML index.

People check propagation by looking, so ``mast visualize`` (and
``mast propagate --overlay``) writes, per sequence, every frame with its
masks blended in (DAVIS colours, object contours drawn), an MP4 of them,
and one ``index.html`` showing all sequences.
"""
from __future__ import annotations

import html
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch

from mast.eval.io import davis_palette, read_mask


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
    name: str, frames: Iterable[tuple[str, torch.Tensor]], results_dir: Path, out_dir: Path, fps: float = 12.0
) -> dict:
    """Overlays of one sequence: ``out_dir/<name>/<stem>.jpg`` and ``out_dir/<name>.mp4``.

    Frames without a result PNG are skipped (none at all is an error naming the folder).
    Written under temporary names and renamed at the end.

    Returns:
        ``{"name", "frames", "video", "thumbnails"}`` for the index page.
    """
    staging = out_dir / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    video_path = out_dir / f".{name}.tmp-{uuid.uuid4().hex[:8]}.mp4"
    writer, stems = None, []
    try:
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
        if writer is not None:
            writer.release()
        if not stems:
            raise FileNotFoundError(f"no result PNG matches a frame of {name!r} in {results_dir / name}")
        _replace(staging, out_dir / name)
        os.replace(video_path, out_dir / f"{name}.mp4")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        video_path.unlink(missing_ok=True)
        raise
    picks = np.linspace(0, len(stems) - 1, min(6, len(stems))).round().astype(int)
    return {"name": name, "frames": len(stems), "video": f"{name}.mp4",
            "thumbnails": [f"{name}/{stems[i]}.jpg" for i in picks]}


def _replace(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    source.rename(target)


def write_index(out_dir: Path, sequences: list[dict], title: str = "mast propagation results") -> Path:
    """A small HTML page: per sequence, the video and evenly spaced overlay frames."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}img,video{height:160px;margin:2px}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    for entry in sequences:
        name = html.escape(entry["name"])
        parts.append(f"<h2>{name} <small>({entry['frames']} frames)</small></h2>")
        parts.append(f"<video src='{html.escape(entry['video'])}' controls loop muted></video>")
        parts += [f"<a href='{html.escape(t)}'><img src='{html.escape(t)}' loading='lazy'></a>" for t in entry["thumbnails"]]
    path = out_dir / "index.html"
    temporary = out_dir / f".index.{uuid.uuid4().hex[:8]}.tmp"
    temporary.write_text("\n".join(parts) + "\n")
    os.replace(temporary, path)
    return path


def visualize(items: Iterable[tuple[str, Iterator[tuple[str, torch.Tensor]]]], results_dir: Path, out_dir: Path) -> Path:
    """Pictures for every ``(name, frames)`` item, then the index page; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [write_sequence_pictures(name, frames, Path(results_dir), out_dir) for name, frames in items]
    return write_index(out_dir, entries)
