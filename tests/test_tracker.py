"""The tracker interface: the propagator implements it, the writer drives it, checkpoints carry their settings."""
import json

import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.data.synthetic import translating_video
from mast.common.masks import read_mask, write_palette_png
from mast.models.backbone import BackboneConfig, ResNetBackbone
from mast.models.extractors import PixelExtractor
from mast.models.propagation import Propagator
from mast.models.protocol import COSINE, PropagationConfig
from mast.models.tracker import Tracker, TrackerStep, track
from tests.test_propagate import write_frames

TINY = BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)


def test_propagator_is_a_tracker_and_steps_return_probabilities():
    frames, masks = translating_video(num_frames=4, height=64, width=64, num_objects=2)
    tracker = Propagator(PixelExtractor(), PropagationConfig.preset("quick", PixelExtractor.knobs))
    assert isinstance(tracker, Tracker)
    steps = list(track(tracker, iter(frames), masks[0]))
    assert len(steps) == 3 and all(isinstance(s, TrackerStep) for s in steps)
    assert steps[0].probabilities.shape == (3, 64, 64)
    torch.testing.assert_close(steps[0].probabilities.sum(0), torch.ones(64, 64))
    assert [s.labels() for s in steps][-1].equal(list(tracker.run(iter(frames), masks[0]))[-1])
    with pytest.raises(ValueError, match="first-frame mask"):
        next(track(tracker, iter(frames), masks[0][:10]))


class ConstantTracker:
    """A stand-in model: predicts the first mask for every frame (what the writer must accept from any model)."""

    name = "constant"

    def start(self, frame, labels):
        self.labels = labels

    def step(self, frame):
        return TrackerStep(torch.nn.functional.one_hot(self.labels, int(self.labels.max()) + 1).permute(2, 0, 1).float())

    def settings(self):
        return {"model": "constant"}


def test_the_writer_drives_any_tracker(tmp_path):
    from mast.eval.propagate import propagate_to_folder
    from mast.eval.sources import video_input

    frames, masks = translating_video(num_frames=3, height=32, width=32)
    write_frames(tmp_path / "clip", frames)
    write_palette_png(tmp_path / "first.png", masks[0].numpy().astype(np.uint8) * 7)
    folder = propagate_to_folder(video_input(tmp_path / "clip", first_mask=tmp_path / "first.png"),
                                 ConstantTracker(), tmp_path / "out")
    assert (read_mask(folder / "00002.png") == masks[0].numpy() * 7).all()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["settings"]["tracker"] == "constant"


def test_a_checkpoint_carries_its_propagation_knobs_and_flags_override_them(tmp_path):
    frames, masks = translating_video(num_frames=3, height=32, width=32)
    write_frames(tmp_path / "clip", frames)
    write_palette_png(tmp_path / "first.png", masks[0].numpy().astype(np.uint8))
    checkpoint = tmp_path / "backbone.pt"
    ResNetBackbone(TINY).save(checkpoint, COSINE)
    base = ["propagate", "--video", str(tmp_path / "clip"), "--first-mask", str(tmp_path / "first.png"),
            "--checkpoint", str(checkpoint), "--preset", "quick"]

    def used(out, *flags):
        assert main([*base, "--out", str(tmp_path / out), *flags]) == 0
        return json.loads((tmp_path / out / "run.json").read_text())["settings"]["protocol"]["engine"]

    saved = used("saved")
    assert (saved["normalize"], saved["temperature"], saved["topk"]) == (True, 0.05, 16)
    flagged = used("flagged", "--dot", "--temperature", "1", "--topk", "0")
    assert (flagged["normalize"], flagged["temperature"], flagged["topk"]) == (False, 1.0, None)
    ResNetBackbone(TINY).save(tmp_path / "plain.pt")
    base[base.index(str(checkpoint))] = str(tmp_path / "plain.pt")
    plain = used("plain")
    assert (plain["normalize"], plain["temperature"], plain["topk"]) == (False, 1.0, None)  # the preset's
