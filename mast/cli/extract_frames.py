"""``mast extract-frames``: decode videos once into folders of JPEG frames.

Training draws random clips; read straight from a video file, every clip
decodes from the key frame before it (seconds per clip for long key-frame
intervals), while a JPEG frame costs one small decode. This command decodes
each video once, in order:

  OUT/<video stem>/00000.jpg, 00001.jpg, ...

the frame-folder layout that `mast pretrain --data OUT` (each folder one
video), `mast finetune` and `mast propagate --video OUT/<stem>` read.

Examples:
  mast extract-frames videos/*.mp4 --out frames/
  mast extract-frames clip.mov walk.mkv --out frames/ --size 480 --fps 15
  mast pretrain --data frames/ --out runs/mine

OUT/run.json records the settings (--size, --fps, --quality) and each
finished video with the file it came from. A rerun with the same settings
skips the videos already finished (a run stopped half-way resumes where it
stopped) and redoes those whose file changed since; a video of another file
with the same stem is refused; other settings are refused unless --overwrite, which redoes
everything and removes only what earlier runs wrote. Each video's folder
appears complete or not at all. OUT must be new, empty or made by this
command; it may not be, contain or lie inside an input. Every video is
checked (it exists, its first frame decodes, no two share a stem) before
the first write.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mast.cli import error_text

if TYPE_CHECKING:  # cv2 and the data layer load when the command runs, not for --help
    import numpy as np

    from mast.common.outputs import OutputFolder

#: ``mast.data.video.VIDEO_EXTENSIONS``, restated so that ``--help`` needs no OpenCV.
VIDEO_NAMES = "mp4/avi/mov/mkv/webm"
#: How errors show the library's arguments: the inputs are positional.
FLAGS = {"videos": "VIDEO"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..100, got {text}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "extract-frames", help="decode videos once into JPEG frame folders (fast training input)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help=f"video files ({VIDEO_NAMES})")
    parser.add_argument("--out", type=Path, required=True, help="output folder (OUT/<video stem>/<frame>.jpg)")
    parser.add_argument("--size", type=_positive_int,
                        help="shorter side of the frames in pixels, aspect kept (default: the video's own size)")
    parser.add_argument("--fps", type=_positive_float,
                        help="keep at most this many frames per second of video (default: every frame)")
    parser.add_argument("--quality", type=_quality, default=95, help="JPEG quality, 1..100 (default 95)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo every video, also under other settings (only files mast wrote in OUT are removed)")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class _Video:
    """One input, checked: its file, the folder name it gets, its frame rate and frame count
    as the container states them, and what identifies the file in the record."""

    path: Path
    name: str
    fps: float
    frames: int

    @property
    def identity(self) -> dict:
        stat = self.path.stat()
        return {"file": str(self.path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def run(args: argparse.Namespace) -> int:
    try:
        videos = _check_videos(args.videos)
        folder, todo = _open_output(args, videos)
    except (ValueError, OSError) as error:
        print(f"mast extract-frames: error: {error_text(error, FLAGS)}", file=sys.stderr)
        return 2
    if len(todo) < len(videos):
        print(f"skipping {len(videos) - len(todo)} video(s) already extracted in {args.out} with the same settings")
    try:
        frames = _extract_all(todo, folder, args)
    except (ValueError, OSError) as error:
        print(f"mast extract-frames: error: {error_text(error, FLAGS)}", file=sys.stderr)
        return 2
    print(f"extracted {len(todo)} video(s), {frames} frames, to {args.out}; settings in {args.out / 'run.json'}")
    return 0


def _check_videos(paths: list[Path]) -> list[_Video]:
    """Every input exists, is a video file whose first frame decodes, and has its own stem."""
    import cv2

    from mast.data.video import VIDEO_EXTENSIONS, VideoFileSource

    videos = []
    for path in paths:
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(f"{path} is not a video file ({VIDEO_NAMES})")
        source = VideoFileSource.open(path)  # exists, opens, decodes its first frame
        capture = cv2.VideoCapture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        videos.append(_Video(path, path.stem, fps, source.num_frames))
    names = [video.name for video in videos]
    for name in sorted({name for name in names if names.count(name) > 1}):
        clashing = ", ".join(str(video.path) for video in videos if video.name == name)
        raise ValueError(f"videos {clashing} share the stem {name!r}, so both would be OUT/{name}/; "
                         "rename one or extract them into separate folders")
    return videos


def _open_output(args: argparse.Namespace, videos: list[_Video]) -> tuple[OutputFolder, list[_Video]]:
    """The checked output folder and the videos still to extract (nothing written yet): not those
    finished from the same file, unchanged; a folder made from another file is refused."""
    from mast.common.outputs import OutputFolder, check_separate

    check_separate(args.out, {"videos": [video.path for video in videos]})
    settings = {"size": args.size, "fps": args.fps, "quality": args.quality}
    folder = OutputFolder(args.out, "extract-frames", settings, args.overwrite).check()
    redo_all = args.overwrite or folder.replace_previous
    finished = {} if redo_all else _finished_sources(folder)
    todo = []
    for video in videos:
        source = finished.get(video.name)
        if source == video.identity:
            continue
        if source is not None and source["file"] != video.identity["file"]:
            raise ValueError(f"{args.out / video.name} holds the frames of another file, {source['file']}, "
                             f"not of {video.path}; use another folder, or --overwrite to redo it")
        folder.check_entry(video.name)
        todo.append(video)
    return folder, todo


def _finished_sources(folder: OutputFolder) -> dict[str, dict]:
    """``{name: identity}`` of each video whose folder an earlier run finished (recorded in its
    history after the folder was in place; a folder without one is redone)."""
    sources: dict[str, dict] = {}
    for invocation in (folder.previous or {}).get("history", []):
        extracted = invocation.get("extracted") if isinstance(invocation, dict) else None
        sources.update(extracted if isinstance(extracted, dict) else {})
    return {name: identity for name, identity in sources.items()
            if isinstance(identity, dict) and "file" in identity
            and any(file.startswith(f"{name}/") for file in folder.files)}


def _extract_all(videos: list[_Video], folder: OutputFolder, args: argparse.Namespace) -> int:
    """Writes each video's folder in turn, recording it once in place; returns the frame count."""
    folder.start({"argv": args.command_line, "videos": [str(video.path) for video in videos]},
                 start_over=args.overwrite)
    done: dict[str, dict] = {}
    frames = 0
    for video in videos:
        with folder.entry(video.name) as staging:
            frames += _extract(video, staging, args)
        done[video.name] = video.identity
        folder.finish({"extracted": done, "frames": frames})
    return frames


def _extract(video: _Video, staging: Path, args: argparse.Namespace) -> int:
    """Decodes ``video`` into ``staging/00000.jpg, ...``; returns the number of frames written."""
    import cv2
    from tqdm import tqdm

    from mast.data.video import decode_file_frames

    keep = _kept_frames(video.fps, args.fps)
    written = 0
    with tqdm(total=sum(map(keep, range(video.frames))), unit="frame", desc=video.name, dynamic_ncols=True) as bar:
        for index, image in enumerate(decode_file_frames(video.path)):
            if not keep(index):
                continue
            target = staging / f"{written:05d}.jpg"
            if not cv2.imwrite(str(target), _resized(image, args.size), [cv2.IMWRITE_JPEG_QUALITY, args.quality]):
                raise OSError(f"could not write {target}")
            written += 1
            bar.update(1)
    return written


def _kept_frames(video_fps: float, fps: float | None):
    """Whether to keep file frame ``i``: each frame that starts a new 1/fps slot of video time
    (every frame without ``fps``, at or above the video's rate, or when the container states none)."""
    if fps is None or video_fps <= 0 or fps >= video_fps:
        return lambda index: True
    ratio = fps / video_fps
    return lambda index: index == 0 or math.floor(index * ratio) > math.floor((index - 1) * ratio)


def _resized(image: np.ndarray, size: int | None) -> np.ndarray:
    """``image`` ((H, W, 3)) with its shorter side ``size`` (aspect kept), or as it is."""
    import cv2

    height, width = image.shape[:2]
    if size is None or min(height, width) == size:
        return image
    scale = size / min(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
