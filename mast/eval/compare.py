"""``mast compare``: every model of a models file on the same DAVIS sequences, side by side.

Each model runs through the one writer (:func:`mast.eval.propagate.propagate_to_folder`)
into its own recorded results folder ``DIR/<name>/`` (so ``mast evaluate`` scores it
too), each sequence is scored by the one evaluator (:func:`mast.eval.davis.score_davis`)
and drawn by the one overlay writer (:mod:`mast.eval.visualize`) into
``DIR/<name>/overlays/``.

Resuming follows the writer's rule (:func:`mast.eval.propagate.is_finished`): a row is reused
only while its sequence is finished in the model's results folder, written from the same input
(a changed frame or annotation is redone, for every model) under the same settings.
``DIR/compare.json`` keeps only what the writer does not know: each row's scores, timings,
peak memory, overlay and errors, and the input it was made from (so a row whose sequence was
rewritten after it, e.g. by a run stopped before saving its row, is redone too). Every
sequence some model will redo is decoded whole (:func:`mast.eval.propagate.check_frames`)
before anything is written. The table, the plot and the page
(:mod:`mast.eval.compare_report`) are rewritten at the end of every run.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from mast.common.devices import resolve_device
from mast.common.memory import peak_memory
from mast.common.outputs import OutputFolder, check_separate
from mast.eval.compare_models import ModelEntry, load_entry, read_models, supervision
from mast.eval.compare_report import ALL_SEQUENCES, PAGE, PLOT, TABLE_CSV, TABLE_MD, write_reports
from mast.eval.davis import score_davis
from mast.eval.propagate import PropagationInput, check_frames, is_finished, propagate_to_folder, results_folder
from mast.eval.sources import davis_inputs
from mast.eval.visualize import overlay_folder, write_sequence_pictures
from mast.models.tracker import Tracker

#: The rows of every model, kept between runs.
RECORD = "compare.json"
#: Files the comparison writes in ``DIR`` beside the model folders (no model may take their names).
OWN_FILES = (RECORD, TABLE_CSV, TABLE_MD, PLOT, PAGE)
#: The scores of a row, as ``mast evaluate``'s global table names them.
SCORES = ("J&F-Mean", "J-Mean", "F-Mean", "J-Decay")
OVERLAYS = "overlays"
#: What a finished row of ``compare.json`` holds (:func:`run_row`).
ROW_KEYS = frozenset({"input", "frames", "timed_frames", "seconds", "peak_bytes", "memory", "scores", "overlay"})


@dataclass
class ModelRun:
    """A checked model of the comparison: its entry, tracker and what it was trained with."""

    entry: ModelEntry
    tracker: Tracker
    supervision: str


@dataclass
class Comparison:
    """Everything ``mast compare`` checked before writing: the inputs, the models and ``DIR``.

    ``source``: the settings every results folder shares (the DAVIS root and year).
    ``record``: the models' rows of the previous run (:func:`previous_rows`).
    ``redo``: per model name, the sequences whose rows do not stand (:func:`to_redo`).
    ``checked``: per sequence some model redoes, what :func:`~mast.eval.propagate.check_frames`
    found decoding it (recorded with the sequence by the writer).
    """

    inputs: list[PropagationInput]
    runs: list[ModelRun]
    folder: OutputFolder
    davis: Path
    split: str
    source: dict
    overwrite: bool
    device: torch.device
    record: dict = field(default_factory=dict)
    redo: dict[str, set[str]] = field(default_factory=dict)
    checked: dict[str, dict] = field(default_factory=dict)

    def results(self, run: ModelRun) -> OutputFolder:
        """The checked results folder of a model (``DIR/<name>``)."""
        return results_folder(self.folder.path / run.entry.name, run.tracker, self.overwrite, **self.source)

    def overlays(self, run: ModelRun) -> OutputFolder:
        """The checked overlays folder of a model (``DIR/<name>/overlays``)."""
        results = self.folder.path / run.entry.name
        return overlay_folder(results / OVERLAYS, results, {"davis": self.davis}, self.overwrite).check()


def prepare(models: str | Path, davis: str | Path, out: str | Path, split: str = "val", year: int = 2017,
            sequences: list[str] | None = None, overwrite: bool = False, device: str = "auto") -> Comparison:
    """Checks everything a comparison reads and writes; writes nothing.

    Args:
        models: the models file (:mod:`mast.eval.compare_models`).
        davis, split, year, sequences: the DAVIS sequences, as ``mast propagate`` takes them.
        out: ``DIR``, a new folder or one an earlier comparison of the same DAVIS root and
            year wrote; model folders of other settings are replaced only with ``overwrite``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, for every model.

    Raises:
        ArgumentError / ValueError / OSError: one line naming the file, entry or argument (a frame
            that does not decode, or of another size, in a sequence some model will redo).
    """
    entries = read_models(models, frozenset(OWN_FILES))
    device = resolve_device(device)
    inputs = davis_inputs(davis, split, year, sequences)
    check_separate(out, {"davis": davis, "models": models,
                         "checkpoint": [entry.checkpoint for entry in entries if entry.checkpoint]})
    runs = [ModelRun(entry, load_entry(entry, device), supervision(entry)) for entry in entries]
    source = {"davis": str(Path(davis).resolve()), "year": year}
    folder = OutputFolder(out, "compare", source, overwrite).check()
    comparison = Comparison(inputs, runs, folder, Path(davis), split, source, overwrite, device)
    for name in OWN_FILES:
        folder.check_entry(name)
    for run in runs:
        folder.check_entry(run.entry.name)
        results = comparison.results(run)
        for name in [item.name for item in inputs] + [OVERLAYS]:
            results.check_entry(name)
        comparison.overlays(run)
    comparison.record = previous_rows(comparison)
    comparison.redo = {run.entry.name: to_redo(comparison, run) for run in runs}
    redone = set().union(*comparison.redo.values())
    comparison.checked = {item.name: check_frames(item) for item in inputs if item.name in redone}
    return comparison


def one_line(error: BaseException) -> str:
    """An error as one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def run_row(comparison: Comparison, run: ModelRun, item: PropagationInput, results: OutputFolder,
            overlays: OutputFolder) -> dict:
    """Tracks, times, scores and draws one sequence of one model.

    Returns:
        ``{"input", "frames", "timed_frames", "seconds", "peak_bytes", "memory", "scores", "overlay"}`` or
        ``{"error"}``: ``frames`` tracked (all but the first), of which the last ``timed_frames`` took
        ``seconds`` (tracking, reading frames and writing PNGs); ``peak_bytes`` of
        :func:`~mast.common.memory.peak_memory`; ``input``: the identity of the input it was made from.
    """
    written: list[float] = []  # when each tracked frame was written

    def propagate() -> None:
        propagate_to_folder(item, run.tracker, results, on_frame=lambda: written.append(time.perf_counter()),
                            details=comparison.checked[item.name])

    try:
        peak, memory = peak_memory(comparison.device, propagate)
        table, _ = score_davis(comparison.davis, results.path, comparison.split, comparison.source["year"],
                               processes=1, sequences=[item.name])
        overlay = write_sequence_pictures(item.name, item.frames(), results.path, overlays)
    except Exception as error:  # a model failing on one sequence (any error) is a failed row; the others run on
        return {"error": one_line(error)}
    # Timed from the first tracked frame on: the first step also pays for warming up (allocations, kernels).
    return {"input": item.identity, "frames": len(written), "timed_frames": len(written) - 1,
            "seconds": written[-1] - written[0], "peak_bytes": peak, "memory": memory,
            "scores": {name: table[name] for name in SCORES}, "overlay": overlay}


def previous_rows(comparison: Comparison) -> dict:
    """The models' rows of the previous run in ``DIR`` (empty when there is none or it is being replaced)."""
    folder = comparison.folder
    path = folder.path / RECORD
    if folder.previous is None or folder.replace_previous or RECORD not in folder.files or not path.is_file():
        return {}
    try:
        models = json.loads(path.read_text()).get("models", {})
    except (OSError, ValueError, AttributeError):
        return {}  # an unreadable record only costs a rerun
    return models if isinstance(models, dict) else {}


def reusable(row: Any, item: PropagationInput, results: OutputFolder, overlays: OutputFolder) -> bool:
    """Whether a recorded row stands: its sequence is finished by the writer's rule (:func:`is_finished`:
    same settings, same input, every file there), and the row is complete (no error), made from that
    same input, with its overlay video still there."""
    if not isinstance(row, dict) or not ROW_KEYS <= row.keys() or not is_finished(item, results):
        return False
    video = (row.get("overlay") or {}).get("video")
    return row["input"] == item.identity and isinstance(video, str) and (overlays.path / video).is_file()


def _sequence_rows(model: Any) -> dict:
    """The ``{sequence: row}`` of a model's entry in ``compare.json`` (empty when it has none)."""
    rows = model.get("sequences") if isinstance(model, dict) else None
    return rows if isinstance(rows, dict) else {}


def to_redo(comparison: Comparison, run: ModelRun) -> set[str]:
    """The names of the sequences whose previous row of ``run`` does not stand (:func:`reusable`)."""
    results, overlays = comparison.results(run), comparison.overlays(run)
    rows = _sequence_rows(comparison.record.get(run.entry.name))
    return {item.name for item in comparison.inputs if not reusable(rows.get(item.name), item, results, overlays)}


def run_model(comparison: Comparison, run: ModelRun, rows: dict, save: Callable[[], None],
              advance: Callable[[str], None], argv: list[str] | None = None) -> None:
    """Fills ``rows`` (``{sequence: row}``) with a row per sequence, redoing those of
    ``comparison.redo`` and keeping the others; ``save()`` after each new row, ``advance(label)``
    after each; ``argv``: the command line the model's folders record (default ``sys.argv``)."""
    results, overlays = comparison.results(run), comparison.overlays(run)
    started = False
    for item in comparison.inputs:
        if item.name in comparison.redo[run.entry.name]:
            if not started:  # a model folder is written only when one of its rows is not reused
                results.start({"argv": argv, "sequences": [i.name for i in comparison.inputs]})
                overlays = comparison.overlays(run)  # the results folder may just have been cleared
                overlays.start({"argv": argv})
                started = True
            rows[item.name] = run_row(comparison, run, item, results, overlays)
            save()
        advance(f"{run.entry.name}/{item.name}")


def run_comparison(comparison: Comparison, argv: list[str] | None = None,
                   on_row: Callable[[str], None] | None = None) -> list[dict]:
    """Runs every model on every sequence (reusing finished rows), then writes the table, the
    plot and the page; returns the table's rows (:data:`mast.eval.compare_report.COLUMNS`).

    ``on_row(label)`` is called after each model and sequence (``label``: ``<model>/<sequence>``),
    e.g. to advance a progress bar over ``len(runs) * len(inputs)`` rows.
    """
    record = comparison.record
    folder = comparison.folder
    folder.start({"argv": argv, "models": [run.entry.name for run in comparison.runs],
                  "sequences": [item.name for item in comparison.inputs]})

    def save() -> None:
        folder.write_file(RECORD, lambda path: path.write_text(json.dumps({"models": record}, indent=1) + "\n"))

    for run in comparison.runs:  # the settings are not kept here: the writer's run.json has them
        rows = _sequence_rows(record.get(run.entry.name))
        record[run.entry.name] = {"supervision": run.supervision, "sequences": rows}
        run_model(comparison, run, rows, save, on_row or (lambda label: None), argv)
    save()
    rows = [row for run in comparison.runs for row in model_rows(comparison, run, record[run.entry.name])]
    write_reports(folder, rows, overlay_videos(comparison, record))
    return rows


def _speed(rows: list[dict]) -> dict:
    """Frames, frames/s and peak memory of finished rows together (the peak is the highest)."""
    timed, seconds = sum(row["timed_frames"] for row in rows), sum(row["seconds"] for row in rows)
    peaks = [row["peak_bytes"] for row in rows if row.get("peak_bytes") is not None]
    return {"Frames": sum(row["frames"] for row in rows), "Frames/s": timed / seconds if seconds > 0 else float("nan"),
            "Peak-Memory-MiB": max(peaks) / 2**20 if peaks else float("nan"),
            "Memory-Measured": " + ".join(sorted({row["memory"] for row in rows}))}


def _row(run: ModelRun, sequence: str, status: str, **values: Any) -> dict:
    return {"model": run.entry.name, "sequence": sequence, "supervision": run.supervision, "status": status, **values}


def model_rows(comparison: Comparison, run: ModelRun, model: dict) -> list[dict]:
    """A model's table rows: one per sequence, then one over all the sequences it finished
    (scored together by the evaluator, as ``mast evaluate`` scores the folder)."""
    names = [item.name for item in comparison.inputs]
    recorded = model["sequences"]
    rows = [_row(run, name, "failed", error=recorded[name]["error"]) if "error" in recorded[name]
            else _row(run, name, "ok", **recorded[name]["scores"], **_speed([recorded[name]])) for name in names]
    finished = [name for name in names if "error" not in recorded[name]]
    failed = ", ".join(name for name in names if name not in finished)
    if not finished:
        return rows + [_row(run, ALL_SEQUENCES, "failed", error=f"failed on every sequence ({failed})")]
    try:
        table, _ = score_davis(comparison.davis, comparison.folder.path / run.entry.name, comparison.split,
                               comparison.source["year"], processes=1, sequences=finished)
    except Exception as error:  # as for a sequence: the failure is the row's, the table still comes out
        return rows + [_row(run, ALL_SEQUENCES, "failed", error=one_line(error))]
    status = "ok" if not failed else f"partial ({len(finished)} of {len(names)} sequences)"
    return rows + [_row(run, ALL_SEQUENCES, status, **{name: table[name] for name in SCORES},
                        **_speed([recorded[name] for name in finished]), error=f"failed on {failed}" if failed else "")]


def overlay_videos(comparison: Comparison, record: dict) -> dict[str, list[tuple[str, str | None, str]]]:
    """Per sequence, each model's ``(name, overlay video relative to DIR or None, error or "")``."""
    videos: dict[str, list[tuple[str, str | None, str]]] = {}
    for item in comparison.inputs:
        for run in comparison.runs:
            row = record[run.entry.name]["sequences"][item.name]
            video = None if "error" in row else f"{run.entry.name}/{OVERLAYS}/{row['overlay']['video']}"
            videos.setdefault(item.name, []).append((run.entry.name, video, row.get("error", "")))
    return videos
