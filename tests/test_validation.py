"""Validation during training: J&F on annotated sequences, logged, and the best model kept."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.common.masks import write_palette_png
from mast.data.synthetic import translating_video
from mast.models.builder import load_tracker
from mast.models.tracker import TrackerStep
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask
from mast.train.validation import Validator

from test_train import tiny_config  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    """A DAVIS-2017 root: two 8-frame 64x64 sequences with two objects, a mask on every frame."""
    root = tmp_path_factory.mktemp("davis")
    for seed, name in enumerate(("a", "b")):
        frames, masks = translating_video(num_frames=8, height=64, width=64, num_objects=2, seed=seed)
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            folder = root / "JPEGImages" / "480p" / name
            folder.mkdir(parents=True, exist_ok=True)
            image = (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{t:05d}.png"), image)
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask.numpy().astype(np.uint8))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("a\nb\n")
    return root


class Oracle:
    """Answers with the ground truth (or with background only): J&F 1 (or 0)."""

    name = "oracle"

    def __init__(self, root, right: bool = True):
        self.root, self.right = root, right

    def settings(self):
        return {}

    def start(self, frame, labels):
        self.t, self.labels = 0, int(labels.max()) + 1
        self.sequence = next(name for name in ("a", "b") if torch.equal(self._truth(name, 0), labels))

    def _truth(self, name, t):
        from mast.common.masks import read_mask

        return torch.from_numpy(read_mask(self.root / "Annotations" / "480p" / name / f"{t:05d}.png").astype(np.int64))

    def step(self, frame):
        self.t += 1
        labels = self._truth(self.sequence, self.t) if self.right else torch.zeros(frame.shape[-2:], dtype=torch.long)
        return TrackerStep(torch.nn.functional.one_hot(labels, self.labels).permute(2, 0, 1).float())


def test_scores_match_the_definition(davis):
    validator = Validator(davis, "val", 2017)
    perfect = validator.score(Oracle(davis))
    assert (perfect.J, perfect.F, perfect.JF) == (1.0, 1.0, 1.0)
    assert validator.score(Oracle(davis, right=False)).J == 0.0
    assert Validator(davis, "val", 2017, ["b"], max_frames=4).sequences[0].stems == ["00000", "00001", "00002", "00003"]


def test_validation_gives_the_numbers_mast_evaluate_gives(davis, tmp_path):
    """The same masks (the writer's own loop) and the same statistics (the evaluator's own)."""
    from mast.eval.davis import score_davis

    score = Validator(davis, "val", 2017, max_frames=None).score(load_tracker("mast", None, "quick", "cpu"))
    assert main(["propagate", "--davis", str(davis), "--preset", "quick", "--out", str(tmp_path / "results")]) == 0
    table, _ = score_davis(davis, tmp_path / "results", processes=1)
    assert 0.2 < score.JF < 1.0
    assert (score.J, score.F, score.JF) == (table["J-Mean"], table["F-Mean"], table["J&F-Mean"])


def test_bad_validation_input_is_refused_up_front(davis, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nope"):
        Validator(davis, "val", 2017, ["nope"])
    with pytest.raises(ValueError, match="3 or more"):
        Validator(davis, "val", 2017, max_frames=2)
    code = main(["pretrain", "--data", str(davis), "--out", str(tmp_path / "run"), "--validate-every", "5"])
    assert code == 2 and not (tmp_path / "run").exists()
    code = main(["pretrain", "--data", str(davis), "--out", str(tmp_path / "run"), "--validate", str(davis),
                 "--validate-sequences", "nope"])
    assert code == 2 and "error: --validate-sequences: frame folder of sequence 'nope' not found" in capsys.readouterr().err
    code = main(["pretrain", "--data", str(davis), "--out", str(tmp_path / "run"), "--validate", str(davis),
                 "--validate-every", "0"])
    assert code == 2 and "error: --validate-every: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_training_logs_validation_and_keeps_the_best_backbone(davis, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config("phases=[{name: a, mode: pairs, steps: 6, lr: 0.003, lr_milestones: []}]",
                         "validation.max_frames=5")
    run = tmp_path / "run"
    Trainer(ReconstructionTask(config, [str(davis)]), run, validator=Validator(davis, every=3, max_frames=5)).run()
    record = json.loads((run / "validation.json").read_text())
    assert [entry["step"] for entry in record["history"]] == [3, 6]
    assert set(record["history"][0]) == {"step", "best", "dot", "cosine-t0.05-k16"}
    best = max(record["history"], key=lambda entry: entry[entry["best"]]["J&F"])
    assert record["best_step"] == best["step"] and record["best_score"] == best[best["best"]]["J&F"]
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert [event.step for event in events.Scalars("val/J&F")] == [3, 6]
    # The backbone files carry the knobs that validated best: mast propagate uses them.
    knobs = {"dot": {"normalize": False}, "cosine-t0.05-k16": {"normalize": True, "temperature": 0.05, "topk": 16}}
    saved = torch.load(run / "best-backbone.pt", weights_only=True)["propagation"]
    assert saved == knobs[best["best"]]
    last = record["history"][-1]["best"]
    assert torch.load(run / "backbone.pt", weights_only=True)["propagation"] == knobs[last]


def test_training_stops_early_when_validation_stops_improving(davis, tmp_path):
    from mast.train.validation import Score

    config = tiny_config("phases=[{name: a, mode: pairs, steps: 12, lr: 0.003, lr_milestones: []}]")
    validator = Validator(davis, every=2, max_frames=4, patience=2, min_delta=0.01)
    per_validation, calls = [0.5, 0.505, 0.6, 0.6, 0.605, 0.9], []

    def score(tracker):  # every candidate of a validation scores the same
        calls.append(tracker)
        value = per_validation[(len(calls) - 1) // len(config.validation.candidates)]
        return Score(value, value)

    validator.score = score
    run = tmp_path / "run"
    summary = Trainer(ReconstructionTask(config, [str(davis)]), run, validator=validator).run()
    record = json.loads((run / "validation.json").read_text())
    # 0.505 gains less than min_delta over 0.5: no new best; 0.6 is one; 0.6 and 0.605 after it are not,
    # and the second of them in a row ends the run.
    assert [entry["step"] for entry in record["history"]] == [2, 4, 6, 8, 10]
    assert summary["steps"] == 10 and (record["best_step"], record["best_score"]) == (6, 0.6)
    assert (run / "backbone.pt").is_file() and (run / "best-backbone.pt").is_file()


def test_bad_patience_is_refused(davis):
    with pytest.raises(ValueError, match="patience"):
        Validator(davis, "val", 2017, patience=0)
    with pytest.raises(ValueError, match="patience"):
        tiny_config("validation.patience=0")


def _damaged_copy(davis, tmp_path, damage):
    """A copy of ``davis`` with ``damage(root)`` done to it; returns ``(root, the damaged file)``."""
    import shutil

    root = tmp_path / "davis"
    shutil.copytree(davis, root)
    return root, damage(root)


def _empty_first_mask(root):
    path = root / "Annotations" / "480p" / "b" / "00000.png"
    write_palette_png(path, np.zeros((64, 64), np.uint8))
    return path


def _truncated_frame(root):
    path = root / "JPEGImages" / "480p" / "b" / "00004.png"
    path.write_bytes(path.read_bytes()[:300])
    return path


def _small_mask(root):
    path = root / "Annotations" / "480p" / "a" / "00003.png"
    write_palette_png(path, np.ones((32, 32), np.uint8))
    return path


def _small_frame_and_mask(root):
    """A frame and its mask of another size than the first frame: they agree, but cannot be tracked."""
    frame = root / "JPEGImages" / "480p" / "b" / "00002.png"
    cv2.imwrite(str(frame), cv2.resize(cv2.imread(str(frame)), (32, 32)))
    write_palette_png(root / "Annotations" / "480p" / "b" / "00002.png", np.ones((32, 32), np.uint8))
    return frame.parent


@pytest.mark.parametrize("damage, message", [(_empty_first_mask, "holds no object"),
                                             (_truncated_frame, "truncated PNG"),
                                             (_small_mask, "mask is 32x32 but its frame is 64x64"),
                                             (_small_frame_and_mask, "frame 00002 is 32x32 but the first frame")])
def test_damaged_validation_data_is_refused_before_training(davis, tmp_path, capsys, damage, message):
    """Found when the validator is made, not at the first validation after training (nor again on resume)."""
    from mast.common.errors import ArgumentError

    root, damaged = _damaged_copy(davis, tmp_path, damage)
    with pytest.raises(ArgumentError, match=message) as caught:
        Validator(root, "val", 2017, max_frames=5)
    assert caught.value.argument == "root" and str(damaged) in caught.value.message
    Validator(root, "val", 2017, ["b" if damage is _small_mask else "a"], max_frames=5)  # the other one is fine
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(davis), "--out", str(run), "--validate", str(root)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: --validate: {caught.value.message}")
    assert not run.exists()


def test_frames_past_max_frames_are_neither_checked_nor_read(davis, tmp_path):
    root, _ = _damaged_copy(davis, tmp_path, lambda root: _truncated_frame(root))
    validator = Validator(root, "val", 2017, ["b"], max_frames=4)  # frame 4 is the fifth
    assert validator.score(Oracle(root)).JF == 1.0
