"""The speed/accuracy plot of ``mast compare``, drawn with OpenCV (no plotting dependency).

As Figure 4 of the SiamMask paper (Wang et al., CVPR 2019): J&F-Mean against
frames/s on a logarithmic x axis, one labelled point per model, coloured by the
supervision it was trained with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: BGR colours of the supervisions (matplotlib's tab10 blue, orange, grey: familiar and
#: told apart by the colour-blind); any other supervision is drawn in green.
COLOURS = {"self-supervised": (180, 119, 31), "supervised": (14, 127, 255), "none (pixels)": (127, 127, 127)}
OTHER_COLOUR = (44, 160, 44)
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, GRID = (40, 40, 40), (225, 225, 225)
#: Margins around the plotting area: left, top, right, bottom (pixels).
MARGINS = (90, 60, 40, 80)


@dataclass(frozen=True)
class Point:
    """One model: its name, frames/s (> 0), J&F-Mean and supervision."""

    name: str
    fps: float
    score: float
    supervision: str


@dataclass(frozen=True)
class Axes:
    """The plotting area ``(left, top, right, bottom)`` in pixels and its data ranges
    (``decades``: log10 of the frames/s range; ``scores``: the J&F range)."""

    box: tuple[int, int, int, int]
    decades: tuple[int, int]
    scores: tuple[float, float]

    def x(self, fps: float) -> int:
        left, _, right, _ = self.box
        low, high = self.decades
        return round(left + (math.log10(fps) - low) / (high - low) * (right - left))

    def y(self, score: float) -> int:
        _, top, _, bottom = self.box
        low, high = self.scores
        return round(bottom - (score - low) / (high - low) * (bottom - top))


def data_ranges(points: list[Point]) -> tuple[tuple[int, int], tuple[float, float]]:
    """Whole decades around the frames/s, and a J&F range in tenths around the scores (0..1 without points)."""
    if not points:
        return (0, 2), (0.0, 1.0)
    logs = [math.log10(p.fps) for p in points]
    low, high = math.floor(min(logs)), math.ceil(max(logs))
    scores = [p.score for p in points]
    bottom = max(0.0, math.floor(min(scores) * 10 - 1) / 10)
    top = min(1.0, math.ceil(max(scores) * 10 + 1) / 10)
    if top - bottom < 0.3:  # a narrow range would exaggerate small differences
        bottom, top = max(0.0, top - 0.3), max(top, 0.3)
    return (low, high if high > low else low + 1), (bottom, top)


def x_ticks(decades: tuple[int, int]) -> list[tuple[float, bool]]:
    """``(frames/s, labelled)`` ticks: every 1..9 x 10^k, labelled at the decades (and at 2 and 5
    when the axis spans one decade, so that it has more than two labels)."""
    low, high = decades
    ticks = [(m * 10.0**k, m == 1 or (high - low == 1 and m in (2, 5))) for k in range(low, high) for m in range(1, 10)]
    return ticks + [(10.0**high, True)]


def y_ticks(scores: tuple[float, float]) -> list[float]:
    """Every 0.1 (0.05 on a short axis) from the bottom to the top of the J&F range."""
    step = 0.05 if scores[1] - scores[0] <= 0.3 + 1e-9 else 0.1
    count = round((scores[1] - scores[0]) / step)
    return [round(scores[0] + i * step, 4) for i in range(count + 1)]


def _tick_label(value: float) -> str:
    return f"{value:g}" if value >= 0.01 else f"{value:.0e}"


def draw_text(image: np.ndarray, text: str, at: tuple[int, int], scale: float = 0.5, colour=INK,
          anchor: str = "left", thickness: int = 1) -> None:
    """Writes ``text`` with its baseline at ``at``, anchored left, centre or right."""
    (width, _), _ = cv2.getTextSize(text, FONT, scale, thickness)
    shift = {"left": 0, "centre": width // 2, "right": width}[anchor]
    cv2.putText(image, text, (at[0] - shift, at[1]), FONT, scale, colour, thickness, cv2.LINE_AA)


def draw_vertical_text(image: np.ndarray, text: str, centre: tuple[int, int], scale: float = 0.55) -> None:
    """Writes ``text`` rotated a quarter turn anticlockwise, centred on ``centre``."""
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    strip = np.full((height + baseline + 4, width + 4, 3), 255, np.uint8)
    cv2.putText(strip, text, (2, height + 2), FONT, scale, INK, 1, cv2.LINE_AA)
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top, left = centre[1] - strip.shape[0] // 2, centre[0] - strip.shape[1] // 2
    image[top:top + strip.shape[0], left:left + strip.shape[1]] = np.minimum(
        image[top:top + strip.shape[0], left:left + strip.shape[1]], strip)


def _draw_axes(image: np.ndarray, axes: Axes) -> None:
    """Grid, frame, ticks, tick labels and axis labels."""
    left, top, right, bottom = axes.box
    for fps, labelled in x_ticks(axes.decades):
        x = axes.x(fps)
        cv2.line(image, (x, top), (x, bottom), GRID if labelled else (242, 242, 242), 1)
        cv2.line(image, (x, bottom), (x, bottom + (7 if labelled else 4)), INK, 1)
        if labelled:
            draw_text(image, _tick_label(fps), (x, bottom + 24), anchor="centre")
    for score in y_ticks(axes.scores):
        y = axes.y(score)
        cv2.line(image, (left, y), (right, y), GRID, 1)
        cv2.line(image, (left - 7, y), (left, y), INK, 1)
        draw_text(image, f"{score:.2f}", (left - 12, y + 5), anchor="right")
    cv2.rectangle(image, (left, top), (right, bottom), INK, 1)
    draw_text(image, "frames/s (log scale)", ((left + right) // 2, bottom + 56), 0.55, anchor="centre")
    draw_vertical_text(image, "J&F-Mean", (left - 66, (top + bottom) // 2))


def _draw_points(image: np.ndarray, axes: Axes, points: list[Point]) -> None:
    """A filled circle per model, its name beside it (on the left near the right edge)."""
    for point in points:
        centre = (axes.x(point.fps), axes.y(point.score))
        colour = COLOURS.get(point.supervision, OTHER_COLOUR)
        cv2.circle(image, centre, 7, colour, -1, cv2.LINE_AA)
        cv2.circle(image, centre, 7, INK, 1, cv2.LINE_AA)
        (width, _), _ = cv2.getTextSize(point.name, FONT, 0.5, 1)
        on_left = centre[0] + 12 + width > axes.box[2]
        draw_text(image, point.name, (centre[0] + (-12 if on_left else 12), centre[1] - 8),
              anchor="right" if on_left else "left")


def _draw_legend(image: np.ndarray, axes: Axes, supervisions: list[str]) -> None:
    """The supervisions drawn, in the top-left corner of the plotting area."""
    left, top = axes.box[0] + 12, axes.box[1] + 12
    for index, supervision in enumerate(supervisions):
        y = top + 10 + index * 22
        cv2.circle(image, (left + 8, y), 6, COLOURS.get(supervision, OTHER_COLOUR), -1, cv2.LINE_AA)
        draw_text(image, supervision, (left + 22, y + 5), 0.45)


def speed_accuracy_plot(points: list[Point], size: tuple[int, int] = (900, 600),
                        title: str = "J&F-Mean against frames/s") -> np.ndarray:
    """The plot as a ``(height, width, 3)`` uint8 BGR image of ``size = (width, height)``."""
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    decades, scores = data_ranges(points)
    left, top, right, bottom = MARGINS
    axes = Axes((left, top, width - right, height - bottom), decades, scores)
    _draw_axes(image, axes)
    draw_text(image, title, (width // 2, 36), 0.7, anchor="centre", thickness=2)
    if not points:
        draw_text(image, "no model finished a sequence", ((axes.box[0] + axes.box[2]) // 2, height // 2), 0.6,
              anchor="centre")
    _draw_points(image, axes, points)
    _draw_legend(image, axes, list(dict.fromkeys(p.supervision for p in points)))
    return image
