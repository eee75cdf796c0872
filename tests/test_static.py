"""Model ``static`` (zero motion): the first-frame mask on every frame, through load_tracker, mast propagate
and mast compare, where its row says supervision "none"."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.common.errors import ArgumentError
from mast.common.masks import read_mask
from mast.models.builder import load_tracker
from mast.models.tracker import track
from tests.test_compare import SEQUENCES, table, write_davis


def test_every_step_repeats_the_first_labels_whatever_the_frame():
    labels = torch.zeros(6, 8, dtype=torch.long)
    labels[1:3, 1:4], labels[4:, 5:] = 1, 2
    frames = [torch.rand(3, 6, 8) for _ in range(4)]
    steps = list(track(load_tracker("static", device="cpu"), frames, labels))
    assert len(steps) == 3
    for step in steps:
        assert step.probabilities.shape == (3, 6, 8) and torch.equal(step.labels(), labels)
        assert step.boxes is None


def test_a_frame_of_another_size_and_a_step_before_start_are_errors():
    tracker = load_tracker("static", device="cpu")
    with pytest.raises(RuntimeError, match="before start"):
        tracker.step(torch.rand(3, 6, 8))
    tracker.start(torch.rand(3, 6, 8), torch.ones(6, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="frame is 5x8"):
        tracker.step(torch.rand(3, 5, 8))


@pytest.mark.parametrize("arguments, argument", [
    ({"checkpoint": "model.pt"}, "checkpoint"), ({"preset": "quick"}, "preset"), ({"window": 9}, "window")])
def test_a_checkpoint_preset_or_setting_is_refused_by_name(tmp_path, arguments, argument):
    if "checkpoint" in arguments:
        (tmp_path / "model.pt").write_bytes(b"x")
        arguments = {"checkpoint": tmp_path / "model.pt"}
    with pytest.raises(ArgumentError) as error:
        load_tracker("static", device="cpu", **arguments)
    assert error.value.argument == argument and "model static" in str(error.value)


def test_propagate_writes_the_first_mask_on_every_frame(tmp_path, one_thread):
    davis = write_davis(tmp_path / "DAVIS")
    assert main(["propagate", "--model", "static", "--davis", str(davis), "--out", str(tmp_path / "out"),
                 "--device", "cpu"]) == 0
    for name in SEQUENCES:
        first = read_mask(davis / "Annotations" / "480p" / name / "00000.png")
        written = sorted((tmp_path / "out" / name).glob("*.png"))
        assert len(written) == 5 and first.any()
        assert all(np.array_equal(read_mask(path), first) for path in written)


def test_compare_gives_it_a_row_with_frames_per_second_and_no_supervision(tmp_path, one_thread):
    davis = write_davis(tmp_path / "DAVIS")
    (tmp_path / "models.yaml").write_text("- name: zero-motion\n  model: static\n"
                                          "- name: pixels\n  model: mast\n  preset: quick\n")
    assert main(["compare", "--models", str(tmp_path / "models.yaml"), "--davis", str(davis),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    rows = table(tmp_path / "out")
    assert rows["zero-motion", "(all)"]["supervision"] == "none"
    assert rows["zero-motion", "(all)"]["status"] == "ok" and float(rows["zero-motion", "(all)"]["Frames/s"]) > 0
    # the objects move: repeating the first mask scores below tracking them with pixels
    assert float(rows["zero-motion", "(all)"]["J&F-Mean"]) < float(rows["pixels", "(all)"]["J&F-Mean"])
