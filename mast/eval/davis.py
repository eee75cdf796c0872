"""DAVIS semi-supervised evaluation (J&F), following docs/evaluation.md §6.

``evaluate_sequence`` scores in-memory masks of one sequence;
``score_davis`` scores a results folder against a DAVIS dataset folder and
returns the tables; ``write_csvs`` writes the two CSV files the official
toolkit writes; ``evaluate_davis`` does both. With ``boxes=True`` the tables
also hold the box metrics of ``mast.eval.boxes`` (``BOX_COLUMNS``) and which
boxes they scored (``BOX_SOURCE``: the tracker's ``boxes.json`` where a
sequence's results hold one, else the masks'), which follow the toolkit's
columns in the printed tables and the CSVs.

Protocol (DAVIS-2017 toolkit):

* frames scored: all but the first and the last of each sequence;
* objects (``objects="davis"``, the default and the toolkit's rule):
  1..(max id of the first ground-truth frame), so with first-frame ids
  {1, 5} the absent ids 2..4 are scored too (J = F = 1 wherever they are
  neither annotated nor predicted); a ``UserWarning`` names such sequences
  and ids. ``objects="first-frame"`` scores only the ids present in the first ground-truth frame,
  for annotations that are not DAVIS's; rows keep the real ids (``seq_5``);
* ground-truth void pixels (255) count as background and nothing is excluded
  from the scores;
* a predicted id that is not a scored object is an error (with the DAVIS
  rule: an id above the max), an id missing from a prediction is an empty
  mask;
* global statistics are object-weighted: every object of every sequence
  counts once.

The dataset folder is read through :class:`mast.data.davis.DavisDataset`
(layout, splits, mask ids). Every scored frame needs ground truth. The frames
of a sequence are its ``*.jpg`` in ``JPEGImages/480p/<seq>``: a frame without
its ground-truth PNG (as in DAVIS test-dev / challenge folders, which annotate
the first frame only), or a PNG without its frame, is an error naming the
file. Without that folder the ground-truth PNGs are the frames, and a gap in
their numbering (:mod:`mast.data.frames`' rule: ``00003.png`` after
``00001.png`` where the step is 1) is an error naming the missing file.
Every ground-truth mask must have the size of the first one and of the
frames.

DAVIS-2016 (``year=2016``) is single-object: ground truth is ``mask > 127``
and any predicted id > 0 is the object. A DAVIS-2017 first frame holding only
0 and 255 (background and void: no object) is taken for a DAVIS-2016 mask
and is an error that suggests ``year=2016``.
"""
from __future__ import annotations

import csv
import hashlib
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from mast.eval import metrics
from mast.eval.box_outputs import BOXES_FILE, TrackerBoxes, read_tracker_boxes
from mast.eval.boxes import BOX_COLUMNS, BOX_SOURCE, box_tables, overall_source, sequence_box_scores
from mast.common.files import PathLike, atomic_open, is_temporary
from mast.common.errors import ArgumentError, MissingPathError
from mast.common.masks import VOID_ID, read_mask, remove_void
from mast.common.threads import start_worker_process
from mast.data.davis import DavisDataset
from mast.data.frames import frame_order, image_files, missing_frames


GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")

#: Which ids of a sequence are scored: ``davis`` = 1..max id of the first
#: ground-truth frame (the toolkit), ``first-frame`` = the ids present there.
OBJECT_RULES = ("davis", "first-frame")


# --------------------------------------------------------------------------
# One sequence, in memory
# --------------------------------------------------------------------------


def present_ids(first_gt_ids: np.ndarray) -> tuple[int, ...]:
    """Object ids of a first ground-truth frame ``(H, W)``, ascending; void and 0 excluded."""
    values = np.unique(np.asarray(first_gt_ids))
    return tuple(int(v) for v in values if v not in (0, VOID_ID))


def count_objects(first_gt_ids: np.ndarray) -> int:
    """Number of objects of a sequence: the max id of its first GT frame, void removed."""
    return max(present_ids(first_gt_ids), default=0)


def _check_objects(objects: str) -> None:
    if objects not in OBJECT_RULES:
        raise ValueError(f"objects must be one of {', '.join(OBJECT_RULES)}, got {objects!r}")


def scored_ids(present: Sequence[int], objects: str = "davis") -> tuple[int, ...]:
    """The ids scored for a first frame holding ``present``, under an ``OBJECT_RULES`` rule."""
    _check_objects(objects)
    if objects == "first-frame":
        return tuple(present)
    return tuple(range(1, max(present, default=0) + 1))


def absent_ids(present: Sequence[int]) -> tuple[int, ...]:
    """Ids in 1..max(present) that are not in ``present`` (what the DAVIS rule adds)."""
    return tuple(sorted(set(range(1, max(present, default=0) + 1)) - set(present)))


def check_prediction(pred_ids: np.ndarray, gt_shape: tuple[int, ...], object_ids: Sequence[int], source: str) -> None:
    """Raises ``ValueError`` (naming ``source``) on a wrong size or an id that is not in ``object_ids``."""
    if pred_ids.shape != gt_shape:
        raise ValueError(
            f"{source}: mask size {pred_ids.shape} differs from the ground truth size {gt_shape}"
        )
    object_ids = tuple(object_ids)
    if object_ids == tuple(range(1, len(object_ids) + 1)):  # the DAVIS rule: only the max matters
        highest, count = (int(pred_ids.max()) if pred_ids.size else 0), len(object_ids)
        if highest > count:
            raise ValueError(
                f"{source}: contains object id {highest}, but the sequence has only "
                f"{count} object(s) (ids 1..{count} in its first ground-truth frame)"
            )
        return
    unexpected = np.setdiff1d(np.unique(pred_ids), (0, *object_ids))
    if unexpected.size:
        raise ValueError(
            f"{source}: contains object id {int(unexpected[0])}, which is not an object of the sequence "
            f"(its first ground-truth frame has ids {_id_list(object_ids)})"
        )


def _id_list(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids) or "none"


def check_gt_sizes(gt_masks: Sequence[np.ndarray], sources: Sequence[str]) -> None:
    """Raises ``ValueError`` naming ``sources[t]`` when ground truth t differs in size from the first."""
    first = np.asarray(gt_masks[0]).shape
    for mask, source in zip(gt_masks, sources):
        shape = np.asarray(mask).shape
        if shape != first:
            raise ValueError(
                f"{source}: ground-truth mask is {_size(shape)} but the first ground-truth frame "
                f"({sources[0]}) is {_size(first)}"
            )


def _size(shape: tuple[int, ...]) -> str:
    """``WxH`` of an ``(H, W)`` shape, as image sizes are usually written."""
    return f"{shape[1]}x{shape[0]}" if len(shape) == 2 else str(shape)


def evaluate_frame(
    gt_ids: np.ndarray, pred_ids: np.ndarray, object_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object on one frame.

    ``gt_ids`` (void already removed) and ``pred_ids`` are ``(H, W)`` id maps.
    Returns two float64 arrays of shape ``(len(object_ids),)``, index i =
    object ``object_ids[i]``.
    """
    j_values = np.empty(len(object_ids), dtype=np.float64)
    f_values = np.empty(len(object_ids), dtype=np.float64)
    for index, object_id in enumerate(object_ids):
        gt = gt_ids == object_id
        pred = pred_ids == object_id
        j_values[index] = metrics.region_similarity(pred, gt)
        f_values[index] = metrics.boundary_f_measure(pred, gt)
    return j_values, f_values


def evaluate_sequence(
    gt_masks: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray | None],
    num_objects: int | None = None,
    *,
    object_ids: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Per-object, per-frame J and F of one sequence.

    Args:
        gt_masks: the n ground-truth id maps ``(H, W)`` of all frames, first
            and last included (255 = void, scored as background).
        pred_masks: the n predicted id maps, aligned with ``gt_masks``. The
            first and last entries are not scored and may be ``None``.
        num_objects: objects to score (ids 1..num_objects); defaults to the
            max id of the first ground-truth frame, as the toolkit does.
        object_ids: the ids to score instead (K of them, e.g.
            ``scored_ids(present_ids(gt_masks[0]), "first-frame")``); not
            together with ``num_objects``.

    Returns:
        ``{"J": (K, n - 2), "F": (K, n - 2)}`` float64 arrays; row i is
        object i + 1 (or ``object_ids[i]``), column k is frame k + 1.

    Raises:
        ValueError: fewer than 3 frames, mismatched lengths or sizes, or a
            predicted id that is not scored.
    """
    n = len(gt_masks)
    if len(pred_masks) != n:
        raise ValueError(f"got {n} ground-truth frames but {len(pred_masks)} predictions")
    if n < 3:
        raise ValueError(f"a sequence needs at least 3 frames (first and last are not scored), got {n}")
    if num_objects is not None and object_ids is not None:
        raise ValueError("give num_objects or object_ids, not both")
    if object_ids is None:
        object_ids = range(1, (count_objects(gt_masks[0]) if num_objects is None else num_objects) + 1)
    object_ids = tuple(object_ids)
    check_gt_sizes(gt_masks, [f"ground-truth frame {t}" for t in range(n)])
    scored = range(1, n - 1)
    j_table = np.empty((len(object_ids), len(scored)), dtype=np.float64)
    f_table = np.empty_like(j_table)
    for column, t in enumerate(scored):
        gt_ids = remove_void(np.asarray(gt_masks[t]))
        if pred_masks[t] is None:
            raise ValueError(f"prediction for frame {t} is missing")
        pred_ids = np.asarray(pred_masks[t])
        check_prediction(pred_ids, gt_ids.shape, object_ids, f"prediction for frame {t}")
        j_table[:, column], f_table[:, column] = evaluate_frame(gt_ids, pred_ids, object_ids)
    return {"J": j_table, "F": f_table}


# --------------------------------------------------------------------------
# Dataset folders
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _SequenceJob:
    """What a worker needs to score one sequence (picklable)."""

    name: str
    dataset: DavisDataset
    results_dir: Path
    objects: str
    boxes: bool
    tracker_boxes: TrackerBoxes | None = None

    @property
    def gt_dir(self) -> Path:
        return self.dataset.masks_dir(self.name)

    @property
    def frames_dir(self) -> Path:
        return self.dataset.frames_dir(self.name)


@dataclass(frozen=True)
class _SequenceResult:
    """A worker's answer: the ids present in the first ground-truth frame, the K
    scored ids and their ``{"J": (K, T), "F": (K, T)}`` tables (and, with boxes,
    ``sequence_box_scores``'s ``"IoU"`` and ``"Centre-Error"`` and the ``box_source``)."""

    present: tuple[int, ...]
    object_ids: tuple[int, ...]
    scores: dict[str, np.ndarray]
    box_source: str | None = None


#: Frames are JPEGs, as in DAVIS.
_FRAME_EXTENSIONS = frozenset({".jpg"})
#: A gap message counts at most this many missing frames.
_COUNTED_MISSING = 10_000


def _frames_of(frames_dir: Path) -> list[Path]:
    """The JPEG frames of a sequence in frame order; empty when the folder is absent."""
    return image_files(frames_dir, _FRAME_EXTENSIONS) if frames_dir.is_dir() else []


def _gt_of_frames(job: _SequenceJob, frames: list[Path]) -> list[Path]:
    """The ground-truth PNG of each JPEG frame; raises naming the first missing or extra one."""
    gt_paths = [job.gt_dir / f"{frame.stem}.png" for frame in frames]
    missing = [path for path in gt_paths if not path.is_file()]
    if missing:
        only_first = len(missing) == len(gt_paths) - 1 and gt_paths[0].is_file()
        why = "only the first frame is annotated, as in DAVIS test-dev / challenge folders, but " if only_first else ""
        raise FileNotFoundError(
            f"sequence {job.name!r}: ground truth missing: {missing[0]} ({why}every frame of "
            f"{job.frames_dir} needs one; {len(missing)} of {len(gt_paths)} missing)"
        )
    stems = {frame.stem for frame in frames}
    extra = [path for path in frame_order(job.gt_dir.glob("*.png")) if path.stem not in stems]
    if extra:
        raise ValueError(f"{extra[0]}: ground truth of no frame in {job.frames_dir} (no {extra[0].stem}.jpg)")
    return gt_paths


def _check_numbering(job: _SequenceJob, gt_paths: list[Path]) -> None:
    """Raises ``FileNotFoundError`` naming the first file missing from numbered PNGs (:mod:`mast.data.frames`)."""
    missing = missing_frames(gt_paths, limit=_COUNTED_MISSING)
    if missing:
        count = f"{len(missing)}{'+' if len(missing) == _COUNTED_MISSING else ''}"
        raise FileNotFoundError(
            f"sequence {job.name!r}: ground truth missing: {job.gt_dir / missing[0]} (a gap in the numbering of "
            f"{job.gt_dir}; {count} frame(s) missing)"
        )


def _gt_paths(job: _SequenceJob, frames: list[Path]) -> list[Path]:
    """The ground-truth PNG of every frame of a sequence, in frame order (``frames``: its JPEGs, if any)."""
    if not job.gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {job.gt_dir}")
    if frames:
        gt_paths = _gt_of_frames(job, frames)
    else:  # no frames to compare to: the annotations are the frames
        gt_paths = frame_order(job.gt_dir.glob("*.png"))
        _check_numbering(job, gt_paths)
    if len(gt_paths) < 3:
        raise ValueError(
            f"sequence {job.name!r}: {len(gt_paths)} ground-truth frame(s) in {job.gt_dir}; "
            "at least 3 are needed (the first and last frames are not scored)"
        )
    return gt_paths


def _frame_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image, from its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read frame {path}: {error}") from error
    return height, width


def _read_ground_truth(job: _SequenceJob, gt_paths: list[Path], frames: list[Path]) -> list[np.ndarray]:
    """All ground-truth id maps ``(H, W)`` of a sequence, checked against each other and the frames."""
    dataset = job.dataset
    gt_masks = [dataset.read_first_ids(gt_paths[0])] + [dataset.read_ids(path) for path in gt_paths[1:]]
    check_gt_sizes(gt_masks, [str(path) for path in gt_paths])
    frame_size = _frame_size(frames[0]) if frames else gt_masks[0].shape
    if frame_size != gt_masks[0].shape:
        raise ValueError(
            f"{gt_paths[0]}: ground-truth mask is {_size(gt_masks[0].shape)} but the frames "
            f"({frames[0]}) are {_size(frame_size)}"
        )
    return gt_masks


def _read_prediction(path: Path, year: int) -> np.ndarray:
    """Predicted ids ``(H, W) uint8``; for DAVIS-2016 any id > 0 becomes 1."""
    if not path.is_file():
        raise FileNotFoundError(f"results frame not found: {path}")
    ids = read_mask(path)
    if year == 2016:
        return (ids > 0).astype(np.uint8)
    return ids


def _score_sequence(job: _SequenceJob) -> _SequenceResult:
    """Reads one sequence's ground truth and results and scores it (runs in a worker)."""
    frames = _frames_of(job.frames_dir)
    gt_paths = _gt_paths(job, frames)
    gt_masks = _read_ground_truth(job, gt_paths, frames)
    present = present_ids(gt_masks[0])
    object_ids = scored_ids(present, job.objects)
    pred_masks: list[np.ndarray | None] = [None] * len(gt_paths)
    for t in range(1, len(gt_paths) - 1):  # only scored frames are read, as in the toolkit
        path = job.results_dir / job.name / f"{gt_paths[t].stem}.png"
        pred_masks[t] = _read_prediction(path, job.dataset.year)
        check_prediction(pred_masks[t], gt_masks[t].shape, object_ids, str(path))
    scores = evaluate_sequence(gt_masks, pred_masks, object_ids=object_ids)
    if not job.boxes:
        return _SequenceResult(present, object_ids, scores)
    pred_boxes = None if job.tracker_boxes is None else _tracker_boxes_of_frames(job.tracker_boxes, gt_paths, present)
    scores.update(sequence_box_scores(gt_masks, pred_masks, object_ids, pred_boxes))
    return _SequenceResult(present, object_ids, scores, "mask" if pred_boxes is None else "tracker")


def _tracker_boxes_of_frames(tracker_boxes: TrackerBoxes, gt_paths: list[Path],
                             present: tuple[int, ...]) -> list[dict | None]:
    """The tracker's boxes of each ground-truth frame (None where it has none: the ends may lack
    results); its objects must be those of the first ground-truth frame."""
    if set(tracker_boxes.objects) != set(present):
        raise ValueError(f"{tracker_boxes.path}: boxes of objects {_id_list(tracker_boxes.objects)}, but the first "
                         f"ground-truth frame {gt_paths[0]} holds objects {_id_list(present)}")
    return [tracker_boxes.frames.get(path.stem) for path in gt_paths]


def _read_tracker_boxes(results_dir: Path, name: str) -> TrackerBoxes | None:
    """The checked boxes.json of a sequence's results (:mod:`mast.eval.box_outputs`), None without one."""
    path = results_dir / name / BOXES_FILE
    if not path.is_file():
        return None
    pngs = [png for png in (results_dir / name).glob("*.png") if not is_temporary(png)]
    return read_tracker_boxes(path, [png.stem for png in pngs])


def _score_all(jobs: list[_SequenceJob], processes: int,
               on_sequence: Callable[[str, int], None]) -> list[_SequenceResult]:
    """Scores the sequences, inline when ``processes == 1``, else in a process pool; calls
    ``on_sequence(name, len(jobs))`` as each result arrives, in the order of ``jobs``."""
    if processes == 1:
        return _reported(jobs, map(_score_sequence, jobs), on_sequence)
    executor = ProcessPoolExecutor(max_workers=processes, initializer=start_worker_process)
    try:
        # map yields the results in order, each as soon as it and those before it are done.
        return _reported(jobs, executor.map(_score_sequence, jobs), on_sequence)
    finally:
        # On an error, do not wait for sequences that have not started yet.
        executor.shutdown(wait=True, cancel_futures=True)


def _reported(jobs: list[_SequenceJob], results: Iterator[_SequenceResult],
              on_sequence: Callable[[str, int], None]) -> list[_SequenceResult]:
    """The results, collected in order, each reported by its sequence's name."""
    collected = []
    for job, result in zip(jobs, results):
        collected.append(result)
        on_sequence(job.name, len(jobs))
    return collected


def _warn_absent_ids(name: str, present: tuple[int, ...]) -> None:
    """Warns that the DAVIS rule scores ids the first frame of ``name`` does not hold."""
    absent = absent_ids(present)
    if absent:
        warnings.warn(
            f"sequence {name!r}: its first ground-truth frame has object ids {_id_list(present)}, so "
            f"ids {_id_list(absent)} are scored as objects too (DAVIS rule: ids 1..{max(present)}; "
            "J = F = 1 where such an id is neither annotated nor predicted); "
            "objects='first-frame' scores only the ids present",
            UserWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def global_statistics(object_scores: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Object-weighted global table from per-object ``{"J": (T,), "F": (T,)}`` scores.

    Each statistic is computed per object over its frames, then averaged over
    all objects; J&F-Mean = (J-Mean + F-Mean) / 2.
    """
    if not object_scores:
        raise ValueError("no objects to evaluate: every first ground-truth frame is empty")
    table: dict[str, float] = {}
    for measure in ("J", "F"):
        per_object = [metrics.summary_statistics(scores[measure]) for scores in object_scores]
        for statistic in ("mean", "recall", "decay"):
            key = f"{measure}-{statistic.capitalize()}"
            table[key] = float(np.mean([stats[statistic] for stats in per_object]))
    table["J&F-Mean"] = (table["J-Mean"] + table["F-Mean"]) / 2
    return {column: table[column] for column in GLOBAL_COLUMNS}


def _per_object_scores(names: list[str], results: list[_SequenceResult]) -> list[tuple[str, dict]]:
    """``(<sequence>_<id>, {"J": (T,), "F": (T,), ...})`` for every scored object of every sequence."""
    rows = []
    for name, result in zip(names, results):
        for index, object_id in enumerate(result.object_ids):
            scores = {measure: table[index] for measure, table in result.scores.items()}
            rows.append((f"{name}_{object_id}", scores))
    return rows


def _box_columns(global_table: dict[str, float]) -> tuple[str, ...]:
    """``BOX_COLUMNS`` and ``BOX_SOURCE`` when the tables were scored with boxes, else none."""
    return BOX_COLUMNS + (BOX_SOURCE,) if BOX_COLUMNS[0] in global_table else ()


def _cell(value: float | str, width: int) -> str:
    """A table cell right-aligned in ``width``: numbers with 3 decimals, words (``BOX_SOURCE``) as they are."""
    return f"{value:>{width}}" if isinstance(value, str) else f"{value:>{width}.3f}"


def _write_csv(path: Path, header: Sequence[str], rows: list[Sequence]) -> None:
    """Writes a CSV atomically; floats keep full precision (``repr``).

    Raises ``OSError`` with a one-line message naming ``path``.
    """
    try:
        with atomic_open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from error


def format_results(global_table: dict[str, float], per_sequence_table: list[dict]) -> str:
    """Human-readable text of both tables (3 decimals; the CSVs keep full precision).

    Box columns, when the tables hold them, follow the toolkit's on each line.
    """
    boxes = _box_columns(global_table)
    columns = GLOBAL_COLUMNS + boxes
    lines = ["Global results:", "  ".join(f"{c:>{max(9, len(c))}}" for c in columns)]
    lines.append("  ".join(_cell(global_table[c], max(9, len(c))) for c in columns))
    width = max([len("Sequence")] + [len(row["Sequence"]) for row in per_sequence_table])
    header = f"{'Sequence':<{width}}  {'J-Mean':>7}  {'F-Mean':>7}"
    lines += ["", "Per-object results:", header + "".join(f"  {c}" for c in boxes)]
    for row in per_sequence_table:
        line = f"{row['Sequence']:<{width}}  {row['J-Mean']:>7.3f}  {row['F-Mean']:>7.3f}"
        lines.append(line + "".join(f"  {_cell(row[c], len(c))}" for c in boxes))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def score_davis(
    davis_root: PathLike,
    results_dir: PathLike,
    split: str = "val",
    year: int = 2017,
    processes: int | None = None,
    objects: str = "davis",
    boxes: bool = False,
    sequences: Sequence[str] | None = None,
    on_sequence: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Scores a results folder on a DAVIS split (or some of its sequences); writes nothing.

    Layout: sequences from ``davis_root/ImageSets/<year>/<split>.txt``, frames
    ``davis_root/JPEGImages/480p/<seq>/*.jpg`` (optional, see the module
    docstring), ground truth ``davis_root/Annotations/480p/<seq>/*.png``,
    results ``results_dir/<seq>/<frame>.png`` (same stem as the ground-truth
    frame; only the scored frames, all but the first and last, are needed).
    Always recomputes.

    Args:
        processes: worker processes (sequences are scored in parallel);
            1 runs inline; ``None`` = one per CPU, at most one per sequence.
        objects: ``"davis"`` (ids 1..max of the first ground-truth frame,
            the toolkit; warns, naming the sequence, when some are absent) or
            ``"first-frame"`` (only the ids present there).
        sequences: score only these sequences of the split (in this order), e.g. those
            a model did not train on; a name the split does not list is an error.
        boxes: also score boxes (``mast.eval.boxes``): a sequence's tracker boxes
            (``results_dir/<seq>/boxes.json``, checked before any scoring) where
            present, else its masks' min-max boxes. Both tables gain the keys of
            ``BOX_COLUMNS`` (NaN for an object the ground truth lacks on every
            scored frame) and ``BOX_SOURCE`` (``tracker`` or ``mask``; globally
            ``mixed`` when the sequences differ).
        on_sequence: called as ``on_sequence(name, total)`` once each sequence is
            scored, in the order scored (``total``: the sequences being scored), e.g.
            to advance a progress bar; the scores do not depend on it.

    Returns:
        ``(global_table, per_sequence_table)``: a dict with the keys of
        ``GLOBAL_COLUMNS``, and one dict per object with the keys of
        ``PER_SEQUENCE_COLUMNS`` (``Sequence`` is ``<sequence>_<id>``).

    Raises:
        FileNotFoundError: missing split file, ground-truth folder,
            ground-truth frame or results frame (the message names it).
        ValueError: unreadable mask, size mismatch (ground truth against its
            first frame or the frames, prediction against ground truth), a
            predicted id that is not scored, a sequence with fewer than 3
            frames, a DAVIS-2016 mask under ``year=2017``, or no objects; with
            ``boxes``, a boxes.json that is damaged, lists other frames than
            the results' PNGs or other objects than the first ground-truth frame.
    """
    dataset = DavisDataset.at(davis_root, year)
    _check_objects(objects)
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise MissingPathError("results", f"results folder not found: {results_dir}")
    names = dataset.sequences(split)
    if sequences is not None:
        unknown = [name for name in sequences if name not in names]
        if unknown or not sequences:
            raise ArgumentError("sequences", f"{unknown or '(none)'} are not in {dataset.split_file(split)} "
                                             f"({', '.join(names)})")
        names = list(dict.fromkeys(sequences))
    if processes is None:
        processes = min(os.cpu_count() or 1, len(names))
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    jobs = [_SequenceJob(name, dataset, results_dir, objects, boxes,
                         _read_tracker_boxes(results_dir, name) if boxes else None) for name in names]
    results = _score_all(jobs, min(processes, len(jobs)), on_sequence or (lambda name, total: None))
    if objects == "davis":
        for name, result in zip(names, results):
            _warn_absent_ids(name, result.present)
    per_object = _per_object_scores(names, results)
    global_table = global_statistics([scores for _, scores in per_object])
    per_sequence_table = [
        {"Sequence": name, "J-Mean": metrics.mean(s["J"]), "F-Mean": metrics.mean(s["F"])}
        for name, s in per_object
    ]
    if boxes:
        box_global, box_rows = box_tables([scores for _, scores in per_object])
        sources = [result.box_source for result in results for _ in result.object_ids]
        global_table.update(box_global, **{BOX_SOURCE: overall_source([r.box_source for r in results])})
        for row, box_row, source in zip(per_sequence_table, box_rows, sources):
            row.update(box_row, **{BOX_SOURCE: source})
    return global_table, per_sequence_table


def write_csvs(
    results_dir: PathLike, split: str, global_table: dict[str, float], per_sequence_table: list[dict]
) -> tuple[Path, Path]:
    """Writes ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` into ``results_dir``.

    Atomic, full float precision; the box columns, when the tables hold them,
    follow the toolkit's. Returns the two paths; raises ``OSError`` with a
    one-line message naming the file that could not be written.
    """
    results_dir = Path(results_dir)
    global_path = results_dir / f"global_results-{split}.csv"
    per_sequence_path = results_dir / f"per-sequence_results-{split}.csv"
    boxes = _box_columns(global_table)
    _write_csv(global_path, GLOBAL_COLUMNS + boxes, [[global_table[c] for c in GLOBAL_COLUMNS + boxes]])
    _write_csv(
        per_sequence_path,
        PER_SEQUENCE_COLUMNS + boxes,
        [[row[c] for c in PER_SEQUENCE_COLUMNS + boxes] for row in per_sequence_table],
    )
    return global_path, per_sequence_path


def evaluate_davis(
    davis_root: PathLike, results_dir: PathLike, split: str = "val", **scoring
) -> tuple[dict[str, float], list[dict]]:
    """``score_davis`` (``scoring``: its ``year``, ``processes``, ``objects``, ``boxes``,
    ``sequences``), then ``write_csvs`` into ``results_dir`` under :func:`csv_label`;
    returns the tables.

    Raises what those two raise (``OSError`` when a CSV cannot be written).
    """
    tables = score_davis(davis_root, results_dir, split, **scoring)
    write_csvs(results_dir, csv_label(split, scoring.get("sequences")), *tables)
    return tables


def csv_label(split: str, sequences: Sequence[str] | None = None) -> str:
    """What the CSV names say was scored: ``<split>``, or ``<split>-<seq>+<seq>...`` for some
    of its sequences, so a subset's scores are never taken for the whole split's."""
    if not sequences:
        return split
    joined = "+".join(dict.fromkeys(sequences))
    if len(joined) > 120:  # file names stay short; the hash still tells subsets apart
        joined = f"{len(sequences)}-sequences-{hashlib.sha256(joined.encode()).hexdigest()[:10]}"
    return f"{split}-{joined}"
