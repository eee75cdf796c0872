"""Videos with object masks: the training data of the supervised baselines.

A baseline's training folder is read in two layouts (:class:`~mast.data.davis.DavisDataset`
owns them and the mask rules):

* DAVIS: ``ROOT/JPEGImages/480p/<seq>/*.jpg`` and ``ROOT/Annotations/480p/<seq>/*.png``,
  a mask for every frame;
* YouTube-VOS: ``ROOT/JPEGImages/<seq>/*.jpg`` and ``ROOT/Annotations/<seq>/*.png``,
  masks for some frames (every fifth in its training set).

Only frames with a mask (a PNG of the same stem) are used. Masks follow the
dataset's year rule: 2016 masks are 0/255 with ``> 127`` the one object
(id 1); 2017 masks are object ids, void (255) read as background.

Everything that can be checked without decoding every frame is checked by
:func:`discover_annotated`, before a run writes anything: the folders, the
requested sequences, that masks exist, that each video's first mask is in the
format of the year given (else the year hint of
:meth:`~mast.data.davis.DavisDataset.read_first_ids`), and the first mask's size
against its frame. A frame or mask found damaged later (:meth:`AnnotatedVideo.read`) is a
:class:`~mast.data.samples.DamagedFile` naming it, which the training datasets
replace (:mod:`mast.data.samples`).
"""
from __future__ import annotations

import abc
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mast.common.errors import ArgumentError, MissingPathError
from mast.data.davis import YEARS, DavisDataset
from mast.data.frames import image_files
from mast.data.samples import DamagedFile, SampleDrawer, read_checked
from mast.data.video import read_image

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class AnnotatedVideo:
    """The annotated frames of one video, in temporal order.

    Attributes:
        name: the sequence name.
        frame_paths: the frames that have a mask.
        mask_paths: their masks, one per frame.
        dataset: the dataset it belongs to, whose year rule reads the masks.
    """

    name: str
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    dataset: DavisDataset

    def __len__(self) -> int:
        return len(self.frame_paths)

    def read_mask(self, index: int) -> torch.Tensor:
        """``(H, W)`` long object ids of annotated frame ``index`` (0 = background).

        Raises:
            DamagedFile: the mask is missing or does not read.
        """
        ids = read_checked(self.mask_paths[index], self.dataset.read_ids)
        return torch.from_numpy(ids.astype(np.int64))

    def read(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Annotated frame ``index``: ``(3, H, W)`` RGB in ``[0, 1]`` and its ``(H, W)`` long ids.

        Raises:
            DamagedFile: (a ``ValueError`` naming the file) the frame does not decode or is cut
                short, or its mask does not read or has another size.
        """
        frame, ids = read_checked(self.frame_paths[index], read_image), self.read_mask(index)
        if tuple(ids.shape) != tuple(frame.shape[-2:]):
            raise DamagedFile(self.mask_paths[index], f"mask is {ids.shape[1]}x{ids.shape[0]} but its frame "
                                                      f"{self.frame_paths[index].name} is "
                                                      f"{frame.shape[-1]}x{frame.shape[-2]}")
        return frame, ids


def discover_annotated(root: PathLike, sequences: list[str] | None = None, year: int = 2017) -> list[AnnotatedVideo]:
    """The annotated videos under ``root`` (DAVIS or YouTube-VOS layout), or only ``sequences``.

    Without ``sequences``, folders with fewer than two masks (no training pair)
    are skipped with a warning; a requested sequence without them is an error.

    Raises:
        FileNotFoundError: ``root`` or a requested sequence does not exist.
        ArgumentError: (of ``year``) a first mask in the other year's format (2016: object
            ids and nothing above 127; 2017: only 0 and 255), with the year to give.
        ValueError: one line naming the folder or file: no ``JPEGImages``/``Annotations``,
            no masks, a first frame that does not decode or a first mask of another size
            than its frame, no usable video.
    """
    if year not in YEARS:
        raise ArgumentError("year", f"must be 2016 or 2017, got {year}")
    dataset = _dataset(Path(root), year)
    names = sequences or sorted(p.name for p in dataset.frames_root.iterdir() if p.is_dir())
    videos = []
    for name in names:
        video = _annotated_video(dataset, name, requested=sequences is not None)
        if video is not None:
            videos.append(video)
    if not videos:
        raise ValueError(f"{dataset.masks_root}: no sequence has two or more frames with masks; the baselines "
                         "train on object masks (DAVIS or YouTube-VOS Annotations/)")
    return videos


def annotated_summary(videos: list[AnnotatedVideo]) -> dict[str, object]:
    """What a supervised run trains on: video and masked-frame counts, the sequence names."""
    return {"videos": len(videos), "annotated_frames": sum(len(v) for v in videos),
            "sequences": [v.name for v in videos]}


def log_annotated(videos: list[AnnotatedVideo], device: torch.device, processes: int) -> None:
    """Logs what a supervised run found, e.g. ``7 annotated videos (412 frames with masks) on cpu, 1 process(es)``."""
    summary = annotated_summary(videos)
    logger.info("%d annotated videos (%d frames with masks) on %s, %d process(es)", summary["videos"],
                summary["annotated_frames"], device, processes)


def _dataset(root: Path, year: int) -> DavisDataset:
    """The DAVIS (``JPEGImages/480p``, ``Annotations/480p``) or YouTube-VOS dataset at ``root``."""
    if not root.is_dir():
        raise MissingPathError("data", f"{root} does not exist or is not a folder")
    dataset = DavisDataset.at(root, year)
    if not (root / "JPEGImages").is_dir():
        raise ArgumentError("data", f"{root}: not a DAVIS or YouTube-VOS folder (no JPEGImages/ in it)")
    if not (root / "Annotations").is_dir():
        raise ArgumentError("data", f"{root}: no Annotations/ folder; the baselines train on object masks")
    if not dataset.frames_root.is_dir():
        raise ArgumentError("data", f"{root}: masks in {dataset.masks_root.relative_to(root)} but no "
                                    f"{dataset.frames_root.relative_to(root)}/ frames")
    if not dataset.masks_root.is_dir():
        raise ArgumentError("data", f"{root}: frames in {dataset.frames_root.relative_to(root)} but no "
                                    f"{dataset.masks_root.relative_to(root)}/ masks")
    return dataset


def _annotated_video(dataset: DavisDataset, name: str, requested: bool) -> AnnotatedVideo | None:
    frames, masks = dataset.frames_dir(name), dataset.masks_dir(name)
    if not frames.is_dir():
        raise MissingPathError("sequences", f"sequence {name!r} not found: {frames}")
    frame_paths = {p.stem: p for p in image_files(frames)}
    # In image_files' frame order (by frame number), not by name: f10 comes after f9.
    stems = [stem for stem in frame_paths if dataset.mask_path(name, stem).is_file()]
    if len(stems) < 2:
        reason = f"{masks}: {len(stems)} frame(s) of {frames} have a mask, a training pair needs 2"
        if requested:
            raise ValueError(reason)
        warnings.warn(f"skipping {name}: {reason}", RuntimeWarning, stacklevel=3)
        return None
    video = AnnotatedVideo(name, tuple(frame_paths[s] for s in stems),
                           tuple(dataset.mask_path(name, s) for s in stems), dataset)
    dataset.read_first_ids(video.mask_paths[0])  # masks of the other year's format: the year hint, now
    video.read(0)  # the first frame decodes and its mask has its size
    return video


def masks_hint(videos: list[AnnotatedVideo]) -> str:
    """What to check when no training sample can be drawn from ``videos`` (the end of a message)."""
    return f"check the frames and masks under {videos[0].dataset.root} (year 2016 reads 0/255 masks, " \
           "2017 object ids)"


def draw_frames(videos: list[AnnotatedVideo], count: int, max_gap: int,
                generator: torch.Generator) -> tuple[int, list[int]]:
    """A video (uniformly) and ``count`` increasing annotated-frame indices spanning at most ``max_gap``.

    Returns:
        ``(video index, indices)``: the later indices differ from the first unless the video
        has one annotated frame; they may repeat among themselves.
    """
    video = int(torch.randint(len(videos), (1,), generator=generator))
    length = len(videos[video])
    span = min(max_gap, length - 1)
    start = int(torch.randint(length - span, (1,), generator=generator))
    low = 1 if span >= 1 else 0  # two different frames whenever the video has them
    offsets = torch.randint(low, span + 1, (count - 1,), generator=generator).sort().values.tolist()
    return video, [start] + [start + o for o in offsets]


class AnnotatedSamples(torch.utils.data.Dataset, abc.ABC):
    """``samples`` training items of one phase drawn from annotated ``videos``; item ``i`` is the
    first :meth:`draw` ``(i, attempt)`` that reads no damaged file and finds something to train on
    (:mod:`mast.data.samples`), its ``skipped_clips`` the draws it replaced. A draw depends only on
    ``(seed, phase, i, attempt)``. The supervised baselines' datasets define :meth:`draw`.

    Args:
        videos: the annotated videos.
        samples: the dataset length.
        seed, phase: the run's seed and the phase the items are drawn for.
        max_draws: draws of one item, in a row, before giving up.
    """

    def __init__(self, videos: list[AnnotatedVideo], samples: int, seed: int, phase: int, max_draws: int) -> None:
        self.videos, self.samples, self.seed, self.phase = videos, samples, seed, phase
        self.drawer = SampleDrawer(max_draws, masks_hint(videos))

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.samples:
            raise IndexError(f"sample index {index} out of range for {self.samples} samples")
        item, skipped = self.drawer.draw(index, lambda attempt: self.draw(index, attempt))
        return {**item, "skipped_clips": skipped}

    @abc.abstractmethod
    def draw(self, index: int, attempt: int) -> dict:
        """The item of draw ``attempt`` of item ``index``; raises DamagedFile or Redraw."""
