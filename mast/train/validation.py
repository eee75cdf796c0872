"""Validation during training: the J&F of the model being trained, on a few annotated sequences.

Given a DAVIS folder to validate on (``mast pretrain/finetune/train-baseline``), it propagates the
first-frame masks of a DAVIS split (or some of its sequences) through the
model every ``N`` steps and scores them as ``mast evaluate`` does (mean J,
F and J&F over objects, first and last frames unscored). A task may offer
several ways to track with its model (the self-supervised backbone: dot
product or cosine similarity, docs/algorithm.md §5); each is scored and the
best one is what the saved model is meant to be used with.

Frames are read from disk at every validation; the ground truth is read once.
Everything a validation reads is checked when the validator is made, before
training: a first mask with no object, a frame that does not decode whole or a
mask of another size would otherwise be found only at the first validation.
The frames are checked by the propagation writer's own check
(:func:`mast.eval.propagate.check_frames`); the masks of later frames, which
only validation reads, are checked here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mast.common.errors import ArgumentError, MissingPathError
from mast.common.files import atomic_write_with
from mast.data.davis import DavisDataset
from mast.eval.davis import evaluate_sequence, global_statistics, present_ids, scored_ids
from mast.eval.line_plot import line_plot
from mast.eval.propagate import PropagationInput, check_frames, track_ids
from mast.eval.sources import davis_inputs
from mast.models.static import StaticTracker
from mast.models.tracker import Tracker

if TYPE_CHECKING:
    import torch

    from mast.train.config import ValidationConfig


@dataclass(frozen=True)
class Score:
    """Mean region similarity ``J``, boundary accuracy ``F`` and their mean over the objects."""

    J: float
    F: float

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2

    def as_dict(self) -> dict[str, float]:
        return {"J&F": self.JF, "J": self.J, "F": self.F}


@dataclass
class _Sequence:
    """A validation sequence: ``item`` gives only the scored frames (``stems``), ``ground_truth`` their masks."""

    item: PropagationInput
    stems: list[str]
    ground_truth: list[np.ndarray]


class Validator:
    """Scores trackers on the sequences of a DAVIS split.

    Args:
        root: DAVIS folder (``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets``).
        split: split file name under ``ImageSets/<year>/``.
        year: 2016 (0/255 masks) or 2017 (object ids).
        sequences: a subset of the split, or None for all of it.
        every: validate every this many training steps.
        max_frames: track only the first this many frames of each sequence (None: all),
            to keep validation short on a CPU.
        patience: stop training after this many validations in a row that do not beat
            the best score by more than ``min_delta`` (None: never stop early).
        min_delta: a smaller gain is noise: not a new best, and no reason to go on.
        at_start: also score the model before the first training step (step 0).

    Raises:
        ArgumentError: (of ``root``, ``split``, ``year``, ``sequences``; a ``ValueError``, and a
            ``FileNotFoundError`` for a missing path) one line naming the file: a missing split,
            sequence or mask, a sequence with fewer than 3 frames to score, a first mask with no
            object, a frame that does not decode whole, a mask of another size than its frame.
            Every frame and mask a validation reads is checked here, before training starts.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", year: int = 2017,
                 sequences: list[str] | None = None, every: int = 500, max_frames: int | None = None,
                 patience: int | None = None, min_delta: float = 0.0, at_start: bool = False) -> None:
        if every < 1:
            raise ArgumentError("every", f"must be >= 1, got {every}")
        if max_frames is not None and max_frames < 3:
            raise ArgumentError("max_frames", f"validation needs 3 or more frames per sequence, got {max_frames}")
        if (patience is not None and patience < 1) or min_delta < 0:
            raise ValueError(f"validation patience must be >= 1 (or None) and min_delta >= 0, "
                             f"got {patience} and {min_delta}")
        self.dataset, self.every, self.max_frames = DavisDataset.at(root, year), every, max_frames
        self.patience, self.min_delta, self.at_start = patience, min_delta, at_start
        self._zero_motion: float | None = None
        with _as_root_errors():
            inputs = davis_inputs(root, split, year, sequences)
        self.sequences = [self._load(item) for item in inputs]
        self.names = [sequence.item.name for sequence in self.sequences]

    @classmethod
    def from_config(cls, settings: ValidationConfig, root: str | os.PathLike, split: str, year: int,
                    sequences: list[str] | None = None, every: int | None = None) -> Validator:
        """A validator with the cadence, frame cap and early-stopping rule of a config's
        ``validation`` section; ``every`` (when given) overrides its cadence."""
        return cls(root, split, year, sequences, settings.every if every is None else every, settings.max_frames,
                   settings.patience, settings.min_delta, settings.at_start)

    def _load(self, item: PropagationInput) -> _Sequence:
        """One sequence, checked whole now rather than at the first validation, after training:
        its first mask holds an object, every frame it scores decodes whole and has the first
        frame's size (:func:`~mast.eval.propagate.check_frames`, as ``mast propagate`` checks
        its inputs) and every mask has that size too."""
        stems = [path.stem for path in self.dataset.frame_paths(item.name)][:self.max_frames]
        if len(stems) < 3:
            raise ArgumentError("sequences", f"validation sequence {item.name} has {len(stems)} frames; "
                                             "3 or more are needed")
        if not item.first_ids.any():
            raise ArgumentError("root", f"{item.first_source}: the first mask of validation sequence {item.name} "
                                        "holds no object (all background)")
        scored = dataclasses.replace(item, frames=_first_frames(item.frames, len(stems)), num_frames=len(stems))
        with _as_root_errors():
            check_frames(scored)  # a cut-short file fails here, not mid-run; no frame past the last scored is read
        height, width = item.first_ids.shape  # every frame's size now
        truth = [self._ground_truth(item.name, stem) for stem in stems]
        for stem, ids in zip(stems, truth):
            if ids.shape != (height, width):
                raise ArgumentError("root", f"{self.dataset.mask_path(item.name, stem)}: mask is "
                                            f"{ids.shape[1]}x{ids.shape[0]} but its frame is {width}x{height}")
        return _Sequence(scored, stems, truth)

    def _ground_truth(self, name: str, stem: str) -> np.ndarray:
        """``(H, W)`` object ids of the mask of frame ``stem``."""
        path = self.dataset.mask_path(name, stem)
        if not path.is_file():
            raise MissingPathError("root", f"validation ground truth missing: {path}")
        with _as_root_errors():
            return self.dataset.read_ids(path)

    def score(self, tracker: Tracker) -> Score:
        """``tracker`` on every sequence: J and F as ``mast evaluate``'s global table has them
        (:func:`~mast.eval.davis.global_statistics` over every object)."""
        per_object = []
        for sequence in self.sequences:
            scores = self._score_sequence(tracker, sequence)
            per_object += [{measure: table[row] for measure, table in scores.items()} for row in range(len(scores["J"]))]
        table = global_statistics(per_object)
        return Score(table["J-Mean"], table["F-Mean"])

    def zero_motion(self) -> float:
        """The J&F of the first mask on every frame (:class:`~mast.models.static.StaticTracker`,
        zero motion), the bar a tracker must beat on these sequences; scored once."""
        if self._zero_motion is None:
            self._zero_motion = self.score(StaticTracker()).JF
        return self._zero_motion

    @staticmethod
    def _objects(sequence: _Sequence) -> tuple[int, ...]:
        return scored_ids(present_ids(sequence.ground_truth[0]))  # as mast evaluate scores by default

    def _score_sequence(self, tracker: Tracker, sequence: _Sequence) -> dict[str, np.ndarray]:
        """``{"J": (K, T), "F": (K, T)}`` of one sequence's K objects, from the writer's own masks."""
        frames = (frame for _, frame in sequence.item.frames())
        predictions = list(track_ids(tracker, frames, sequence.item.first_ids, sequence.item.first_source))
        return evaluate_sequence(sequence.ground_truth, predictions, object_ids=self._objects(sequence))


def zero_motion_line(steps: list[int], zero_motion: float) -> tuple[str, tuple[list[int], list[float]]]:
    """A learning curve's zero-motion bar (:meth:`Validator.zero_motion`): its legend and a flat
    series across ``steps``."""
    return f"zero motion (first mask): {zero_motion:.3f}", ([min(steps), max(steps)], [zero_motion] * 2)


def learning_curve(history: list[dict], best_step: int, best_score: float, sequences: list[str],
                   zero_motion: float | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR: validation J&F against steps, one line per way of tracking
    (candidate) of ``history`` (``validation.json``'s entries: ``step``, ``best`` and one
    ``{"J&F": ...}`` per candidate), and the best validation (``best_step``, ``best_score``, the
    one ``best-<final_name>`` holds) as a dot of its own, named in the legend; ``zero_motion``
    (:meth:`Validator.zero_motion`), when given, as a flat line across the steps."""
    candidates = dict.fromkeys(name for entry in history for name in entry if name not in ("step", "best"))
    series = {name: ([entry["step"] for entry in history if name in entry],
                     [entry[name]["J&F"] for entry in history if name in entry]) for name in candidates}
    series[f"best: {best_score:.3f} at step {best_step}"] = ([best_step], [best_score])
    if zero_motion is not None:
        series.update([zero_motion_line([entry["step"] for entry in history] or [best_step], zero_motion)])
    return line_plot(series, f"validation J&F on {', '.join(sequences)}", "training step", "J&F",
                     y_range=(0.0, 1.0))  # J&F's whole span: runs compare at a glance


def write_learning_curve(path: str | os.PathLike, history: list[dict], best_step: int, best_score: float,
                         sequences: list[str], zero_motion: float | None = None) -> None:
    """:func:`learning_curve` as a PNG at ``path``, written atomically (a reader never sees half a file)."""
    curve = learning_curve(history, best_step, best_score, sequences, zero_motion)
    atomic_write_with(path, lambda temporary: cv2.imwrite(str(temporary), curve))


def _first_frames(frames: Callable[[], Iterator[tuple[str, torch.Tensor]]],
                  count: int) -> Callable[[], Iterator[tuple[str, torch.Tensor]]]:
    """``frames`` (a :attr:`PropagationInput.frames`) cut to its first ``count`` pairs, decoding no more."""
    return lambda: itertools.islice(frames(), count)


@contextlib.contextmanager
def _as_root_errors() -> Iterator[None]:
    """A damaged or missing file of the validation data as an error of ``root`` (the folder given);
    errors that already name their argument pass unchanged."""
    try:
        yield
    except ArgumentError:
        raise
    except FileNotFoundError as error:
        raise MissingPathError("root", str(error)) from None
    except ValueError as error:
        raise ArgumentError("root", str(error)) from None
