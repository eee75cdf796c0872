"""Which past frames a query frame reads from, and a bounded store of them.

The same :class:`ReferencePolicy` and :class:`MemoryBank` serve training
(a sampled clip's reference frames) and inference (a streaming video).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class ReferencePolicy:
    """Long-term references are absolute frame indices; short-term ones are
    offsets back from the query frame.

    One rule for the start of a video: a reference that would be the query
    itself, lie in its future, or fall before frame 0 is dropped (so frame 3
    under the MAST policy reads frames 0 and 2 only). Duplicates are merged.
    """

    long_term: tuple[int, ...] = (0, 5)
    short_term: tuple[int, ...] = (1, 3, 5)

    def __post_init__(self) -> None:
        if any(index < 0 for index in self.long_term):
            raise ValueError(f"long_term frame indices must be >= 0, got {self.long_term}")
        if any(offset < 1 for offset in self.short_term):
            raise ValueError(f"short_term offsets must be >= 1 (frames back), got {self.short_term}")
        if not self.long_term and not self.short_term:
            raise ValueError("a reference policy needs at least one long- or short-term reference")
        object.__setattr__(self, "long_term", tuple(sorted(set(self.long_term))))
        object.__setattr__(self, "short_term", tuple(sorted(set(self.short_term))))

    @classmethod
    def mast(cls) -> "ReferencePolicy":
        """MAST: frames 0 and 5, and t-1, t-3, t-5."""
        return cls((0, 5), (1, 3, 5))

    @classmethod
    def crw(cls, num_previous: int = 20) -> "ReferencePolicy":
        """CRW protocol: the first frame and the ``num_previous`` previous frames."""
        return cls((0,), tuple(range(1, num_previous + 1)))

    @property
    def max_offset(self) -> int:
        """How far back the short-term memory reaches (0 without one)."""
        return max(self.short_term, default=0)

    @property
    def capacity(self) -> int:
        """Upper bound on frames a streaming :class:`MemoryBank` holds."""
        return len(self.long_term) + self.max_offset

    def references(self, query_index: int) -> list[int]:
        """Indices of the frames that query frame ``query_index`` reads, ascending."""
        if query_index < 0:
            raise ValueError(f"query_index must be >= 0, got {query_index}")
        long_term = {index for index in self.long_term if index < query_index}
        short_term = {query_index - offset for offset in self.short_term if query_index - offset >= 0}
        return sorted(long_term | short_term)


@dataclass
class Reference:
    """One reference frame as the reconstruction engine sees it.

    Attributes:
        features: ``(B, C, h, w)`` key features.
        values: ``(B, K, h, w)`` what is read out (LAB channels, labels, object probabilities).
        distance: frames between the reference and the query (``>= 1``); one
            number for the whole batch, or one per sample (training clips
            drawn at different query frames).
        valid: ``(B,)`` bool, or None (all valid): samples for which this
            reference does not exist (padding of short training clips) get
            no attention from it.
    """

    features: torch.Tensor
    values: torch.Tensor
    distance: int | Sequence[int]
    valid: torch.Tensor | None = None

    def distances(self) -> list[int]:
        """The distance of every sample, ``B`` ints."""
        batch = self.features.shape[0]
        if isinstance(self.distance, int):
            return [self.distance] * batch
        distances = [int(d) for d in self.distance]
        if len(distances) != batch:
            raise ValueError(f"distance has {len(distances)} entries for a batch of {batch}")
        return distances


class MemoryBank:
    """Holds the frames a :class:`ReferencePolicy` may still ask for.

    Streaming use: ``add`` each processed frame, ``references(t)`` before
    processing frame ``t``. Entries no future query can read (neither
    long-term nor within ``policy.max_offset`` of the newest frame) are
    evicted, so at most ``policy.capacity`` frames are held whatever the
    video length.
    """

    def __init__(self, policy: ReferencePolicy | None = None) -> None:
        self.policy = policy or ReferencePolicy.mast()
        self._entries: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._newest = -1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def indices(self) -> list[int]:
        """Frame indices currently held, ascending."""
        return sorted(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._newest = -1

    def add(self, index: int, features: torch.Tensor, values: torch.Tensor) -> None:
        """Stores frame ``index``: features ``(B, C, h, w)``, values ``(B, K, h, w)``."""
        if features.shape[0] != values.shape[0] or features.shape[-2:] != values.shape[-2:]:
            raise ValueError(
                f"features {tuple(features.shape)} and values {tuple(values.shape)} must share "
                "batch and spatial size: (B, C, h, w) and (B, K, h, w)"
            )
        self._entries[index] = (features, values)
        self._newest = max(self._newest, index)
        self._evict()

    def references(self, query_index: int) -> list[Reference]:
        """The held references of frame ``query_index``, oldest first."""
        return [
            Reference(*self._entries[index], distance=query_index - index)
            for index in self.policy.references(query_index)
            if index in self._entries
        ]

    def _evict(self) -> None:
        oldest_needed = self._newest + 1 - self.policy.max_offset
        for index in list(self._entries):
            if index not in self.policy.long_term and index < oldest_needed:
                del self._entries[index]
