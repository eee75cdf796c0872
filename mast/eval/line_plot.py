"""Line charts drawn with OpenCV (no plotting dependency): learning curves, mask areas.

One chart is a few named series of ``(x, y)`` points on linear axes, with a
grid, labelled ticks and a legend, returned as a BGR image for ``cv2.imwrite``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from mast.eval.compare_plot import GRID, INK, draw_text, draw_vertical_text

#: BGR line colours in order (matplotlib's tab10: blue, orange, green, red, purple, brown, pink, grey, olive, cyan).
LINE_COLOURS = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
                (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23))
#: Margins around the plotting area: left, top, right, bottom (pixels).
MARGINS = (80, 50, 30, 60)

Series = tuple[Sequence[float], Sequence[float]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (steps of 1, 2 or 5 times a power of ten) covering ``[low, high]``."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int(math.ceil((high - first) / step)) + 1)]


def _tick_label(value: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{digits}f}"


def line_plot(series: dict[str, Series], title: str, x_label: str, y_label: str,
              size: tuple[int, int] = (900, 420), y_range: tuple[float, float] | None = None) -> np.ndarray:
    """``(height, width, 3)`` uint8 BGR: each named series as a line with dots, on shared axes.

    Args:
        series: name -> ``(xs, ys)``, equally long; an empty series is listed in the legend only.
        y_range: the y axis's span (default: the data's, rounded out to ticks).
    """
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    xs = [x for x_values, _ in series.values() for x in x_values] or [0.0, 1.0]
    ys = [y for _, y_values in series.values() for y in y_values] or [0.0, 1.0]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
    left, top, right, bottom = MARGINS[0], MARGINS[1], width - MARGINS[2], height - MARGINS[3]

    def at(x: float, y: float) -> tuple[int, int]:
        u = (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])
        v = (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])
        return round(left + u * (right - left)), round(bottom - v * (bottom - top))

    for x in x_ticks:
        cv2.line(image, (at(x, 0)[0], top), (at(x, 0)[0], bottom), GRID, 1)
        draw_text(image, _tick_label(x, x_ticks[1] - x_ticks[0]), (at(x, 0)[0], bottom + 22), anchor="centre")
    for y in y_ticks:
        cv2.line(image, (left, at(0, y)[1]), (right, at(0, y)[1]), GRID, 1)
        draw_text(image, _tick_label(y, y_ticks[1] - y_ticks[0]), (left - 10, at(0, y)[1] + 5), anchor="right")
    cv2.rectangle(image, (left, top), (right, bottom), INK, 1)
    draw_text(image, title, (width // 2, 32), 0.65, anchor="centre", thickness=2)
    draw_text(image, x_label, ((left + right) // 2, bottom + 48), 0.55, anchor="centre")
    draw_vertical_text(image, y_label, (left - 58, (top + bottom) // 2))
    for index, (name, (x_values, y_values)) in enumerate(series.items()):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)]
        points = np.array([at(x, y) for x, y in zip(x_values, y_values)], np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [points], False, colour, 2, cv2.LINE_AA)
        for point in points[:, 0]:
            cv2.circle(image, tuple(int(c) for c in point), 3, colour, -1, cv2.LINE_AA)
        legend_y = top + 18 + index * 20
        cv2.line(image, (left + 12, legend_y - 5), (left + 36, legend_y - 5), colour, 3, cv2.LINE_AA)
        draw_text(image, name, (left + 44, legend_y), 0.45)
    return image
