"""Training clips: a query frame plus the reference frames it reconstructs from.

:class:`ClipSampler` decides *which* frames (cheap, no decoding);
:class:`ClipDataset` reads them from :mod:`mast.data.video` sources and
augments them; :func:`make_loader` wraps the dataset in a DataLoader whose
batches are ``(B, N, 3, H, W)``.

Two modes (the MAST recipe, docs/algorithm.md §4):

* ``"pairs"`` (phase 1): the query ``t`` and one reference ``t - gap``, with
  ``gap`` drawn from ``pair_gaps`` (default {2, 5, 8}) with probabilities
  ``pair_gap_probs`` (default .4/.4/.2).
* ``"memory"`` (phase 2): the query ``t`` and ``policy.references(t)``
  (default MAST: frames 0 and 5, and t-1, t-3, t-5). ``t`` is drawn so that
  every reference of the policy exists: ``t >= max(long_term) + 1`` and
  ``t >= max(short_term)``.

Short videos, one rule: a video with fewer than 2 frames is never sampled.
Otherwise the clip is clamped to the video: in ``"pairs"`` mode the gap
becomes ``min(gap, num_frames - 1)``; in ``"memory"`` mode, when the video is
too short for the full policy, ``t`` is drawn from ``1 .. num_frames - 1``
and the references that would fall before frame 0 are dropped exactly as
:meth:`ReferencePolicy.references` does, so the clip has fewer frames
(:func:`collate_clips` pads such batches and marks the padding invalid).
``short_videos="skip"`` instead excludes videos too short for the full policy.

Determinism: item ``i`` of epoch ``e`` is drawn from a generator seeded with
``(seed, e, i)``, so a sample does not depend on the worker that made it,
on the number of workers or on the order items are asked for. (One
exception: a video file whose container overstates its frame count is
re-measured by its first read (decoded whole into the cache of
:mod:`mast.data.video_cache`; a file too large for it, by the first read past
its end), in that process only, and the clip is drawn again; ``discover_videos(..., verify_frame_counts=True)``
measures such files up front instead.)
Unreadable frames follow the one rule for damaged training samples
(:mod:`mast.data.samples`): a clip whose frames or masks fail to decode is
replaced by the clip of the next attempt, ``(seed, e, i, attempt)``, the file
is named in one warning, and the item's ``skipped_clips`` counts the replaced
clips. A broken file fails the same way in every worker, so the replacement
is as deterministic as the clip it replaces.
Call :meth:`ClipDataset.set_epoch` before each epoch to draw new clips
(with ``persistent_workers=True`` the workers keep their own copy of the
dataset, so the epoch would not reach them: :func:`make_loader` does not use them).

Example::

    sources = discover_videos(["videos/", "DAVIS/"], frame_stride=2)
    dataset = ClipDataset(sources, mode="pairs", samples_per_epoch=24_000, seed=0)
    loader = make_loader(dataset, batch_size=24, num_workers=4)
    for epoch in range(num_epochs):
        dataset.set_epoch(epoch)
        for batch in loader:
            frames = batch["frames"]   # (B, N, 3, 256, 256), query last
            indices = batch["indices"]  # (B, N) frame indices, -1 for padding
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mast.data.augment import ClipAugment
from mast.data.samples import DamagedFile, SampleDrawer
from mast.data.video import VideoSource
from mast.common.references import ReferencePolicy
from mast.common.threads import start_worker_process

ClipMode = Literal["pairs", "memory"]
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def item_generator(seed: int, epoch: int, index: int, attempt: int = 0) -> torch.Generator:
    """A generator for item ``index`` of ``epoch``, independent of worker and order;
    ``attempt > 0`` gives the streams of the clips that replace an unreadable one."""
    # SeedSequence mixes the numbers well (neighbouring items and epochs get
    # unrelated streams, unlike seed + index).
    entropy = [seed, epoch, index] + ([attempt] if attempt else [])
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


@dataclass(frozen=True)
class ClipSampler:
    """Chooses a video and the frame indices of one clip; reads nothing.

    Attributes:
        num_frames: frames of each video (index = video id).
        mode: ``"pairs"`` or ``"memory"`` (module docstring).
        pair_gaps / pair_gap_probs: gap choices of ``"pairs"`` mode and their
            probabilities (normalised; must match in length).
        policy: the reference policy of ``"memory"`` mode.
        video_weighting: ``"uniform"`` (every usable video equally likely) or
            ``"length"`` (proportional to its frame count).
        short_videos: ``"clamp"`` (module docstring) or ``"skip"`` (also
            excludes videos too short for the full memory policy).
    """

    num_frames: tuple[int, ...]
    mode: ClipMode = "pairs"
    pair_gaps: tuple[int, ...] = (2, 5, 8)
    pair_gap_probs: tuple[float, ...] = (0.4, 0.4, 0.2)
    policy: ReferencePolicy = field(default_factory=ReferencePolicy.mast)
    video_weighting: Literal["uniform", "length"] = "uniform"
    short_videos: Literal["clamp", "skip"] = "clamp"

    def __post_init__(self) -> None:
        self._check_options()
        if not self.usable_videos:
            raise ValueError(
                f"no video is long enough for {self.mode!r} clips (need >= {self.min_frames} frames; "
                f"lengths: {sorted(set(self.num_frames))[:10]})"
            )

    def _check_options(self) -> None:
        if self.mode not in ("pairs", "memory"):
            raise ValueError(f"mode must be 'pairs' or 'memory', got {self.mode!r}")
        if len(self.pair_gaps) != len(self.pair_gap_probs) or not self.pair_gaps:
            raise ValueError(f"pair_gaps {self.pair_gaps} and pair_gap_probs {self.pair_gap_probs} must match")
        if any(gap < 1 for gap in self.pair_gaps) or any(p < 0 for p in self.pair_gap_probs):
            raise ValueError("pair gaps must be >= 1 and their probabilities >= 0")
        if sum(self.pair_gap_probs) <= 0:
            raise ValueError("pair_gap_probs must not all be 0")
        if self.video_weighting not in ("uniform", "length"):
            raise ValueError(f"video_weighting must be 'uniform' or 'length', got {self.video_weighting!r}")
        if self.short_videos not in ("clamp", "skip"):
            raise ValueError(f"short_videos must be 'clamp' or 'skip', got {self.short_videos!r}")

    @property
    def full_policy_query(self) -> int:
        """The first query index at which every reference of the memory policy exists."""
        return max(max(self.policy.long_term, default=-1) + 1, self.policy.max_offset)

    @property
    def min_frames(self) -> int:
        """Frames a video needs to be sampled at all."""
        if self.mode == "memory" and self.short_videos == "skip":
            return self.full_policy_query + 1
        return 2

    @cached_property
    def usable_videos(self) -> list[int]:
        """Ids of the videos that can be sampled."""
        return [i for i, n in enumerate(self.num_frames) if n >= self.min_frames]

    @cached_property
    def _video_weights(self) -> torch.Tensor:
        """``(len(usable_videos),)`` sampling weights (computed once: thousands of videos)."""
        if self.video_weighting == "length":
            return torch.tensor([float(self.num_frames[i]) for i in self.usable_videos])
        return torch.ones(len(self.usable_videos))

    def sample(self, generator: torch.Generator) -> tuple[int, list[int]]:
        """One clip: ``(video id, frame indices)``, references ascending, the query last."""
        video = self._sample_video(generator)
        num_frames = self.num_frames[video]
        if self.mode == "pairs":
            return video, self._pair(num_frames, generator)
        return video, self._memory_clip(num_frames, generator)

    def _sample_video(self, generator: torch.Generator) -> int:
        return self.usable_videos[int(torch.multinomial(self._video_weights, 1, generator=generator))]

    def _pair(self, num_frames: int, generator: torch.Generator) -> list[int]:
        probs = torch.tensor(self.pair_gap_probs, dtype=torch.float64)
        gap = self.pair_gaps[int(torch.multinomial(probs, 1, generator=generator))]
        gap = min(gap, num_frames - 1)  # the short-video rule: clamp the gap
        query = _uniform_int(gap, num_frames - 1, generator)
        return [query - gap, query]

    def _memory_clip(self, num_frames: int, generator: torch.Generator) -> list[int]:
        first = self.full_policy_query
        if num_frames - 1 < first:
            first = 1  # too short for the full policy: clamp (references before frame 0 dropped)
        query = _uniform_int(first, num_frames - 1, generator)
        return [*self.policy.references(query), query]


def _uniform_int(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[low, high]`` (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


class ClipDataset(Dataset):
    """Random training clips from a list of videos; item ``i`` is a dict with

    * ``frames``: ``(N, 3, H, W)`` float RGB in ``[0, 1]``, references in
      ascending frame order, then the query last (``H, W`` = the transform's
      output size; the video's own size with ``transform=None``);
    * ``indices``: ``(N,)`` long, the frame index of each entry;
    * ``video``: the source's name; ``video_id``: its position in ``sources``;
    * ``skipped_clips``: how many unreadable clips this item replaced (module docstring).

    ``N`` is 2 in ``"pairs"`` mode and ``len(policy.references(t)) + 1`` in
    ``"memory"`` mode, which varies with ``t`` (the policy merges references
    that coincide, e.g. MAST at ``t = 6`` reads 0, 1, 3, 5: N = 5; at
    ``t = 20`` it reads 0, 5, 15, 17, 19: N = 6). Sampling rules and
    determinism: see the module docstring.

    Args:
        sources: the videos (e.g. a :class:`~mast.data.video.DiscoveryReport`).
        samples_per_epoch: the dataset length (every item is a fresh random clip).
        transform: applied to each clip's ``(N, 3, H, W)`` frames with the item's
            generator; defaults to :class:`~mast.data.augment.ClipAugment` (256 x 256).
        seed: base seed of every item's generator.
        with_masks: also read each clip's object masks (``masks``: ``(N, H, W)`` long).
        max_replacements: unreadable clips in a row an item may replace before
            the dataset gives up (ValueError): the videos are then mostly broken.
        **sampler_options: :class:`ClipSampler` fields (``mode``, ``pair_gaps``,
            ``pair_gap_probs``, ``policy``, ``video_weighting``, ``short_videos``).
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        samples_per_epoch: int = 10_000,
        transform: Transform | None | Literal["default"] = "default",
        seed: int = 0,
        with_masks: bool = False,
        max_replacements: int = 20,
        **sampler_options: Any,
    ) -> None:
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        if max_replacements < 0:
            raise ValueError(f"max_replacements must be >= 0, got {max_replacements}")
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("ClipDataset needs at least one video source")
        self.sampler = ClipSampler(tuple(s.num_frames for s in self.sources), **sampler_options)
        self.samples_per_epoch = samples_per_epoch
        self.transform = ClipAugment() if transform == "default" else transform
        self.seed = seed
        self.epoch = 0
        self.with_masks = with_masks
        self.drawer = SampleDrawer(max_replacements + 1, "check the training videos")
        unannotated = [s.name for s in self.sources if getattr(s, "mask_paths", None) is None]
        if with_masks and unannotated:
            raise ValueError(
                f"{len(unannotated)} video(s) have no annotation for every frame (e.g. {unannotated[:3]}); "
                "mask-ce needs DAVIS-layout data with Annotations/<seq>/<frame>.png for all frames"
            )

    def set_epoch(self, epoch: int) -> None:
        """Draw the clips of ``epoch`` (call before iterating a DataLoader each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"clip index {index} out of range for {self.samples_per_epoch} samples")
        item, skipped = self.drawer.draw(index, lambda attempt: self._clip(index, attempt))
        item["skipped_clips"] = skipped
        return item

    def _clip(self, index: int, attempt: int) -> dict[str, Any]:
        """Item ``index`` as drawn by its ``attempt``-th generator (module docstring)."""
        generator = item_generator(self.seed, self.epoch, index, attempt)
        video_id, indices = self.sampler.sample(generator)
        source = self.sources[video_id]
        # A video file whose container overstated its length shrinks once its
        # real end is found (now, or by an earlier item in this process): the
        # clip was planned for the wrong length, so plan it again.
        if max(indices) >= source.num_frames:
            return self._resample_after_shrink(index)
        try:
            frames = source.read(indices)
            masks = source.read_masks(indices) if self.with_masks else None
        except DamagedFile:
            raise
        except (ValueError, FileNotFoundError) as error:  # a video file's frames: the file is the damaged one
            raise DamagedFile(getattr(source, "path", source.name), f"video {source.name}: {error}") from error
        if source.num_frames != self.sampler.num_frames[video_id]:
            return self._resample_after_shrink(index)
        item = self._augment(frames, masks, generator)
        item.update(indices=torch.tensor(indices, dtype=torch.long), video=source.name, video_id=video_id)
        return item

    def _augment(self, frames: torch.Tensor, masks: torch.Tensor | None,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``frames`` (and ``masks``) through the transform, as the item's tensors."""
        if self.transform is None:
            return {"frames": frames} if masks is None else {"frames": frames, "masks": masks}
        if masks is None:
            return {"frames": self.transform(frames, generator)}
        frames, masks = self.transform(frames, generator, masks=masks)
        return {"frames": frames, "masks": masks}

    def _resample_after_shrink(self, index: int) -> dict[str, Any]:
        lengths = tuple(source.num_frames for source in self.sources)
        self.sampler = replace(self.sampler, num_frames=lengths)
        return self[index]


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches :class:`ClipDataset` items.

    Returns:
        ``frames`` ``(B, N, 3, H, W)``; ``indices`` ``(B, N)`` long; ``valid``
        ``(B, N)`` bool; ``video`` list of names; ``video_id`` ``(B,)`` long;
        ``skipped_clips`` int, the unreadable clips the batch's items replaced.
        Clips shorter than the longest of the batch (short videos in
        ``"memory"`` mode) are padded *at the front* (the query stays last)
        with zero frames, index ``-1`` and ``valid = False``.
    """
    sizes = {tuple(item["frames"].shape[-3:]) for item in items}
    if len(sizes) > 1:
        raise ValueError(
            f"clips of one batch differ in frame size {sorted(sizes)}; use a transform with a fixed "
            "output size (ClipAugment) or batch_size=1"
        )
    length = max(item["frames"].shape[0] for item in items)
    frames, indices, valid = [], [], []
    for item in items:
        pad = length - item["frames"].shape[0]
        frames.append(torch.cat([item["frames"].new_zeros(pad, *item["frames"].shape[1:]), item["frames"]]))
        indices.append(torch.cat([torch.full((pad,), -1, dtype=torch.long), item["indices"]]))
        valid.append(torch.arange(length) >= pad)
    batch = {
        "frames": torch.stack(frames),
        "indices": torch.stack(indices),
        "valid": torch.stack(valid),
        "video": [item["video"] for item in items],
        "video_id": torch.tensor([item["video_id"] for item in items], dtype=torch.long),
        "skipped_clips": sum(item["skipped_clips"] for item in items),
    }
    if "masks" in items[0]:  # object ids (B, N, H, W), padding as background
        batch["masks"] = torch.stack([
            torch.cat([item["masks"].new_zeros(length - item["masks"].shape[0], *item["masks"].shape[1:]), item["masks"]])
            for item in items
        ])
    return batch


def _init_worker(worker_id: int) -> None:
    """A DataLoader worker's set-up (``worker_init_fn`` is given the worker's index)."""
    start_worker_process()


def make_loader(
    dataset: Dataset,
    batch_size: int = 24,
    num_workers: int = 4,
    drop_last: bool = True,
    pin_memory: bool = False,
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate_clips,
    **loader_options: Any,
) -> DataLoader:
    """A DataLoader over ``dataset`` whose batches come from ``collate`` (:func:`collate_clips`).

    No shuffling: every item is already a random clip, and keeping the index
    order makes a run reproducible whatever ``num_workers`` is. Other
    ``DataLoader`` keywords go through ``loader_options``.
    """
    if num_workers > 0:
        loader_options.setdefault("worker_init_fn", _init_worker)
        loader_options.setdefault("prefetch_factor", 2)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
        **loader_options,
    )

