"""RANet's capacity check (issue 26): trained on the masks of one sequence, it tracks that sequence.

A pipeline that cannot fit one sequence is wrong, whatever the budget: the check
trains a tiny RANet on a synthetic sequence and scores the tracker that
``mast propagate --model ranet`` builds (the loose crop on) with the validator's
J&F, which is ``mast evaluate``'s. Before the tracker gave the network context
around the loose box, the mask shrank frame after frame (docs/baselines.md §7.3).
"""
from __future__ import annotations

import pytest
import torch

from mast.data.synthetic import translating_video
from mast.models.ranet.tracker import RANetTracker
from mast.models.tracker import track
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.ranet.config import RANetTrainingConfig
from mast.train.ranet.task import RANetTask
from mast.train.validation import Validator
from test_ranet import TINY, write_davis  # noqa: E402  (tests/ is on sys.path under pytest)

pytestmark = pytest.mark.usefixtures("one_thread")

#: A disc of radius 16 crossing a 96 x 160 frame: its 1.5x box (48 pixels) is the loose crop.
FRAMES, HEIGHT, WIDTH = 16, 96, 160
MIN_CROP = 32  # the disc's own loose box, not the default's 64-pixel floor, which would hide the crop's effect


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``(DAVIS folder of sequence "s", model.pt)``: a tiny RANet trained on the masks of "s" only."""
    frames, masks = translating_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, velocity=(2.0, 0.5), seed=3)
    davis = write_davis(tmp_path_factory.mktemp("davis"), {"s": (frames, masks)})
    config = load_config(overrides=[*TINY, "phases=[{name: ranet, steps: 60, lr: 0.003, lr_milestones: [0.7]}]"],
                         schema=RANetTrainingConfig)
    run = tmp_path_factory.mktemp("run") / "ranet"
    Trainer(RANetTask(config, davis, ["s"], 2017, None), run).run()
    return davis, run / "model.pt"


def test_trained_on_one_sequence_it_tracks_that_sequence(fitted):
    davis, model = fitted
    score = Validator(davis, sequences=["s"]).score(RANetTracker.from_checkpoint(model, min_crop=MIN_CROP))
    assert score.JF >= 0.8, score


def test_the_mask_keeps_its_area_inside_the_loose_box(fitted):
    """The collapse the check guards: each step's mask within 20 % of the true area."""
    davis, model = fitted
    frames, masks = translating_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, velocity=(2.0, 0.5), seed=3)
    steps = track(RANetTracker.from_checkpoint(model, min_crop=MIN_CROP), frames, masks[0])
    areas = [float((step.labels() == 1).sum()) / float((masks[t] == 1).sum()) for t, step in enumerate(steps, 1)]
    assert all(0.8 <= area <= 1.2 for area in areas), [round(area, 2) for area in areas]


def test_the_network_sees_context_beyond_the_box_it_segments(fitted):
    """Only the loose box is segmented (the rest is background), but the crop fed to the network
    is wider by ``context`` pixels, clipped to the frame."""
    _, model = fitted
    frames, masks = translating_video(num_frames=3, height=HEIGHT, width=WIDTH, velocity=(2.0, 0.5), seed=3)
    tracker = RANetTracker.from_checkpoint(model, min_crop=MIN_CROP, context=16)
    seen = []
    tracker.model.encode = lambda crop, encode=tracker.model.encode: seen.append(tuple(crop.shape[-2:])) or encode(crop)
    step = list(track(tracker, frames, masks[0]))[0]
    x0, y0, x1, y1 = tracker.last_view[1]
    assert seen[-1] == (min(y1 + 16, HEIGHT) - max(y0 - 16, 0), min(x1 + 16, WIDTH) - max(x0 - 16, 0))
    outside = torch.ones(HEIGHT, WIDTH, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert bool((step.labels()[outside] == 0).all())
