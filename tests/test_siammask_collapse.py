"""Issue 26, SiamMask: the pictures and class balance that diagnose a collapse, the tracker rules
that refuse one (SiamFC scale search, the minimum mask area), and the capacity check."""
from __future__ import annotations

import pytest
import torch

from mast.data.synthetic import translating_video
from mast.models.siammask.geometry import minmax_box
from mast.models.siammask.tracker import SiamMaskTracker, TrackerConfig, best_scale_row, cosine_window
from mast.models.tracker import track
from mast.train.panels import BOX_COLOUR
from tests.test_siammask import _untrained, _World, davis, phases, tiny_config  # noqa: F401 (davis: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

#: The capacity check: SiamMask-2B, configs/siammask.yaml's wide search jitter and clipping, pairs
#: from anywhere in the one sequence, tracked with SiamFC's scale search. Measured (single thread):
#: J&F 0.803; 0.776 with the box following the mask instead (no scale search), 0.678 with exemplars
#: normalised by batch statistics (before the fix); the three-branch variant reaches 0.73 after 150 steps.
CAPACITY_RECIPE = ["siammask.branches=2", "data.search_shift=32", "train.clip_grad=10", "data.max_gap=100",
                   "tracker.scale_step=1.0375"]
#: 120 steps reached J&F 0.79-0.8: fitted on one machine, 0.790 on an AMD EPYC (CPUs sum floats differently).
CAPACITY_STEPS = 200
#: configs/siammask-cpu.yaml's network: the same with the refinement module, which fitted blackswan
#: (J&F 0.965 after 221 steps, 0.441 without it after 316). Measured: J&F 0.989 after 60 steps.
REFINED_STEPS = 60


# -- pictures and class balance ------------------------------------------------------


@pytest.mark.parametrize("variant", ["siammask.branches=3", "siammask.branches=2", "siammask.refine=true"])
def test_each_loss_logs_its_class_balance_and_the_picture_shows_crop_score_box_and_mask(davis, variant):
    from mast.train.siammask.task import SiamMaskTask

    task = SiamMaskTask(tiny_config(phases(1), variant), davis)
    model = task.build(_World())
    assert task.picture() is None  # nothing seen yet
    batch = task.collate([task.dataset(0, 2)[i] for i in range(2)])
    parts = task.losses(model, batch, torch.Generator())
    name = "score" if "branches=2" not in variant else "similarity"
    # The balanced loss is the mean of its two class terms, each logged.
    torch.testing.assert_close(parts[name], (parts[f"{name}_object"] + parts[f"{name}_background"]) / 2)
    assert 0 < float(parts[f"{name}_object_fraction"]) < 0.5  # object anchors / RoWs are the minority
    assert 0 < float(parts["mask_object_fraction"]) < 1 and 0 <= float(parts["mask_predicted_fraction"]) <= 1
    balanced = SiamMaskTask(tiny_config(phases(1), variant, "loss.mask_balance=true"), davis)
    parts = balanced.losses(balanced.build(_World()), batch, torch.Generator())
    torch.testing.assert_close(parts["mask"], (parts["mask_object"] + parts["mask_background"]) / 2)
    title, picture = task.picture()
    assert title == "search_score_box_mask" and picture.shape == (3, 255, 3 * 255)
    assert 0 <= float(picture.min()) and float(picture.max()) <= 1
    # The third tile is the crop with the truth drawn as mask_tile draws results: the box's left
    # side in BOX_COLOUR, the truth mask tinted, the crop as it was away from the truth.
    third, search = picture[:, :, 510:], batch["search"][0].float().clamp(0, 1)
    x0 = round(float(batch["box"][0, 0] - (batch["box"][0, 2] - 1) / 2))
    y = round(float(batch["box"][0, 1]))
    if 2 <= x0 < 253:
        torch.testing.assert_close(third[:, y, x0] * 255, torch.tensor(BOX_COLOUR, dtype=torch.float32), atol=1, rtol=0)
    truth = batch["search_mask"][0, 0] > 0.5
    inside = -torch.nn.functional.max_pool2d(-truth.float()[None], 9, 1, 4)[0] > 0.5  # truth, 4 px from its edge
    changed = (third - search).abs().amax(dim=0) > 2 / 255
    assert float(changed[inside].float().mean()) > 0.9
    far = ~torch.nn.functional.max_pool2d(truth.float()[None], 9, 1, 4)[0].bool()
    far[max(y - 2, 0):y + 3] = False  # the box's rows and columns are drawn on
    assert float(changed[far].float().mean()) < 0.2


def test_the_validation_frame_becomes_the_second_row_of_the_picture(davis):
    from mast.train.siammask.task import SiamMaskTask

    task = SiamMaskTask(tiny_config(phases(1), "siammask.branches=2"), davis)
    model = task.build(_World())
    task.losses(model, task.collate([task.dataset(0, 2)[i] for i in range(2)]), torch.Generator())
    tracker = task.validation_trackers()["siammask"]
    frames, masks = translating_video(num_frames=3, height=96, width=96, seed=0)
    list(track(tracker, list(frames), masks[0]))
    view = tracker.view
    assert view.search.shape == (3, 255, 255) and view.score.shape == (17, 17) and view.mask.shape == (255, 255)
    # Untrained, the box stays near the object: the new box in the crop lies within it.
    assert 0 <= float(view.box[0]) <= 254 and 0 <= float(view.box[1]) <= 254
    _, picture = task.picture()
    assert picture.shape == (3, 2 * 255, 3 * 255)


def test_exemplars_are_normalised_by_the_search_crops_running_statistics_in_training_too():
    """The fix of issue 26's collapse: with batch statistics for the exemplar pass, the backbone's
    running statistics blended exemplar and search crops and, in tracking, matched neither."""
    model = _untrained(branches=3).train()
    running = {name: buffer.clone() for name, buffer in model.backbone.named_buffers() if "running_mean" in name}
    exemplars = torch.rand(3, 3, 127, 127)
    model.templates(exemplars)
    for name, buffer in model.backbone.named_buffers():
        if "running_mean" in name:
            assert torch.equal(buffer, running[name]), name  # exemplars leave the statistics alone
    assert model.backbone.training and all(m.training for m in model.backbone.modules())
    model.adjust.eval()  # the exemplar adjust layers keep their own batch statistics
    torch.testing.assert_close(model.templates(exemplars[:1])["score"], model.templates(exemplars)["score"][:1])
    model.respond(model.templates(exemplars), torch.rand(3, 3, 255, 255))
    assert any(not torch.equal(buffer, running[name]) for name, buffer in model.backbone.named_buffers()
               if "running_mean" in name)  # search crops update them


# -- tracker rules -----------------------------------------------------------------------


def test_siamfc_scale_choice_penalises_changed_scales():
    factors = torch.tensor([1 / 1.0375, 1.0, 1.0375])
    window = cosine_window()
    score = torch.zeros(2, 3, 17, 17)
    score[0, 2, 8, 9] = 0.9  # object 0: clearly best in the larger crop
    score[0, 1, 8, 8] = 0.5
    score[1, 0, 8, 8] = 0.80  # object 1: the smaller crop is better by less than the penalty
    score[1, 1, 8, 8] = 0.79
    chosen, i, j = best_scale_row(score, factors, window, 0.0, 0.9745)
    assert chosen.tolist() == [2, 1] and i.tolist() == [8, 8] and j.tolist() == [9, 8]
    chosen, _, _ = best_scale_row(score, factors, window, 0.0, 1.0)  # no penalty: the raw best
    assert chosen.tolist() == [2, 0]


def test_siamfc_scale_search_changes_the_size_by_the_chosen_scale_only():
    """Whichever of the three crops wins, both sides change by one factor: ``1 - r + r * f`` for
    the chosen scale ``f`` and the rate ``r = lr * score``; without scale search they do not change."""
    frames, masks = translating_video(num_frames=2, height=64, width=64, velocity=(0.0, 0.0), seed=0)
    for step, expected in ((1.2, (1 / 1.2, 1.0, 1.2)), (1.0, (1.0,))):
        config = TrackerConfig(scale_step=step, scale_penalty=1.0, lost_score=0.0, lr=0.5)
        tracker = SiamMaskTracker(_untrained(branches=2, mask=False), config)
        tracker.start(frames[0], masks[0])
        before = tracker.sizes.clone()
        tracker.step(frames[1])
        factor = (tracker.sizes / before)[0]
        rate = 0.5 * float(tracker.scores[0])
        assert float(factor[0]) == pytest.approx(float(factor[1]))  # one scale for both sides
        assert any(float(factor[0]) == pytest.approx(1 - rate + rate * f) for f in expected), (factor, rate)


def test_a_collapsing_mask_is_refused_the_box_and_last_mask_kept():
    frames, masks = translating_video(num_frames=5, height=64, width=64, velocity=(2.0, 0.0), seed=2)
    model = _untrained(branches=2)
    with torch.no_grad():
        model.mask_out.weight.zero_()
        model.mask_out.bias.fill_(-50.0)  # every mask empty: the collapse at its worst
    first = minmax_box(masks[0] == 1)
    refusing = SiamMaskTracker(model, TrackerConfig(min_area=0.5, lost_score=0.0))
    for step in track(refusing, list(frames), masks[0]):
        assert torch.equal(step.labels(), masks[0])  # the last accepted mask: the first frame's
        torch.testing.assert_close(step.boxes[0, :2] + (step.boxes[0, 2:] - 1) / 2, first[:2])
    accepting = SiamMaskTracker(model, TrackerConfig(min_area=0.0, lost_score=0.0))
    assert all(int(step.labels().sum()) == 0 for step in track(accepting, list(frames), masks[0]))


def test_tracker_settings_refuse_bad_values():
    from mast.common.config import FieldError

    for field, value in (("scale_step", 0.9), ("scale_penalty", 1.5), ("min_area", -0.1)):
        with pytest.raises(FieldError, match=field):
            TrackerConfig(**{field: value})


# -- capacity -------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe, steps", [(CAPACITY_RECIPE, CAPACITY_STEPS),
                                           ([*CAPACITY_RECIPE, "siammask.refine=true"], REFINED_STEPS)],
                         ids=["two-branch", "refined"])
def test_capacity_trained_and_tracked_on_one_sequence_reaches_jf_0_8(tmp_path, recipe, steps):
    """Issue 26 part 2: a network that cannot fit the one sequence it tracks has a broken pipeline,
    not a small budget. Trained on one synthetic sequence (any pair of its frames), then tracked
    over it and scored as ``mast evaluate`` scores (the validator)."""
    from mast.train.loop import Trainer
    from mast.train.siammask.task import SiamMaskTask
    from mast.train.validation import Validator
    from tests.test_siammask import write_davis

    root = write_davis(tmp_path / "davis", velocities=((2.0, 1.0),))
    config = tiny_config(phases(steps), *recipe)
    Trainer(SiamMaskTask(config, root), tmp_path / "run").run()
    tracker = SiamMaskTracker.from_checkpoint(tmp_path / "run" / "model.pt")
    score = Validator(root, sequences=["seq0"]).score(tracker)
    assert score.JF >= 0.8, score


def test_a_siammask_config_validation_section_drives_early_stopping(davis, tmp_path):
    """configs/siammask-cpu.yaml's ``validation`` section: its cadence and patience end the run
    (min_delta 1: no validation after the first counts as better, so patience 1 stops at the second)."""
    import json

    from mast.train.loop import Trainer
    from mast.train.siammask.task import SiamMaskTask
    from mast.train.validation import Validator

    config = tiny_config(phases(6), "siammask.branches=2", "validation.every=1", "validation.max_frames=4",
                         "validation.patience=1", "validation.min_delta=1.0")
    validator = Validator.from_config(config.validation, davis, "val", 2017, ["seq0"])
    run = tmp_path / "run"
    Trainer(SiamMaskTask(config, davis), run, validator=validator).run()
    history = json.loads((run / "validation.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [1, 2]
    assert (run / "best-model.pt").is_file()
