"""mast/eval/line_plot.py and scripts/mask_area.py: charts that put the data where the axes say."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import load_script
from mast.eval.line_plot import LINE_COLOURS, MARGINS, line_plot, nice_ticks
from test_baseline_evidence import write_davis2016


@pytest.mark.parametrize("low, high", [(0, 1), (0.13, 0.62), (0, 2500), (3, 3)])
def test_nice_ticks_cover_the_range_in_round_steps(low, high):
    ticks = nice_ticks(low, high)
    steps = np.diff(ticks)
    assert ticks[0] <= low and ticks[-1] >= high
    assert np.allclose(steps, steps[0]) and 3 <= len(ticks) <= 12
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 5))


def test_a_series_is_drawn_where_its_points_are():
    image = line_plot({"flat": ([0, 10], [5, 5])}, "t", "x", "y", size=(400, 300), y_range=(0, 10))
    left, top, right, bottom = MARGINS[0], MARGINS[1], 400 - MARGINS[2], 300 - MARGINS[3]
    middle_y = (top + bottom) // 2  # y = 5 of a 0..10 axis
    colour = np.array(LINE_COLOURS[0])
    row = np.abs(image[middle_y, left + 60:right - 10].astype(int) - colour).sum(axis=1)
    assert (row < 60).mean() > 0.9  # the line runs along y = 5 ...
    assert np.abs(image[top + 80, left + 60:right - 10].astype(int) - colour).sum(axis=1).min() > 60  # ... only there


def test_mask_area_reports_a_shrinking_mask(tmp_path):
    script = load_script("mask_area")
    davis = write_davis2016(tmp_path / "davis", ["a"])
    results = tmp_path / "results" / "a"
    results.mkdir(parents=True)
    for t, mask in enumerate(sorted((davis / "Annotations" / "480p" / "a").glob("*.png"))):
        ids = (np.array(Image.open(mask)) > 127).astype(np.uint8)
        if t >= 2:  # from frame 2 on, keep only the object's top rows: well under half its area
            rows = np.flatnonzero(ids.any(axis=1))
            ids[rows[0] + 2:] = 0
        Image.fromarray(ids).save(results / mask.name)
    out = tmp_path / "plots" / "area.png"
    assert script.main([str(results.parent), "--davis", str(davis), "--year", "2016",
                        "--sequences", "a", "--out", str(out)]) == 0
    numbers = json.loads(out.with_suffix(".json").read_text())["a"]
    assert numbers["first_frame_under_half"] == 2
    assert numbers["predicted"][:2] == numbers["truth"][:2]
    assert 0.5 < numbers["mean_area_ratio"] < 0.75
    assert cv2.imread(str(out)).shape[0] > 100


def test_mask_area_names_a_missing_result(tmp_path, capsys):
    script = load_script("mask_area")
    davis = write_davis2016(tmp_path / "davis", ["a"])
    (tmp_path / "results" / "a").mkdir(parents=True)
    assert script.main([str(tmp_path / "results"), "--davis", str(davis), "--year", "2016",
                        "--sequences", "a", "--out", str(tmp_path / "area.png")]) == 2
    assert "no result for frame 00000 of a" in capsys.readouterr().err
    assert not (tmp_path / "area.png").exists()
