"""`mast compare`: two models on a synthetic DAVIS set, the table against `mast evaluate`, the plot,
the page, failed rows, reruns and a bad models file."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import mast.eval.compare as compare
from mast.api import evaluate
from mast.cli.main import main
from mast.common.masks import write_palette_png
from mast.data.synthetic import translating_video
from mast.eval.compare_models import ModelEntry, supervision
from mast.eval.compare_plot import Axes, data_ranges, x_ticks, y_ticks
from mast.models.backbone import BackboneConfig, ResNetBackbone
from tests.test_propagate import write_frames

SEQUENCES = ("alpha", "beta")
SCORES = ("J&F-Mean", "J-Mean", "F-Mean", "J-Decay")


def write_davis(root: Path) -> Path:
    """A DAVIS-2017 folder: two sequences of 5 frames, 48x48, two objects, every frame annotated."""
    for seed, name in enumerate(SEQUENCES):
        frames, masks = translating_video(num_frames=5, height=48, width=48, num_objects=2, seed=seed)
        write_frames(root / "JPEGImages" / "480p" / name, frames)
        for t, mask in enumerate(masks):
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask.numpy().astype(np.uint8))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(SEQUENCES) + "\n")
    return root


@pytest.fixture
def workspace(tmp_path):
    """DAVIS/, a tiny random backbone and models.yaml: the pixel baseline and that backbone."""
    write_davis(tmp_path / "DAVIS")
    torch.manual_seed(0)
    ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)).save(tmp_path / "tiny.pt")
    (tmp_path / "models.yaml").write_text("- name: pixels\n  model: mast\n  preset: quick\n"
                                          "- name: tiny\n  model: mast\n  checkpoint: tiny.pt\n  preset: quick\n"
                                          "  window: 9\n")
    return tmp_path


def run_compare(root: Path, *extra: str) -> int:
    return main(["compare", "--models", str(root / "models.yaml"), "--davis", str(root / "DAVIS"),
                 "--out", str(root / "out"), "--device", "cpu", *extra])


def table(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "compare.csv", newline="") as handle:
        return {(row["model"], row["sequence"]): row for row in csv.DictReader(handle)}


def test_two_models_give_evaluates_numbers_a_plot_and_a_page(workspace, one_thread):
    assert run_compare(workspace) == 0
    out = workspace / "out"
    rows = table(out)
    assert set(rows) == {(m, s) for m in ("pixels", "tiny") for s in (*SEQUENCES, "(all)")}
    for name in ("pixels", "tiny"):
        record = json.loads((out / name / "run.json").read_text())  # a results folder as mast propagate makes
        assert record["command"] == "propagate" and record["history"][-1]["argv"][:2] == ["mast", "compare"]
        assert main(["evaluate", "--davis", str(workspace / "DAVIS"), "--results", str(out / name),
                     "--processes", "1"]) == 0
        with open(out / name / "global_results-val.csv", newline="") as handle:
            overall = next(csv.DictReader(handle))
        assert {c: rows[name, "(all)"][c] for c in SCORES} == {c: overall[c] for c in SCORES}
        for sequence in SEQUENCES:
            scores, _ = evaluate(out / name, workspace / "DAVIS", sequences=[sequence], processes=1)
            assert [float(rows[name, sequence][c]) for c in SCORES] == [scores[c] for c in SCORES]
            assert rows[name, sequence]["status"] == "ok" and rows[name, sequence]["Frames"] == "4"
            assert float(rows[name, sequence]["Frames/s"]) > 0
        assert rows[name, "(all)"]["Frames"] == "8"
        assert rows[name, "(all)"]["Memory-Measured"] == "CPU peak RSS growth"
    assert rows["pixels", "(all)"]["supervision"] == "none (pixels)"
    assert rows["tiny", "(all)"]["supervision"] == "self-supervised"
    assert rows["pixels", "alpha"]["J&F-Mean"] != rows["tiny", "alpha"]["J&F-Mean"]  # two different models
    markdown = (out / "compare.md").read_text()
    assert markdown.count("\n") == 2 + len(rows) and "| tiny | (all) | self-supervised | ok |" in markdown

    plot = cv2.imread(str(out / "compare.png"))
    assert plot.shape == (600, 900, 3) and (plot != 255).any()
    page = (out / "index.html").read_text()
    links = re.findall(r"src='([^']+)'", page)
    assert "compare.png" in links and sum(link.endswith((".mp4", ".webm")) for link in links) == 4
    assert all((out / link).is_file() for link in links) and "http" not in page
    assert all(f"<h2>{sequence}</h2>" in page for sequence in SEQUENCES) and "<table>" in page


def test_a_failing_model_is_a_failed_row_and_a_rerun_reuses_the_rest(workspace, monkeypatch, one_thread):
    real = compare.propagate_to_folder
    calls, broken = [], [True]

    def fails_on_beta(item, tracker, folder, **kwargs):
        calls.append(f"{folder.path.name}/{item.name}")
        if broken[0] and folder.path.name == "tiny" and item.name == "beta":
            raise RuntimeError("out of memory\nsecond line")
        return real(item, tracker, folder, **kwargs)

    monkeypatch.setattr(compare, "propagate_to_folder", fails_on_beta)
    assert run_compare(workspace) == 0
    rows, out = table(workspace / "out"), workspace / "out"
    assert rows["tiny", "beta"]["status"] == "failed" and rows["tiny", "beta"]["error"] == "RuntimeError: out of memory"
    assert rows["tiny", "(all)"]["status"] == "partial (1 of 2 sequences)" and rows["tiny", "(all)"]["Frames"] == "4"
    assert rows["tiny", "alpha"]["status"] == rows["pixels", "beta"]["status"] == rows["pixels", "(all)"]["status"] == "ok"
    assert not (out / "tiny" / "beta").exists() and "failed: RuntimeError: out of memory" in (out / "index.html").read_text()
    first = rows["pixels", "alpha"]

    calls.clear()
    broken[0] = False
    assert run_compare(workspace) == 0
    assert calls == ["tiny/beta"]  # every finished row is reused, the failed one runs again (and passes now)
    rows = table(out)
    assert rows["tiny", "(all)"]["status"] == "ok" and rows["pixels", "alpha"] == first

    models = (workspace / "models.yaml").read_text().replace("window: 9", "window: 7")
    (workspace / "models.yaml").write_text(models)
    calls.clear()
    assert run_compare(workspace) == 2 and calls == []  # other settings of tiny: refused without overwrite
    assert run_compare(workspace, "--overwrite") == 0
    assert calls == ["tiny/alpha", "tiny/beta"] and table(out)["pixels", "alpha"] == first


def test_a_changed_frame_is_redone_for_every_model_by_the_writers_rule(workspace, monkeypatch, one_thread):
    """compare reuses a row only while the writer counts its sequence finished (same input), and only
    a row made from that input: a run stopped after the writer but before the row was saved redoes it."""
    assert run_compare(workspace) == 0
    out, before = workspace / "out", table(workspace / "out")
    made_from = json.loads((out / "compare.json").read_text())["models"]
    frame = workspace / "DAVIS" / "JPEGImages" / "480p" / "alpha" / "00002.jpg"
    cv2.imwrite(str(frame), 255 - cv2.imread(str(frame)))  # another picture: another size and time
    real_propagate, real_pictures, calls = compare.propagate_to_folder, compare.write_sequence_pictures, []

    def recorded(item, tracker, folder, **kwargs):
        calls.append(f"{folder.path.name}/{item.name}")
        return real_propagate(item, tracker, folder, **kwargs)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the writer finished pixels/alpha, before its row is saved

    monkeypatch.setattr(compare, "propagate_to_folder", recorded)
    monkeypatch.setattr(compare, "write_sequence_pictures", stopped)
    assert run_compare(workspace) == 130  # Ctrl-C: one line, status 130 (mast.cli.main)
    assert calls == ["pixels/alpha"]
    monkeypatch.setattr(compare, "write_sequence_pictures", real_pictures)
    calls.clear()
    assert run_compare(workspace) == 0
    assert calls == ["pixels/alpha", "tiny/alpha"]  # every model redoes alpha; beta is reused
    after, rows = table(out), json.loads((out / "compare.json").read_text())["models"]
    assert after["pixels", "alpha"]["J&F-Mean"] != before["pixels", "alpha"]["J&F-Mean"]  # scored anew
    for model in ("pixels", "tiny"):
        now, then = rows[model]["sequences"], made_from[model]["sequences"]
        assert after[model, "beta"] == before[model, "beta"] and now["beta"] == then["beta"]
        entry = json.loads((out / model / "run.json").read_text())["entries"]["alpha"]  # the writer's record
        assert entry["input"] == now["alpha"]["input"] != then["alpha"]["input"]
    calls.clear()
    assert run_compare(workspace) == 0 and calls == []  # nothing changed: every row reused


def test_a_frame_that_does_not_decode_is_refused_before_anything_is_written(workspace, capsys):
    frame = workspace / "DAVIS" / "JPEGImages" / "480p" / "beta" / "00003.jpg"
    frame.write_bytes(frame.read_bytes()[:200])
    assert run_compare(workspace) == 2
    error = capsys.readouterr().err
    assert error.startswith("mast compare: error: ") and str(frame) in error and error.count("\n") == 1
    assert not (workspace / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("name: pixels\nmodel: mast\n", "must be a YAML list of models"),
    ("- model: mast\n", "entry 1: has no name"),
    ("- name: ../up\n  model: mast\n", "name '../up' is not a plain folder name"),
    ("- name: index.html\n  model: mast\n", "name 'index.html' is a file the comparison writes"),
    ("- name: a\n  model: mast\n- name: a\n  model: mast\n", "entry 2 (a): the name 'a' is taken by entry 1 (a)"),
    ("- name: a\n  model: detectron\n", "entry 1 (a): unknown model 'detectron'; choose from mast"),
    ("- name: a\n  model: mast\n  checkpoint: absent.pt\n", "entry 1 (a): checkpoint"),
    ("- name: a\n  model: mast\n  bogus: 3\n", "entry 1 (a): bogus: not a propagation setting"),
    ("- name: a\n  model: siammask\n", "entry 1 (a): checkpoint: model siammask needs the model.pt"),
    ("- [1, 2\n", "is not readable YAML"),
])
def test_a_bad_models_file_is_one_line_and_nothing_is_written(workspace, capsys, text, message):
    (workspace / "models.yaml").write_text(text)
    assert run_compare(workspace) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"mast compare: error: --models: {workspace / 'models.yaml'}") and message in error
    assert error.count("\n") == 1 and not (workspace / "out").exists()


def test_help_shows_an_example_models_file(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--help"])
    assert stopped.value.code == 0 and "- name: pixels" in capsys.readouterr().out


def test_supervision_comes_from_the_model_and_the_checkpoint(tmp_path):
    torchvision = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(1), "bn1.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1)},
               torchvision)
    ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)).save(tmp_path / "ours.pt")

    def entry(model, checkpoint=None, override=None):
        return ModelEntry("x", model, checkpoint, None, "models.yaml: entry 1 (x)", {}, override)

    assert supervision(entry("mast")) == "none (pixels)"
    assert supervision(entry("mast", tmp_path / "ours.pt")) == "self-supervised"
    assert supervision(entry("mast", torchvision)) == "supervised"  # ImageNet labels
    assert supervision(entry("siammask", tmp_path / "any.pt")) == "supervised"
    assert supervision(entry("mast", tmp_path / "ours.pt", "supervised")) == "supervised"


def test_plot_axes_on_hand_cases():
    assert data_ranges([]) == ((0, 2), (0.0, 1.0))
    assert [fps for fps, labelled in x_ticks((0, 2)) if labelled] == [1, 10, 100]
    assert [fps for fps, labelled in x_ticks((1, 2)) if labelled] == [10, 20, 50, 100]  # one decade: 2 and 5 too
    assert y_ticks((0.4, 0.7)) == [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    axes = Axes((100, 50, 700, 450), (0, 2), (0.0, 1.0))
    assert (axes.x(1), axes.x(10), axes.x(100)) == (100, 400, 700)  # log scale: decades equally spaced
    assert (axes.y(0.0), axes.y(0.5), axes.y(1.0)) == (450, 250, 50)
