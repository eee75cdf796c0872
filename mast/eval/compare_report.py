"""What ``mast compare`` shows: the table (Markdown and CSV), the plot and one HTML page.

The page is self-contained: the table, the plot and the overlay videos are
linked by relative paths inside ``DIR`` and nothing is fetched from elsewhere.
"""
from __future__ import annotations

import csv
import html
import io
import math
from pathlib import Path
from typing import Any

import cv2

from mast.common.outputs import OutputFolder
from mast.eval.compare_plot import Point, speed_accuracy_plot

TABLE_CSV, TABLE_MD, PLOT, PAGE = "compare.csv", "compare.md", "compare.png", "index.html"
#: The ``sequence`` of a model's row over all sequences.
ALL_SEQUENCES = "(all)"
#: The table's columns. ``Peak-Memory-MiB`` is what ``Memory-Measured`` says: the CPU's peak
#: resident set above its level before the model ran, or CUDA's peak allocated memory.
COLUMNS = ("model", "sequence", "supervision", "status", "J&F-Mean", "J-Mean", "F-Mean", "J-Decay",
           "Frames", "Frames/s", "Peak-Memory-MiB", "Memory-Measured", "error")
#: Columns printed with 3 decimals in Markdown and HTML (the CSV keeps full precision).
DECIMALS = {"J&F-Mean": 3, "J-Mean": 3, "F-Mean": 3, "J-Decay": 3, "Frames/s": 2, "Peak-Memory-MiB": 1}


def _shown(row: dict, column: str) -> str:
    """A cell as text: rounded numbers, empty for a missing value or NaN."""
    value = row.get(column, "")
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{DECIMALS.get(column, 3)}f}"
    return str(value)


def csv_text(rows: list[dict]) -> str:
    """The table as CSV, floats at full precision (``repr``), missing values empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([[repr(row[c]) if isinstance(row.get(c), float) else row.get(c, "") for c in COLUMNS]
                      for row in rows])
    return buffer.getvalue()


def markdown_text(rows: list[dict]) -> str:
    """The table as a Markdown table (``|`` in errors escaped)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_shown(row, c).replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_points(rows: list[dict]) -> list[Point]:
    """A point per model whose row over all sequences has a score and a speed."""
    return [Point(row["model"], row["Frames/s"], row["J&F-Mean"], row["supervision"]) for row in rows
            if row["sequence"] == ALL_SEQUENCES and isinstance(row.get("Frames/s"), float)
            and row["Frames/s"] > 0 and not math.isnan(row.get("J&F-Mean", math.nan))]


def _html_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr class='{html.escape(row['status'].split()[0])}'>"
        + "".join(f"<td>{html.escape(_shown(row, c))}</td>" for c in COLUMNS) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _video_cell(name: str, video: str | None, error: str) -> str:
    """One model's overlay of one sequence (or its error), captioned by the model's name."""
    shown = (f"<video src='{html.escape(video)}' controls loop muted autoplay playsinline></video>" if video
             else f"<p class='error'>failed: {html.escape(error)}</p>")
    return f"<figure>{shown}<figcaption>{html.escape(name)}</figcaption></figure>"


def page_html(rows: list[dict], videos: dict[str, list[tuple[str, str | None, str]]],
              title: str = "mast compare") -> str:
    """The page: the table, the plot, then per sequence the models' overlay videos side by side."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(-n+4),td:last-child{text-align:left}tr.failed{color:#a00}"
             "tr.partial{color:#a60}.videos{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}"
             "video{height:200px}figcaption{text-align:center}.error{color:#a00;max-width:320px}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>", "<h2>Table</h2>", _html_table(rows),
             "<h2>J&amp;F against frames/s</h2>", f"<img id='plot' src='{PLOT}' alt='J&amp;F against frames/s'>"]
    for sequence, models in videos.items():
        parts.append(f"<h2>{html.escape(sequence)}</h2><div class='videos'>"
                     + "".join(_video_cell(*model) for model in models) + "</div>")
    return "\n".join(parts + ["</body></html>"]) + "\n"


def _write_png(image: Any) -> Any:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError("OpenCV could not encode the plot as PNG")
    return lambda path: Path(path).write_bytes(encoded.tobytes())


def write_reports(folder: OutputFolder, rows: list[dict], videos: dict[str, list[tuple[str, str | None, str]]]) -> None:
    """Writes the table (``compare.csv``, ``compare.md``), the plot and the page into a started ``folder``."""
    folder.write_file(TABLE_CSV, lambda path: path.write_text(csv_text(rows), encoding="utf-8"))
    folder.write_file(TABLE_MD, lambda path: path.write_text(markdown_text(rows), encoding="utf-8"))
    folder.write_file(PLOT, _write_png(speed_accuracy_plot(plot_points(rows))))
    folder.write_file(PAGE, lambda path: path.write_text(page_html(rows, videos), encoding="utf-8"))
