"""The overlay page of ``mast visualize`` and the page of ``mast compare`` in a real browser:
headless Chromium loads each without errors, shows its images (and the comparison's table) and
plays every video (a duration, then time advancing).

Chromium is not a dependency: without a ``chromium`` (``chromium-browser``, ``google-chrome``)
binary on PATH the test skips (``scripts/setup_browser.sh`` installs Debian's package).
The measuring script goes into a copy of the page beside it, never into the page itself;
``--dump-dom`` prints the DOM once the page is idle, with the measurements written into it.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mast.common.masks import write_palette_png
from mast.eval.visualize import visualize
from tests.test_compare import SEQUENCES, run_compare, table, workspace  # noqa: F401 (workspace: a fixture)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason=f"no headless browser on PATH ({', '.join(BROWSERS)}); "
                                                         f"scripts/setup_browser.sh installs Debian's chromium")

# Runs first in the copy: records every error (uncaught exceptions, resources that fail to load,
# console errors), then plays each video and writes what it measured into <pre id=probe>: the videos,
# whether each image decoded (naturalWidth > 0), each table's rows and rendered height, the errors.
PROBE = """<script>
const errors = [], failed = new Set();
addEventListener('error', e => {
  errors.push(e.message || 'failed to load ' + (e.target.currentSrc || e.target.src));
  if (e.target.closest) failed.add(e.target.closest('video'));  // a <source> fails, not its <video>
}, true);
addEventListener('unhandledrejection', e => errors.push(String(e.reason)));
for (const level of ['error', 'warn']) {
  const log = console[level];
  console[level] = (...args) => { errors.push(level + ': ' + args.join(' ')); log(...args); };
}
const loaded = new Promise(resolve => addEventListener('load', resolve));
const measure = video => new Promise(resolve => {
  const report = how => resolve({how, duration: video.duration, readyState: video.readyState,
                                 error: video.error && video.error.code, currentTime: video.currentTime});
  setTimeout(() => report('timed out'), 5000);
  if (video.error || failed.has(video)) return report('error');  // failed before we looked
  video.addEventListener('error', () => report('error'), true);
  const play = () => video.play().then(() => setTimeout(() => report('played'), 400), e => report('refused: ' + e));
  video.readyState >= 2 ? play() : video.addEventListener('loadeddata', play);
});
addEventListener('DOMContentLoaded', async () => {
  const videos = await Promise.all([...document.querySelectorAll('video')].map(measure));
  await loaded;
  const images = [...document.images].map(image => image.complete && image.naturalWidth > 0);
  const tables = [...document.querySelectorAll('table')].map(table => ({rows: table.rows.length,
                                                                        height: table.offsetHeight}));
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({videos, images, tables, errors});
  document.body.append(probe);
});
</script>
"""


def _overlay_page(root: Path) -> Path:
    """``mast visualize``'s page of two generated sequences (6 and 9 frames at 12 fps)."""
    items = []
    for name, count in (("seq one", 6), ("b", 9)):
        frames = [(f"{t:05d}", torch.rand(3, 48, 64)) for t in range(count)]
        for stem, _ in frames:
            ids = np.zeros((48, 64), np.uint8)
            ids[10:30, 5 + int(stem):25 + int(stem)] = 1
            write_palette_png(root / "results" / name / f"{stem}.png", ids)
        items.append((name, iter(frames)))
    return visualize(items, root / "results", root / "results" / "overlays")


def _measured(page: Path, scratch: Path) -> dict:
    """Loads a measuring copy of ``page`` (in ``scratch``, resolving links against ``page``'s folder)
    in headless Chromium; returns what the probe wrote."""
    text = page.read_text()
    head = text.index("<title>")
    copy = scratch / "probe.html"
    copy.write_text(f"{text[:head]}<base href='{page.parent.as_uri()}/'>{PROBE}{text[head:]}")
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run",
               f"--user-data-dir={scratch / 'profile'}", "--autoplay-policy=no-user-gesture-required",
               "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page never finished loading; chromium exited {done.returncode}:\n{done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_overlay_page_plays_in_chromium(tmp_path):
    page = _overlay_page(tmp_path)
    scratch = tmp_path / "browser"
    scratch.mkdir()
    measured = _measured(page, scratch)
    assert measured["errors"] == []
    assert len(measured["videos"]) == 2 and measured["images"] and all(measured["images"])
    for video, frames in zip(measured["videos"], (6, 9)):
        assert video["how"] == "played" and video["error"] is None, video
        assert video["duration"] == pytest.approx(frames / 12, abs=0.1), video
        assert video["currentTime"] > 0 and video["readyState"] >= 2, video
    assert not any(scratch.glob("*.webm")) and "probe" not in page.read_text()  # the page itself untouched


def test_compare_page_shows_the_table_and_plot_and_plays_in_chromium(workspace, one_thread):
    """``mast compare``'s ``DIR/index.html`` for two models on two 5-frame sequences."""
    assert run_compare(workspace) == 0
    page = workspace / "out" / "index.html"
    scratch = workspace / "browser"
    scratch.mkdir()
    measured = _measured(page, scratch)
    assert measured["errors"] == []
    assert measured["images"] == [True]  # the plot, decoded
    [shown] = measured["tables"]  # its head, then a row per model and sequence and per model
    assert shown["rows"] == 1 + len(table(workspace / "out")) == 1 + 2 * (len(SEQUENCES) + 1)
    assert shown["height"] > 0
    assert len(measured["videos"]) == 2 * len(SEQUENCES)
    for video in measured["videos"]:
        assert video["how"] == "played" and video["error"] is None, video
        assert video["duration"] == pytest.approx(5 / 12, abs=0.1), video  # 5 frames at 12 fps
        assert video["currentTime"] > 0 and video["readyState"] >= 2, video
    assert "probe" not in page.read_text()
