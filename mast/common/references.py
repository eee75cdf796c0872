"""Which past frames a query frame reads from (docs/algorithm.md §2).

A bottom-layer definition because both the clip sampler (:mod:`mast.data`)
and the memory bank (:mod:`mast.models`) follow it.
"""
from __future__ import annotations

from dataclasses import dataclass

from mast.common.config import require


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
        # FieldError (a ValueError) names the field, so a config file's error names memory.short_term.
        require(all(index >= 0 for index in self.long_term), "long_term", "must be frame indices >= 0", self.long_term)
        require(all(offset >= 1 for offset in self.short_term), "short_term", "must be offsets >= 1 (frames back)",
                self.short_term)
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
