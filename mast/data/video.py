"""One reading layer for training videos: frame folders, video files, DAVIS / YouTube-VOS roots.

Every source is a :class:`VideoSource`: it has a ``name``, a ``num_frames``
and ``read(indices)``, which returns the requested frames as float RGB in
``[0, 1]``, shape ``(T, 3, H, W)``. Frame folders are read a frame at a time;
video files are decoded once into a cache bounded in bytes
(:mod:`mast.data.video_cache`), since seeking in them is slow.

* :class:`FrameFolderSource` -- a folder of jpg/jpeg/png/bmp frames in frame
  order (by number, :mod:`mast.data.frames`); 8- or 16-bit, colour, grayscale
  or with alpha (dropped).
* :class:`VideoFileSource` -- an mp4/avi/mov/mkv/webm file read with OpenCV, with a
  ``frame_stride`` (frame ``i`` of the source is frame ``i * frame_stride`` of
  the file), decoded once into a bounded cache (:mod:`mast.data.video_cache`).
* :func:`discover_videos` -- walks directories and files and returns a
  :class:`DiscoveryReport` (a sequence of sources plus what was skipped).

Layouts :func:`discover_videos` understands, for each given path:

* a video file, or a directory of video files;
* a folder of frames, or a directory of such folders;
* a DAVIS / YouTube-VOS root (:class:`~mast.data.davis.DavisDataset`): a
  directory with ``JPEGImages/480p/<seq>/`` or ``JPEGImages/<seq>/`` (or
  ``JPEGImages/*.jpg`` directly, named after the root); ``Annotations``
  folders are not frames, but a sequence with a mask for every frame keeps
  them (:meth:`FrameFolderSource.read_masks`);
* any nesting of the above (directories are walked recursively).

Symbolic links: each real directory is walked once (a link back into the data
adds nothing), and a link resolving outside every given directory is skipped
with a warning naming it: the walk never leaves the given paths.

Damaged frame files: every frame file is read by :func:`read_image`, which
raises ``ValueError`` naming the file when it does not decode or is cut
short: a JPEG must end with its end-of-image marker (``FF D9``) and a PNG
with its ``IEND`` chunk, followed by nothing but optional NUL/0xFF padding
(so data appended after the image, as in some phones' motion photos, is
refused too). A JPEG with bytes cut from its middle still ends in ``FF D9``;
when libjpeg runs out of image data before the last block, it fills the rest
of the frame with grey and only warns on stderr: :func:`read_image` collects
that warning while it decodes and refuses the frame too.

Missing frames: the one numbering rule of :mod:`mast.data.frames` (a regular
step: DAVIS's +1, YouTube-VOS's +5). :meth:`FrameFolderSource.from_folder`
raises on a gap by default (so ``mast propagate`` refuses such a folder);
:func:`discover_videos` warns and keeps the folder for training, where a gap
only makes time gaps between frames inexact.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import torch

from mast.data.davis import DavisDataset, read_ids
from mast.data.frames import IMAGE_EXTENSIONS, check_numbering, image_files
from mast.data.samples import read_checked
from mast.data.video_cache import decoded_videos

PathLike = str | os.PathLike

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})

#: Directory names that hold labels, never frames (DAVIS, YouTube-VOS).
_LABEL_DIR_PREFIX = "annotations"


@runtime_checkable
class VideoSource(Protocol):
    """A video whose frames can be read on demand.

    Attributes:
        name: a readable name (sequence folder or file stem; not necessarily unique).
        num_frames: number of readable frames (after any ``frame_stride``).
    """

    name: str

    @property
    def num_frames(self) -> int: ...

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (any order, repeats allowed) as ``(T, 3, H, W)`` float RGB in ``[0, 1]``."""
        ...

    def iter_frames(self) -> Iterator[torch.Tensor]:
        """Every frame in order, one ``(3, H, W)`` at a time (streaming, e.g. for propagation)."""
        ...


def _check_indices(indices: Sequence[int], num_frames: int, name: str) -> list[int]:
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError(f"{name}: read() needs at least one frame index")
    bad = [i for i in indices if i < 0 or i >= num_frames]
    if bad:
        raise IndexError(f"{name}: frame indices {bad} out of range for {num_frames} frames")
    return indices


def _to_float_rgb(image: np.ndarray, source: str) -> torch.Tensor:
    """An OpenCV image (``(H, W)``, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA; uint8/uint16)
    -> ``(3, H, W)`` float32 RGB in ``[0, 1]``."""
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ValueError(f"{source}: unsupported pixel type {image.dtype} (expected 8- or 16-bit)")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # alpha carries no colour
    rgb = np.ascontiguousarray(image[:, :, ::-1])  # OpenCV decodes to BGR
    return torch.from_numpy(rgb.astype(np.float32) / scale).permute(2, 0, 1)


_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"  # type and CRC of the last chunk
#: Bytes some encoders pad image files with after their end marker.
_PADDING = b"\x00\xff"


def _truncation(data: bytes) -> str | None:
    """What shows an image file's bytes are cut short (empty, JPEG without its end-of-image
    marker, PNG without its IEND chunk; trailing NUL/0xFF padding allowed), or None."""
    if not data:
        return "empty file"
    end = data.rstrip(_PADDING)
    if data.startswith(_JPEG_START) and not end.endswith(_JPEG_END):
        return "truncated JPEG: no end-of-image marker (FF D9) at the end of the file"
    if data.startswith(_PNG_START) and not end.endswith(_PNG_END):
        return "truncated PNG: no IEND chunk at the end of the file"
    return None


def read_image(path: PathLike) -> torch.Tensor:
    """One frame file as ``(3, H, W)`` float RGB in ``[0, 1]``.

    Raises ``FileNotFoundError`` or ``ValueError`` naming the file: missing,
    cut short (rule in the module docstring) or not decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame file not found: {path}")
    data = path.read_bytes()
    damage = _truncation(data)
    if damage:
        raise ValueError(f"corrupt frame {path}: {damage}")
    # From memory, not cv2.imread: libjpeg's file reader pads a cut-short JPEG with
    # grey and only prints a warning, while the memory reader fails.
    with _native_stderr(held_back=_JPEG_DATA_RAN_OUT) as printed:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode frame {path} (corrupt or not an image)")
    short = [line.strip() for line in printed if line.strip().lower().endswith(_JPEG_DATA_RAN_OUT)]
    if short:
        raise ValueError(f"corrupt frame {path}: truncated JPEG: its image data ends before the image does, "
                         f"the rest would be grey (libjpeg: {short[0]})")
    return _to_float_rgb(image, str(path))


#: libjpeg's warnings for entropy-coded data that ran out before the last block of the image (bytes
#: cut from a JPEG that still ends in its end-of-image marker): it fills the rest with grey, goes on.
_JPEG_DATA_RAN_OUT = ("premature end of data segment", "premature end of jpeg file")
#: One redirection of file descriptor 2 at a time (the saved descriptor must be the real one).
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr(held_back: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Collects the lines native code (libjpeg inside OpenCV) writes to file descriptor 2 meanwhile:
    libjpeg reports damaged data only as warnings there.

    Yields the list the lines are added to on exit. They go on to stderr too, except those ending
    (case aside) with one of ``held_back``, which the caller reports in its own words.
    """
    lines: list[str] = []
    with _STDERR_LOCK, contextlib.ExitStack() as stack:
        try:
            sink = stack.enter_context(tempfile.TemporaryFile())
            saved = os.dup(2)
        except OSError:  # no stderr, or no room for a temporary file: decode unwatched rather than fail
            yield lines
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += sink.read().decode(errors="replace").splitlines()
            shown = "".join(f"{line}\n" for line in lines if not line.strip().lower().endswith(held_back))
            if shown:
                os.write(2, shown.encode())


def _stack_frames(frames: list[torch.Tensor], name: str) -> torch.Tensor:
    sizes = {tuple(frame.shape[-2:]) for frame in frames}
    if len(sizes) > 1:
        raise ValueError(f"{name}: frames of one video differ in size {sorted(sizes)}; cannot stack them")
    return torch.stack(frames)


@dataclass(frozen=True)
class FrameFolderSource:
    """A video stored as one image file per frame, in file-name order.

    Attributes:
        name: the sequence name (usually the folder name).
        frame_paths: the frame files, in temporal order.
    """

    name: str
    frame_paths: tuple[Path, ...]
    #: one annotation PNG per frame (DAVIS layouts with a full Annotations folder), else None
    mask_paths: tuple[Path, ...] | None = None

    @classmethod
    def from_folder(cls, folder: PathLike, name: str | None = None, on_gap: str = "error") -> "FrameFolderSource":
        """All image files directly in ``folder``, in frame order (:func:`~mast.data.frames.image_files`).

        A gap in numbered file names (see the module docstring) means lost
        frames: ``on_gap="error"`` raises ``ValueError`` naming the first missing
        files, ``"warn"`` warns (``RuntimeWarning``) and keeps the frames there are.
        """
        folder = Path(folder)
        paths = image_files(folder)
        if not paths:
            raise ValueError(f"no frames ({'/'.join(sorted(IMAGE_EXTENSIONS))}) in folder {folder}")
        check_numbering(folder, paths, on_gap)
        return cls(name or folder.name, tuple(paths))

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """``(T, 3, H, W)`` float RGB in ``[0, 1]``; decodes each distinct index once."""
        indices = _check_indices(indices, self.num_frames, self.name)
        decoded = {i: read_checked(self.frame_paths[i], read_image) for i in sorted(set(indices))}
        return _stack_frames([decoded[i] for i in indices], self.name)

    def iter_frames(self) -> Iterator[torch.Tensor]:
        """Every frame in order, ``(3, H, W)`` each."""
        return (read_image(path) for path in self.frame_paths)

    def read_masks(self, indices: Sequence[int]) -> torch.Tensor:
        """Object ids of frames ``indices`` as ``(T, H, W)`` long, read by the rule of a dataset of
        unknown year (:mod:`mast.data.davis`: a 0/255 mask is DAVIS-2016's, otherwise 255 is void)."""
        if self.mask_paths is None:
            raise ValueError(f"{self.name}: this video has no annotations")
        indices = _check_indices(indices, self.num_frames, self.name)
        return torch.stack([torch.from_numpy(read_checked(self.mask_paths[i], _read_any_year).astype(np.int64))
                            for i in indices])


def _read_any_year(path: Path) -> np.ndarray:
    return read_ids(path, year=None)


@dataclass
class VideoFileSource:
    """A video file read with OpenCV; frame ``i`` is frame ``i * frame_stride`` of the file.

    ``num_frames`` starts from the container's frame count, which can be wrong
    (too high) for some files. The first read that finds the real end (the
    first read at all, when the file is decoded into the cache) shrinks
    ``num_frames`` to the real count with a warning, and reads past it are
    clamped to the last decodable frame, so later samples stay inside the video.

    :meth:`read` decodes the whole file once, in order, into a bounded
    per-process cache (:mod:`mast.data.video_cache`: random clips then cost no
    seeking) and reads a file too large for the cache by seeking, a capture
    opened per read (no file handles left open: the source stays picklable
    for DataLoader workers).
    """

    name: str
    path: Path
    num_frames: int
    frame_stride: int = 1

    #: Forward gaps up to this many file frames are decoded through rather
    #: than seeking: a seek decodes from the previous key frame anyway.
    max_decode_gap: int = 64

    @classmethod
    def open(
        cls, path: PathLike, frame_stride: int = 1, name: str | None = None, verify_count: bool = False
    ) -> "VideoFileSource":
        """Probes ``path``: it must open and decode its first frame (``ValueError`` otherwise).

        ``verify_count`` also decodes the last frame the container claims (one
        seek, a fraction of a second for HD video) and, when that fails, counts
        the frames by decoding them all, so ``num_frames`` is exact from the start.
        """
        path = Path(path)
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        if not path.is_file():
            raise FileNotFoundError(f"video file not found: {path}")
        file_frames = _probe_frame_count(path)
        if verify_count and not _decodes_frame(path, file_frames - 1):
            file_frames = _count_frames_by_decoding(path)
        return cls(name or path.stem, path, math.ceil(file_frames / frame_stride), frame_stride)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """``(T, 3, H, W)`` float RGB in ``[0, 1]``, from the file decoded once into this process's
        cache (:mod:`mast.data.video_cache`), or by seeking when it does not fit there."""
        indices = _check_indices(indices, self.num_frames, self.name)
        frames = self._decoded()
        if frames is None:
            return self._read_by_seeking(indices)
        if len(frames) < self.num_frames:
            self._found_shorter(len(frames))
        decoded = {i: _to_float_rgb(frames[min(i, len(frames) - 1)], str(self.path)) for i in set(indices)}
        return _stack_frames([decoded[i] for i in indices], self.name)

    def _decoded(self) -> list[np.ndarray] | None:
        """Every frame of the file (at the stride) from the cache, or None: too large for it,
        or damaged inside (seeking then fails only for the clips that need the damaged frames)."""
        stat = self.path.stat()  # a file rewritten since is decoded anew
        key = (str(self.path.resolve()), self.frame_stride, stat.st_size, stat.st_mtime_ns)
        try:
            return decoded_videos().frames(key, lambda: decode_file_frames(self.path, self.frame_stride))
        except ValueError:
            return None

    def _read_by_seeking(self, indices: list[int]) -> torch.Tensor:
        """``indices`` decoded alone: sequentially across short gaps, seeking across long ones."""
        wanted = sorted(set(indices))
        decoded = self._decode([i * self.frame_stride for i in wanted])
        if len(decoded) < len(wanted):
            decoded = self._clamp_past_end(wanted)
        by_index = dict(zip(wanted, decoded))
        return _stack_frames([by_index[i] for i in indices], self.name)

    def iter_frames(self) -> Iterator[torch.Tensor]:
        """Every ``frame_stride``-th frame of the file in order, ``(3, H, W)`` each, to its real end.

        Raises ``ValueError`` when a frame fails to decode but a later one does.
        """
        return (_to_float_rgb(image, str(self.path)) for image in decode_file_frames(self.path, self.frame_stride))

    def _decode(self, file_indices: list[int]) -> list[torch.Tensor]:
        """Decodes ascending file frame indices; stops at the first one past the real end."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise ValueError(f"cannot open video file {self.path}")
            frames: list[torch.Tensor] = []
            position = 0  # the file frame the next read() returns
            for target in file_indices:
                if not _move_to(capture, position, target, self.max_decode_gap):
                    break
                ok, image = capture.read()
                if not ok:
                    break
                frames.append(_to_float_rgb(image, str(self.path)))
                position = target + 1
            return frames
        finally:
            capture.release()

    def _found_shorter(self, real: int) -> None:
        """The container overstated the frame count and only ``real`` frames (at the stride) decode:
        shrink ``num_frames`` to them, with a warning."""
        warnings.warn(
            f"{self.path}: the container's frame count promised {self.num_frames} frames at stride "
            f"{self.frame_stride} but only {real} decode; reads past the end are clamped to frame {real - 1}",
            RuntimeWarning,
            stacklevel=4,
        )
        self.num_frames = real

    def _clamp_past_end(self, wanted: list[int]) -> list[torch.Tensor]:
        """Frames ``wanted`` (ascending) when decoding stopped early: if the container
        overstated the frame count, clamp to the real last frame and warn."""
        file_frames = _count_frames_by_decoding(self.path)
        real = math.ceil(file_frames / self.frame_stride)
        if real == 0 or wanted[-1] < real:  # not the end of the video: a broken frame inside it
            raise ValueError(f"video file {self.path}: cannot decode frames {wanted} (stride {self.frame_stride})")
        self._found_shorter(real)
        clamped = sorted({min(i, real - 1) for i in wanted})
        decoded = self._decode([i * self.frame_stride for i in clamped])
        if len(decoded) < len(clamped):
            raise ValueError(f"video file {self.path}: cannot decode frames {clamped} (stride {self.frame_stride})")
        frames = dict(zip(clamped, decoded))
        return [frames[min(i, real - 1)] for i in wanted]


def decode_file_frames(path: PathLike, frame_stride: int = 1) -> Iterator[np.ndarray]:
    """Every ``frame_stride``-th frame of a video file in order, as OpenCV decodes it
    (``(H, W, 3)`` uint8 BGR), to the file's real end.

    Raises ``ValueError`` naming the file when it does not open, or when a frame
    fails to decode but a later one does (damaged data inside the file).
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open video file {path}")
        for file_index in itertools.count():
            wanted = file_index % frame_stride == 0
            ok, image = capture.read() if wanted else (capture.grab(), None)
            if not ok:
                _check_real_end(capture, Path(path), file_index)
                return
            if wanted:
                yield image
    finally:
        capture.release()


def _move_to(capture: cv2.VideoCapture, position: int, target: int, max_decode_gap: int) -> bool:
    """Positions ``capture`` (now at file frame ``position``) so its next read is ``target``."""
    gap = target - position
    if 0 <= gap <= max_decode_gap:
        # grab() decodes without converting to BGR: the cheap way forward.
        return all(capture.grab() for _ in range(gap))
    return bool(capture.set(cv2.CAP_PROP_POS_FRAMES, target))


def _probe_frame_count(path: Path) -> int:
    """File frame count from the container, after checking that frame 0 decodes.

    Raises ``ValueError`` naming the file when it does not open or decode.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"cannot open video file {path} (corrupt or unsupported codec)")
        ok, _ = capture.read()
        if not ok:
            raise ValueError(f"cannot decode the first frame of video file {path}")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    # Some containers (e.g. streamed mkv) store no count: count by decoding once.
    return count if count > 0 else _count_frames_by_decoding(path)


def _decodes_frame(path: Path, file_index: int) -> bool:
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.set(cv2.CAP_PROP_POS_FRAMES, file_index)) and capture.read()[0]
    finally:
        capture.release()


def _count_frames_by_decoding(path: Path) -> int:
    """Frames that decode from the start; ``ValueError`` if some fail and a later one decodes."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.grab():
            count += 1
        _check_real_end(capture, path, count)
        return count
    finally:
        capture.release()


def _check_real_end(capture: cv2.VideoCapture, path: Path, file_index: int) -> None:
    """After file frame ``file_index`` failed to decode: raises ``ValueError`` if a later
    frame of those the container lists decodes, i.e. the data is damaged inside the file.

    FFmpeg resumes after damaged packets, so stopping at the first failure would
    silently drop the rest of the video. A real end (even below an overstated
    count) decodes nothing more.
    """
    listed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if any(capture.grab() for _ in range(listed - file_index - 1)):
        raise ValueError(
            f"video file {path}: frame {file_index} does not decode but a later one does (damaged data inside the file)"
        )


@dataclass(frozen=True)
class TensorVideoSource:
    """Frames already in memory, ``(T, 3, H, W)`` float RGB in ``[0, 1]`` (synthetic videos, tests)."""

    name: str
    frames: torch.Tensor

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"{self.name}: frames must be (T, 3, H, W), got {tuple(self.frames.shape)}")

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        indices = _check_indices(indices, self.num_frames, self.name)
        return self.frames[torch.tensor(indices)].float()

    def iter_frames(self) -> Iterator[torch.Tensor]:
        return (frame.float() for frame in self.frames)


@dataclass
class DiscoveryReport(Sequence):
    """What :func:`discover_videos` found: usable sources, and files it skipped.

    Behaves as a read-only sequence of its ``sources``.

    Attributes:
        sources: the usable videos, in discovery order.
        skipped: ``(path, reason)`` for each unreadable video file or frame folder.
    """

    sources: list[VideoSource] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index):  # type: ignore[override]
        return self.sources[index]

    def __iter__(self) -> Iterator[VideoSource]:
        return iter(self.sources)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def total_frames(self) -> int:
        return sum(source.num_frames for source in self.sources)


def discover_videos(
    paths: PathLike | Sequence[PathLike], frame_stride: int = 1, verify_frame_counts: bool = False
) -> DiscoveryReport:
    """Finds every video under ``paths`` (files or directories; layouts in the module docstring).

    Unreadable video files and frame folders whose first frame does not decode
    are skipped with a warning naming them and listed in ``report.skipped``.
    ``frame_stride`` applies to video files only (frame folders are read as stored).
    ``verify_frame_counts`` checks each video file's container frame count up
    front (see :meth:`VideoFileSource.open`); otherwise a wrong count is found
    and corrected on the first read past the real end.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a directory holds no videos or frame folders, a file is not
            a video, or no usable video remains (the message names the paths).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("discover_videos needs at least one path")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    report = DiscoveryReport()
    paths = [Path(path) for path in paths]
    options = _Options(frame_stride, verify_frame_counts, tuple(p.resolve() for p in paths if p.is_dir()))
    for path in paths:
        _discover_path(path, options, report)
    if not report.sources:
        skipped = "; ".join(f"{path}: {reason}" for path, reason in report.skipped)
        raise ValueError(
            f"no usable video in {[str(p) for p in paths]}: all {report.num_skipped} candidate(s) "
            f"were unreadable ({skipped})"
        )
    return report


@dataclass(frozen=True)
class _Options:
    """How to read what is found, and where the walk may go.

    Attributes:
        roots: the given directories, resolved: the walk stays inside them.
        walked: the real (resolved) directories walked so far, each walked once.
    """

    frame_stride: int
    verify_frame_counts: bool
    roots: tuple[Path, ...]
    walked: set[Path] = field(default_factory=set)

    def enters(self, directory: Path) -> bool:
        """Whether to walk ``directory``: a real directory not walked yet, inside a root
        (a link out of every root is skipped with a warning naming it)."""
        real = directory.resolve()
        if not any(real.is_relative_to(root) for root in self.roots):
            warnings.warn(f"skipping {directory}: a link to {real}, outside the given folders "
                          f"(pass it to read it)", RuntimeWarning, stacklevel=2)
            return False
        fresh = real not in self.walked
        self.walked.add(real)
        return fresh


def _discover_path(path: Path, options: _Options, report: DiscoveryReport) -> None:
    if not path.exists():
        raise FileNotFoundError(f"video path not found: {path}")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(
                f"{path} is not a video file ({'/'.join(sorted(VIDEO_EXTENSIONS))}); "
                "pass the folder holding frame images instead"
            )
        _add_video_file(path, options, report)
        return
    if path.resolve() in options.walked:
        return  # given twice, or inside another given folder: read once
    found_before = len(report.sources) + report.num_skipped
    _walk_directory(path, options, report)
    if len(report.sources) + report.num_skipped == found_before:
        raise ValueError(
            f"no video files ({'/'.join(sorted(VIDEO_EXTENSIONS))}) or frame folders "
            f"({'/'.join(sorted(IMAGE_EXTENSIONS))}) found in directory {path}"
        )


def _walk_directory(directory: Path, options: _Options, report: DiscoveryReport) -> None:
    """Adds the videos of one directory, recursing into subdirectories (each real one once)."""
    if not options.enters(directory):
        return
    if (directory / "JPEGImages").is_dir():
        _add_dataset_root(directory, report)
        return
    if image_files(directory):
        _add_frame_folder(directory, directory.name, report)
        return
    for entry in sorted(directory.iterdir()):
        if entry.is_dir() and not entry.name.lower().startswith(_LABEL_DIR_PREFIX):
            _walk_directory(entry, options, report)
        elif entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS:
            _add_video_file(entry, options, report)


def _add_dataset_root(root: Path, report: DiscoveryReport) -> None:
    """DAVIS (``JPEGImages/480p/<seq>``), YouTube-VOS (``JPEGImages/<seq>``) or ``<seq>/JPEGImages``,
    each sequence with its masks when the dataset has them (:class:`DavisDataset`, year unknown)."""
    dataset = DavisDataset.at(root, year=None)
    if image_files(dataset.frames_root):
        _add_frame_folder(dataset.frames_root, root.name, report)
        return
    for sequence in sorted(p for p in dataset.frames_root.iterdir() if p.is_dir()):
        if image_files(sequence):
            masks = dataset.masks_dir(sequence.name)
            _add_frame_folder(sequence, sequence.name, report, masks if masks.is_dir() else None)


def _add_frame_folder(folder: Path, name: str, report: DiscoveryReport, annotations: Path | None = None) -> None:
    # A lost frame only makes training's time gaps across it inexact: warn, keep the folder.
    source = FrameFolderSource.from_folder(folder, name, on_gap="warn")
    if annotations is not None:
        masks = tuple(annotations / f"{path.stem}.png" for path in source.frame_paths)
        if all(mask.is_file() for mask in masks):  # sparse annotations cannot supervise every clip
            source = FrameFolderSource(source.name, source.frame_paths, masks)
    try:
        read_image(source.frame_paths[0])  # cheap check that the folder is usable at all
    except ValueError as error:
        _skip(folder, str(error), report)
        return
    report.sources.append(source)


def _add_video_file(path: Path, options: _Options, report: DiscoveryReport) -> None:
    try:
        source = VideoFileSource.open(path, options.frame_stride, verify_count=options.verify_frame_counts)
        report.sources.append(source)
    except ValueError as error:
        _skip(path, str(error), report)


def _skip(path: Path, reason: str, report: DiscoveryReport) -> None:
    warnings.warn(f"skipping unreadable video {path}: {reason}", RuntimeWarning, stacklevel=2)
    report.skipped.append((path, reason))
