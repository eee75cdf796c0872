"""The learning curve of a validated training run: ``OUT/validation.png`` after every validation,
drawn from ``validation.json``, the best validation marked, recorded in ``run.json``."""
from __future__ import annotations

import json

import cv2
import numpy as np

from mast.eval.line_plot import LINE_COLOURS
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask
from mast.train.validation import Score, Validator, learning_curve

from test_train import tiny_config  # noqa: E402  (tests/ is on sys.path under pytest)
from test_validation import davis  # noqa: F401  (the module's DAVIS fixture)


def colour_pixels(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(image == np.array(colour, np.uint8), axis=-1).sum())


def test_one_line_per_candidate_and_a_dot_for_the_best():
    history = [{"step": 10, "best": "dot", "dot": {"J&F": 0.3}, "cosine": {"J&F": 0.2}},
               {"step": 20, "best": "cosine", "dot": {"J&F": 0.4}, "cosine": {"J&F": 0.6}}]
    image = learning_curve(history, 20, 0.6, ["a", "b"])
    assert image.shape == (420, 900, 3) and image.dtype == np.uint8
    for colour in LINE_COLOURS[:3]:  # dot, cosine, then the best's own dot
        assert colour_pixels(image, colour) > 20
    one_candidate = learning_curve([{k: v for k, v in e.items() if k != "cosine"} for e in history], 20, 0.4, ["a"])
    assert colour_pixels(one_candidate, LINE_COLOURS[0]) > 20 and colour_pixels(one_candidate, LINE_COLOURS[2]) == 0
    moved = learning_curve(history, 10, 0.3, ["a", "b"])  # the best marked elsewhere draws another picture
    assert not np.array_equal(moved, image)
    barred = learning_curve(history, 20, 0.6, ["a", "b"], zero_motion=0.25)  # the zero-motion bar: a 4th line
    assert colour_pixels(image, LINE_COLOURS[3]) == 0 and colour_pixels(barred, LINE_COLOURS[3]) > 200


def test_a_validated_run_writes_its_curve_after_every_validation_and_records_it(davis, tmp_path):  # noqa: F811
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 4, lr: 0.003, lr_milestones: []}]")
    validator = Validator(davis, every=2, max_frames=4)
    curves, calls, per_validation = [], [], [0.5, 0.7]
    record_validation = Trainer._record_validation

    def record_and_read_back(trainer, found):  # the picture on disk after each validation
        record_validation(trainer, found)
        curves.append(cv2.imread(str(tmp_path / "run" / "validation.png")))

    def score(tracker):  # every candidate of a validation scores the same
        calls.append(tracker)
        value = per_validation[(len(calls) - 1) // len(config.validation.candidates)]
        return Score(value, value)

    validator.score = score
    trainer = Trainer(ReconstructionTask(config, [str(davis)]), tmp_path / "run", validator=validator)
    trainer._record_validation = lambda found: record_and_read_back(trainer, found)
    trainer.run()
    record = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert [entry["step"] for entry in record["history"]] == [2, 4] and record["best_step"] == 4
    assert len(curves) == 2 and all(curve is not None for curve in curves)
    expected = learning_curve(record["history"], 4, record["best_score"], ["a", "b"])
    np.testing.assert_array_equal(curves[-1], expected)
    assert not np.array_equal(curves[0], curves[-1])  # redrawn, not written once
    files = json.loads((tmp_path / "run" / "run.json").read_text())["files"]
    assert "validation.png" in files and "validation.json" in files
    assert not [path.name for path in (tmp_path / "run").iterdir() if ".tmp" in path.name]
