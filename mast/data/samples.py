"""One rule for training samples that read a damaged file: replaced, counted, warned about once.

A training item ``i`` is drawn from a generator seeded by ``(seed, phase, i,
attempt)`` (:func:`mast.data.clips.item_generator`). When a draw reads a
damaged file -- a frame that does not decode or is cut short, a mask that is
unreadable or of another size than its frame -- the item is replaced by the
draw of the next attempt and the item's ``skipped_clips`` counts it. A damaged
file fails the same way in every process and on every resume, so the
replacement is as deterministic as the item it replaces: a resumed run passes
the bad step exactly as the uninterrupted run did. Each damaged file is named
in one ``RuntimeWarning`` per dataset (and per DataLoader worker process,
which holds its own copy of the dataset).

A draw that reads fine but finds nothing to train on (no object in the crop)
raises :class:`Redraw`: drawn again, not counted as damage. When
``max_draws`` draws in a row fail, the data is mostly broken or read the wrong
way: a ``ValueError`` of one line names the last problem.

Used by the supervised baselines' datasets (:mod:`mast.train.siammask.data`,
:mod:`mast.train.ranet.data`); :class:`mast.data.clips.ClipDataset` applies the
same rule to raw videos.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DamagedFile(ValueError):
    """A file of a training sample that cannot be used; the message names it (``reason``, or
    ``"<path>: <reason>"`` when the reason does not)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(reason if str(path) in reason else f"{path}: {reason}")

    def __reduce__(self):  # picklable: DataLoader workers re-raise their errors in the main process
        return type(self), (self.path, self.reason)


class Redraw(Exception):
    """A draw that read its files but has nothing to train on (the message says why)."""


def read_checked(path: str | os.PathLike, reader: Callable[[Path], T]) -> T:
    """``reader(path)``, its failure (a missing, unreadable or corrupt file) as a :class:`DamagedFile`."""
    try:
        return reader(Path(path))
    except DamagedFile:
        raise
    except (ValueError, OSError) as error:
        raise DamagedFile(path, str(error)) from error


class SampleDrawer:
    """Draws one training item, replacing the draws that read a damaged file (module docstring).

    Args:
        max_draws: draws of one item, in a row, before giving up.
        hint: what to check when they all fail, appended to the error.
    """

    def __init__(self, max_draws: int, hint: str) -> None:
        if max_draws < 1:
            raise ValueError(f"max_draws must be >= 1, got {max_draws}")
        self.max_draws, self.hint = max_draws, hint
        self.warned: set[Path] = set()

    def draw(self, index: int, draw: Callable[[int], T]) -> tuple[T, int]:
        """``(draw(attempt), replaced draws)`` for the first ``attempt`` in ``0..max_draws-1`` whose
        draw neither reads a damaged file nor raises :class:`Redraw`.

        Raises:
            ValueError: every draw failed (one line: the last problem and ``hint``).
        """
        skipped, last = 0, ""
        for attempt in range(self.max_draws):
            try:
                return draw(attempt), skipped
            except DamagedFile as damaged:
                skipped += 1
                last = str(damaged)
                self._warn(damaged)
            except Redraw as nothing:
                last = str(nothing)
        raise ValueError(f"{self.max_draws} draws of training sample {index} in a row failed "
                         f"(the last: {last}); {self.hint}")

    def _warn(self, damaged: DamagedFile) -> None:
        if damaged.path in self.warned:
            return
        self.warned.add(damaged.path)
        warnings.warn(f"skipping training samples that read {damaged}; each is replaced by another sample",
                      RuntimeWarning, stacklevel=3)
