"""DAVIS semi-supervised evaluation (J&F), following SPEC section 6.

``evaluate_sequence`` scores in-memory masks of one sequence;
``evaluate_davis`` scores a results folder against a DAVIS dataset folder,
writes the two CSV files the official toolkit writes and returns the tables.

Protocol (DAVIS-2017 toolkit):

* frames scored: all but the first and the last of each sequence;
* objects: 1..(max id of the first ground-truth frame); ground-truth void
  pixels (255) count as background and nothing is excluded from the scores;
* a predicted id above the number of objects is an error, an id missing from
  a prediction is an empty mask;
* global statistics are object-weighted: every object of every sequence
  counts once.

DAVIS-2016 (``year=2016``) is single-object: ground truth is ``mask > 127``
and any predicted id > 0 is the object.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mast.eval import metrics
from mast.eval.io import PathLike, atomic_open, read_davis2016_mask, read_mask

#: Ground-truth value of void pixels (DAVIS-2017); scored as background.
VOID_ID = 255

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")

#: Sub-folder of ``Annotations`` / ``JPEGImages`` holding the 480p data.
RESOLUTION = "480p"


# --------------------------------------------------------------------------
# One sequence, in memory
# --------------------------------------------------------------------------


def remove_void(gt_ids: np.ndarray) -> np.ndarray:
    """Ground-truth ids ``(H, W)`` with void (255) turned into background (0)."""
    return np.where(gt_ids == VOID_ID, 0, gt_ids)


def count_objects(first_gt_ids: np.ndarray) -> int:
    """Number of objects of a sequence: the max id of its first GT frame, void removed."""
    cleaned = remove_void(np.asarray(first_gt_ids))
    return int(cleaned.max()) if cleaned.size else 0


def check_prediction(pred_ids: np.ndarray, gt_shape: tuple[int, ...], num_objects: int, source: str) -> None:
    """Raises ``ValueError`` (naming ``source``) on a wrong size or an id above ``num_objects``."""
    if pred_ids.shape != gt_shape:
        raise ValueError(
            f"{source}: mask size {pred_ids.shape} differs from the ground truth size {gt_shape}"
        )
    highest = int(pred_ids.max()) if pred_ids.size else 0
    if highest > num_objects:
        raise ValueError(
            f"{source}: contains object id {highest}, but the sequence has only "
            f"{num_objects} object(s) (ids 1..{num_objects} in its first ground-truth frame)"
        )


def evaluate_frame(
    gt_ids: np.ndarray, pred_ids: np.ndarray, num_objects: int
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object on one frame.

    ``gt_ids`` (void already removed) and ``pred_ids`` are ``(H, W)`` id maps.
    Returns two float64 arrays of shape ``(num_objects,)``, index i = object i+1.
    """
    j_values = np.empty(num_objects, dtype=np.float64)
    f_values = np.empty(num_objects, dtype=np.float64)
    for index, object_id in enumerate(range(1, num_objects + 1)):
        gt = gt_ids == object_id
        pred = pred_ids == object_id
        j_values[index] = metrics.region_similarity(pred, gt)
        f_values[index] = metrics.boundary_f_measure(pred, gt)
    return j_values, f_values


def evaluate_sequence(
    gt_masks: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray | None],
    num_objects: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-object, per-frame J and F of one sequence.

    Args:
        gt_masks: the n ground-truth id maps ``(H, W)`` of all frames, first
            and last included (255 = void, scored as background).
        pred_masks: the n predicted id maps, aligned with ``gt_masks``. The
            first and last entries are not scored and may be ``None``.
        num_objects: objects to score (ids 1..num_objects); defaults to the
            max id of the first ground-truth frame, as the toolkit does.

    Returns:
        ``{"J": (num_objects, n - 2), "F": (num_objects, n - 2)}`` float64
        arrays; column k is frame k + 1.

    Raises:
        ValueError: fewer than 3 frames, mismatched lengths or sizes, or a
            predicted id above ``num_objects``.
    """
    n = len(gt_masks)
    if len(pred_masks) != n:
        raise ValueError(f"got {n} ground-truth frames but {len(pred_masks)} predictions")
    if n < 3:
        raise ValueError(f"a sequence needs at least 3 frames (first and last are not scored), got {n}")
    if num_objects is None:
        num_objects = count_objects(gt_masks[0])
    scored = range(1, n - 1)
    j_table = np.empty((num_objects, len(scored)), dtype=np.float64)
    f_table = np.empty_like(j_table)
    for column, t in enumerate(scored):
        gt_ids = remove_void(np.asarray(gt_masks[t]))
        if pred_masks[t] is None:
            raise ValueError(f"prediction for frame {t} is missing")
        pred_ids = np.asarray(pred_masks[t])
        check_prediction(pred_ids, gt_ids.shape, num_objects, f"prediction for frame {t}")
        j_table[:, column], f_table[:, column] = evaluate_frame(gt_ids, pred_ids, num_objects)
    return {"J": j_table, "F": f_table}


# --------------------------------------------------------------------------
# Dataset folders
# --------------------------------------------------------------------------


def _sequence_name(line: str) -> str:
    """Sequence name of one ImageSets line.

    Either a bare name (``bear``) or the DAVIS-2016 per-frame pair format
    (``/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png``),
    where the name is the folder holding the first file.
    """
    first = line.split()[0]
    if "/" in first:
        return Path(first).parent.name
    return first


def read_sequence_names(split_file: PathLike) -> list[str]:
    """Unique sequence names listed in an ImageSets file, in file order.

    Blank lines and lines starting with '#' are skipped.
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"split file not found: {split_file}")
    names: dict[str, None] = {}  # an ordered set: the 2016 format repeats names per frame
    for line in split_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names[_sequence_name(line)] = None
    if not names:
        raise ValueError(f"split file lists no sequences: {split_file}")
    return list(names)


@dataclass(frozen=True)
class _SequenceJob:
    """What a worker needs to score one sequence (picklable)."""

    name: str
    gt_dir: Path
    results_dir: Path
    year: int


def _read_gt(path: Path, year: int) -> np.ndarray:
    """Ground-truth ids ``(H, W) uint8``; DAVIS-2016 masks become 0/1."""
    if year == 2016:
        return read_davis2016_mask(path).astype(np.uint8)
    return read_mask(path)


def _read_prediction(path: Path, year: int) -> np.ndarray:
    """Predicted ids ``(H, W) uint8``; for DAVIS-2016 any id > 0 becomes 1."""
    if not path.is_file():
        raise FileNotFoundError(f"results frame not found: {path}")
    ids = read_mask(path)
    if year == 2016:
        return (ids > 0).astype(np.uint8)
    return ids


def _score_sequence(job: _SequenceJob) -> dict[str, np.ndarray]:
    """Reads one sequence's ground truth and results and scores it (runs in a worker)."""
    if not job.gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {job.gt_dir}")
    gt_paths = sorted(job.gt_dir.glob("*.png"))
    if len(gt_paths) < 3:
        raise ValueError(
            f"sequence {job.name!r}: {len(gt_paths)} ground-truth frame(s) in {job.gt_dir}; "
            "at least 3 are needed (the first and last frames are not scored)"
        )
    gt_masks = [_read_gt(path, job.year) for path in gt_paths]
    num_objects = count_objects(gt_masks[0])
    pred_masks: list[np.ndarray | None] = [None] * len(gt_paths)
    for t in range(1, len(gt_paths) - 1):  # only scored frames are read, as in the toolkit
        path = job.results_dir / job.name / f"{gt_paths[t].stem}.png"
        pred_masks[t] = _read_prediction(path, job.year)
        check_prediction(pred_masks[t], gt_masks[t].shape, num_objects, str(path))
    return evaluate_sequence(gt_masks, pred_masks, num_objects)


def _init_worker() -> None:
    """Keeps each worker single-threaded: parallelism is across sequences."""
    import cv2

    cv2.setNumThreads(1)


def _score_all(jobs: list[_SequenceJob], processes: int) -> list[dict[str, np.ndarray]]:
    """Scores the sequences, inline when ``processes == 1``, else in a process pool."""
    if processes == 1:
        return [_score_sequence(job) for job in jobs]
    executor = ProcessPoolExecutor(max_workers=processes, initializer=_init_worker)
    try:
        return list(executor.map(_score_sequence, jobs))
    finally:
        # On an error, do not wait for sequences that have not started yet.
        executor.shutdown(wait=True, cancel_futures=True)


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


def _per_object_scores(names: list[str], results: list[dict[str, np.ndarray]]) -> list[tuple[str, dict]]:
    """``(<sequence>_<id>, {"J": (T,), "F": (T,)})`` for every object of every sequence."""
    rows = []
    for name, scores in zip(names, results):
        for index in range(scores["J"].shape[0]):
            rows.append((f"{name}_{index + 1}", {"J": scores["J"][index], "F": scores["F"][index]}))
    return rows


def _write_csv(path: Path, header: Sequence[str], rows: list[Sequence]) -> None:
    """Writes a CSV atomically; floats keep full precision (``repr``)."""
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def format_results(global_table: dict[str, float], per_sequence_table: list[dict]) -> str:
    """Human-readable text of both tables (3 decimals; the CSVs keep full precision)."""
    lines = ["Global results:", "  ".join(f"{c:>9}" for c in GLOBAL_COLUMNS)]
    lines.append("  ".join(f"{global_table[c]:>9.3f}" for c in GLOBAL_COLUMNS))
    width = max([len("Sequence")] + [len(row["Sequence"]) for row in per_sequence_table])
    lines += ["", "Per-object results:", f"{'Sequence':<{width}}  {'J-Mean':>7}  {'F-Mean':>7}"]
    for row in per_sequence_table:
        lines.append(f"{row['Sequence']:<{width}}  {row['J-Mean']:>7.3f}  {row['F-Mean']:>7.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def evaluate_davis(
    davis_root: PathLike,
    results_dir: PathLike,
    split: str = "val",
    year: int = 2017,
    processes: int | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Scores a results folder on a DAVIS split and writes the toolkit's CSVs.

    Layout: sequences from ``davis_root/ImageSets/<year>/<split>.txt``, ground
    truth ``davis_root/Annotations/480p/<seq>/*.png``, results
    ``results_dir/<seq>/<frame>.png`` (same stem as the ground-truth frame;
    only the scored frames, all but the first and last, are needed).

    Always recomputes, then writes (atomically, full float precision)
    ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv``
    into ``results_dir``.

    Args:
        processes: worker processes (sequences are scored in parallel);
            1 runs inline; ``None`` = one per CPU, at most one per sequence.

    Returns:
        ``(global_table, per_sequence_table)``: a dict with the keys of
        ``GLOBAL_COLUMNS``, and one dict per object with the keys of
        ``PER_SEQUENCE_COLUMNS`` (``Sequence`` is ``<sequence>_<id>``).

    Raises:
        FileNotFoundError: missing split file, ground-truth folder or results
            frame (the message names it).
        ValueError: unreadable mask, size mismatch, id above the number of
            objects, a sequence with fewer than 3 frames, or no objects at all.
    """
    if year not in (2016, 2017):
        raise ValueError(f"year must be 2016 or 2017, got {year}")
    davis_root, results_dir = Path(davis_root), Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    names = read_sequence_names(davis_root / "ImageSets" / str(year) / f"{split}.txt")
    if processes is None:
        processes = min(os.cpu_count() or 1, len(names))
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    jobs = [_SequenceJob(n, davis_root / "Annotations" / RESOLUTION / n, results_dir, year) for n in names]
    objects = _per_object_scores(names, _score_all(jobs, min(processes, len(jobs))))

    global_table = global_statistics([scores for _, scores in objects])
    per_sequence_table = [
        {"Sequence": name, "J-Mean": metrics.mean(s["J"]), "F-Mean": metrics.mean(s["F"])}
        for name, s in objects
    ]
    _write_csv(
        results_dir / f"global_results-{split}.csv",
        GLOBAL_COLUMNS,
        [[global_table[c] for c in GLOBAL_COLUMNS]],
    )
    _write_csv(
        results_dir / f"per-sequence_results-{split}.csv",
        PER_SEQUENCE_COLUMNS,
        [[row[c] for c in PER_SEQUENCE_COLUMNS] for row in per_sequence_table],
    )
    return global_table, per_sequence_table
