"""Frame files of a folder: which files are frames, and the one numbering rule.

Every reader of a frame folder (video sources, DAVIS / YouTube-VOS layouts,
evaluation's ground truth) lists frames with :func:`image_files` (or orders
them with :func:`frame_order`) and checks their numbering with
:func:`missing_frames`.

The order rule: when the file stems of a folder are all one prefix plus a
number, frames go by that number (``f2`` before ``f10``; zero-padded names
such as DAVIS's sort as by name); otherwise by name.

The numbering rule: when the file stems of a folder are all one prefix plus a
number (``00000.jpg``, ``frame_017.png``), the folder's *step* is the most
common difference between consecutive numbers (ties: the smallest), so
DAVIS folders (``00000``, ``00001``, ...) have step 1 and YouTube-VOS train
folders (``00000``, ``00005``, ...) step 5. A difference that is a larger
multiple of the step means frames are missing. Not checked: names without a
number, differences that are no multiple of the step (irregular numbering
such as timestamps) and frames before the first one.
"""
from __future__ import annotations

import itertools
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

GAP_MODES = ("error", "warn")
#: How many missing file names a gap message lists.
_SHOWN_MISSING = 5
_NUMBERED_STEM = re.compile(r"(.*?)(\d+)")


def image_files(folder: str | os.PathLike, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly in ``folder``, in frame order (:func:`frame_order`; hidden files ignored)."""
    return frame_order(
        p for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
    )


def frame_order(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """``paths`` in frame order (the order rule in the module docstring): by number when their
    stems are all one prefix plus a number (ties by name), else by name."""
    paths = sorted(map(Path, paths))
    parts = _numbering(paths)
    if parts is None:
        return paths
    return [path for _, path in sorted(zip((int(m.group(2)) for m in parts), paths))]


def _numbering(paths: Sequence[Path]) -> list[re.Match] | None:
    """Each stem's (prefix, number) match when all stems are one prefix plus a number, else None."""
    parts = [_NUMBERED_STEM.fullmatch(p.stem) for p in paths]
    return parts if all(parts) and len({m.group(1) for m in parts}) <= 1 else None


def missing_frames(paths: Sequence[str | os.PathLike], limit: int | None = None) -> list[str]:
    """File names missing from a numbered frame sequence, in order (rule in the module docstring).

    Args:
        paths: the frame files of one folder, in any order.
        limit: at most this many names (a stray date-named file can imply millions).

    Returns:
        Names like ``00002.jpg``; ``[]`` when the stems are not all one prefix
        plus a number, or when the numbering has no gap.
    """
    paths = [Path(p) for p in paths]
    parts = _numbering(paths)
    if parts is None:
        return []
    frames = sorted((int(m.group(2)), len(m.group(2)), m.group(1), p.suffix) for m, p in zip(parts, paths))
    numbers = [frame[0] for frame in frames]
    step = _regular_step(numbers)
    names = (
        f"{prefix}{number:0{width}d}{suffix}"
        for (before, width, prefix, suffix), after in zip(frames, numbers[1:])
        if (after - before) % step == 0
        for number in range(before + step, after, step)
    )
    return list(itertools.islice(names, limit))


def _regular_step(numbers: list[int]) -> int:
    """The most common positive difference of consecutive sorted ``numbers``
    (ties: the smallest); 1 when there is none."""
    counts = Counter(after - before for before, after in zip(numbers, numbers[1:]) if after > before)
    return min(counts, key=lambda step: (-counts[step], step), default=1)


def check_numbering(folder: Path, paths: list[Path], on_gap: str = "error") -> None:
    """A gap in ``paths``' numbering: ``on_gap="error"`` raises ``ValueError`` naming the first
    missing files, ``"warn"`` warns (``RuntimeWarning``)."""
    if on_gap not in GAP_MODES:
        raise ValueError(f"on_gap must be one of {', '.join(GAP_MODES)}, got {on_gap!r}")
    missing = missing_frames(paths, limit=_SHOWN_MISSING + 1)
    if not missing:
        return
    shown = ", ".join(missing[:_SHOWN_MISSING]) + (", ..." if len(missing) > _SHOWN_MISSING else "")
    message = f"frame folder {folder} has gaps in its frame numbering, missing {shown}"
    if on_gap == "error":
        raise ValueError(f"{message} (restore them, or renumber the frames if none is lost)")
    warnings.warn(f"{message}; time gaps across them are inexact", RuntimeWarning, stacklevel=3)
