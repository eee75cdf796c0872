"""A bounded store of the past frames a query frame reads from.

The same :class:`~mast.common.references.ReferencePolicy` and
:class:`MemoryBank` serve training (a sampled clip's reference frames) and
inference (a streaming video).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mast.common.references import ReferencePolicy


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
