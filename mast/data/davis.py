"""One owner of a DAVIS (or YouTube-VOS) folder: its layout, splits, frames, masks and mask ids.

Every reader of such a folder goes through :class:`DavisDataset`: the
propagation sources, the evaluator, validation during training, the
baselines' annotated training data, ``discover_videos`` and the demo (which
writes one), in the spirit of davis2017-evaluation's ``DAVIS`` class.

Layout::

    ROOT/ImageSets/<year>/<split>.txt        sequence names, one a line (or DAVIS-2016's
                                             "/JPEGImages/480p/bear/00000.jpg /Annotations/..." pairs)
    ROOT/JPEGImages/480p/<seq>/<stem>.jpg    frames (YouTube-VOS: ROOT/JPEGImages/<seq>/, no 480p)
    ROOT/Annotations/480p/<seq>/<stem>.png   masks, named like their frames

Mask ids, by year:

* 2016: single-object 0/255 masks; ``> 127`` is the object (id 1);
* 2017: object ids, 255 is void (not an object, read as background, as the
  DAVIS-2017 toolkit does); a first frame holding only 0 and 255 has no
  object and is taken for a DAVIS-2016 mask read under the wrong year;
* unknown (``year=None``, videos found by ``discover_videos``): a mask
  holding only 0 and 255 is read as 2016's (255 is the object), any other
  as 2017's.

Frames are listed and their numbering checked by :mod:`mast.data.frames`
(one rule: a regular step, DAVIS's +1 and YouTube-VOS's +5 both).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mast.common.errors import ArgumentError, MissingPathError
from mast.common.masks import VOID_ID, read_davis2016_mask, read_mask, remove_void
from mast.common.outputs import is_plain_name
from mast.data.frames import check_numbering, image_files

#: Sub-folder of ``JPEGImages`` / ``Annotations`` holding DAVIS's 480p data.
RESOLUTION = "480p"
YEARS = (2016, 2017)


def holds_only_void(ids: np.ndarray) -> bool:
    """Whether an id map ``(H, W)`` holds void (255) and otherwise only background: a 0/255 mask."""
    values = np.unique(np.asarray(ids))
    return VOID_ID in values and bool(np.isin(values, (0, VOID_ID)).all())


def object_ids(raw: np.ndarray, guess_2016: bool = False) -> np.ndarray:
    """``(H, W)`` uint8 object ids of a mask's raw ids ``(H, W)``: void (255) made background, or,
    with ``guess_2016``, a mask holding only 0 and 255 read as DAVIS-2016's (255 -> object 1)."""
    raw = np.asarray(raw)
    if guess_2016 and holds_only_void(raw):
        return (raw == VOID_ID).astype(np.uint8)
    return remove_void(raw).astype(np.uint8)


def read_ids(path: str | os.PathLike, year: int | None) -> np.ndarray:
    """``(H, W)`` uint8 object ids of a mask PNG under the ``year`` rule (module docstring)."""
    if year == 2016:
        return read_davis2016_mask(path).astype(np.uint8)
    return object_ids(read_mask(path), guess_2016=year is None)


def _sequence_name(line: str) -> str:
    """The sequence of one ImageSets line: a bare name (``bear``) or the folder of the first
    file of a DAVIS-2016 pair (``/JPEGImages/480p/bear/00000.jpg /Annotations/...``)."""
    first = line.split()[0]
    return Path(first).parent.name if "/" in first else first


def sequence_name(name: str) -> str:
    """``name`` if it is a sequence name: a folder's name, never a path (results are written
    under it, which must stay in their folder).

    Raises:
        ArgumentError: (of ``sequences``) an empty name, ``.``, ``..`` or one with a path separator.
    """
    if not is_plain_name(name):
        raise ArgumentError("sequences", f"{name!r} is not a sequence name (a folder name: not empty, "
                                         f"'.' or '..', and without a path separator)")
    return name


@dataclass(frozen=True)
class DavisDataset:
    """A DAVIS / YouTube-VOS folder (picklable: evaluation's worker processes take it).

    Attributes:
        root: the folder holding ``ImageSets``, ``JPEGImages``, ``Annotations``.
        year: 2016 or 2017 (the mask rule and ``ImageSets/<year>``); None: unknown (see
            :func:`mask_ids`).
        resolution: the sub-folder of ``JPEGImages`` and ``Annotations`` (DAVIS ``480p``), or
            None for YouTube-VOS's flat layout; :meth:`at` finds it.
    """

    root: Path
    year: int | None = 2017
    resolution: str | None = RESOLUTION

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.year is not None and self.year not in YEARS:
            raise ArgumentError("year", f"must be 2016 or 2017, got {self.year!r}")

    @classmethod
    def at(cls, root: str | os.PathLike, year: int | None = 2017) -> "DavisDataset":
        """The dataset at ``root``, with DAVIS's ``480p`` sub-folders where it has them."""
        root = Path(root)
        nested = any((root / top / RESOLUTION).is_dir() for top in ("JPEGImages", "Annotations"))
        return cls(root, year, RESOLUTION if nested else None)

    # -- layout ---------------------------------------------------------------

    def _under(self, top: str) -> Path:
        return self.root / top / self.resolution if self.resolution else self.root / top

    @property
    def frames_root(self) -> Path:
        """``JPEGImages[/480p]``."""
        return self._under("JPEGImages")

    @property
    def masks_root(self) -> Path:
        """``Annotations[/480p]``."""
        return self._under("Annotations")

    def frames_dir(self, name: str) -> Path:
        """The frame folder of sequence ``name`` (checked by :func:`sequence_name`)."""
        return self.frames_root / sequence_name(name)

    def masks_dir(self, name: str) -> Path:
        """The mask folder of sequence ``name`` (checked by :func:`sequence_name`)."""
        return self.masks_root / sequence_name(name)

    def mask_path(self, name: str, stem: str) -> Path:
        """The mask of frame ``stem`` of sequence ``name``."""
        return self.masks_dir(name) / f"{stem}.png"

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / str(self.year) / f"{split}.txt"

    # -- sequences and frames -------------------------------------------------

    def sequences(self, split: str) -> list[str]:
        """The unique sequence names of a split, in file order (blank lines and ``#`` comments skipped).

        Raises:
            FileNotFoundError: no split file; ValueError: it lists no sequence.
        """
        path = self.split_file(split)
        if not path.is_file():
            raise MissingPathError("split", f"split file not found: {path}{self._other_year_hint(split)}",
                                   mentions=("year",))
        names: dict[str, None] = {}  # an ordered set: the 2016 format repeats names per frame
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                names[_sequence_name(line)] = None
        if not names:
            raise ArgumentError("split", f"split file lists no sequences: {path}")
        return list(names)

    def frame_paths(self, name: str, on_gap: str = "error") -> list[Path]:
        """The frame files of sequence ``name`` in order, their numbering checked (:mod:`mast.data.frames`).

        Raises:
            FileNotFoundError: no frame folder; ValueError: no frames, or a gap (``on_gap="error"``).
        """
        folder = self.frames_dir(name)
        if not folder.is_dir():
            raise MissingPathError("sequences", f"frame folder of sequence {name!r} not found: {folder}")
        paths = image_files(folder)
        if not paths:
            raise ValueError(f"no frames in folder {folder}")
        check_numbering(folder, paths, on_gap)
        return paths

    def _other_year_hint(self, split: str) -> str:
        """Where the split is listed under the other year only: the hint to give that year."""
        other = {2016: 2017, 2017: 2016}.get(self.year)
        if other is None or not DavisDataset(self.root, other, self.resolution).split_file(split).is_file():
            return ""
        return f" (this folder lists it under ImageSets/{other}: give year {other})"

    # -- masks ------------------------------------------------------------------

    def read_ids(self, path: str | os.PathLike) -> np.ndarray:
        """``(H, W)`` uint8 object ids of a mask PNG under this dataset's year rule (module docstring)."""
        return read_ids(path, self.year)

    def read_first_ids(self, path: str | os.PathLike) -> np.ndarray:
        """:meth:`read_ids` of a sequence's first mask, which must hold an object.

        Raises:
            ArgumentError: (of ``year``) a DAVIS-2017 first mask holding only 0 and 255: no object,
                since 255 is void; DAVIS-2016 masks (255 = the object) need year 2016.
        """
        if self.year == 2016:
            return self._read_first_2016(path)
        if self.year is None:
            return self.read_ids(path)
        raw = read_mask(path)
        if holds_only_void(raw):
            raise ArgumentError("year", f"{path} holds only 0 and 255, which DAVIS-2017 reads as background and "
                                        "void, so there is no object; DAVIS-2016 masks (255 = the object) need "
                                        "year 2016", mentions=("year",))
        return object_ids(raw)

    def _read_first_2016(self, path: str | os.PathLike) -> np.ndarray:
        """A DAVIS-2016 first mask; one holding small object ids and nothing above 127 (a
        DAVIS-2017 mask, in which 2016's rule finds no object) is an error suggesting year 2017."""
        ids = read_ids(path, 2016)
        if ids.any():
            return ids
        present: list[int] = []
        with contextlib.suppress(ValueError):  # an RGB mask outside the palette has no ids to show
            present = sorted(set(np.unique(read_mask(path)).tolist()) - {0})
        if present:
            raise ArgumentError("year", f"{path} holds object ids {', '.join(map(str, present))} and no value "
                                        "above 127, in which DAVIS-2016 finds no object; DAVIS-2017 masks "
                                        "(object ids) need year 2017", mentions=("year",))
        return ids
