"""Issue 26, SiamMask's small-data recipe: negative pairs, mirrored and colour-jittered crops,
frozen backbone stages, and a learning curve that starts at step 0."""
from __future__ import annotations

import json

import pytest
import torch

from mast.common.config import ConfigError
from mast.models.siammask.geometry import minmax_box
from mast.train.loop import Trainer
from mast.train.siammask.data import jitter_colour
from mast.train.siammask.task import SiamMaskTask
from mast.train.validation import Validator
from tests.test_siammask import _World, davis, phases, tiny_config  # noqa: F401 (davis: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _items(davis, *overrides: str, count: int = 12) -> list[dict]:
    task = SiamMaskTask(tiny_config(phases(1), *overrides), davis)
    task.build(_World())
    dataset = task.dataset(0, count)
    return [dataset[index] for index in range(count)]


def test_without_the_options_the_pairs_are_unchanged_and_all_positive(davis):
    plain = _items(davis)
    zero = _items(davis, "data.negative=0", "data.hflip=0", "data.colour=0")
    assert all(bool(item["positive"]) for item in plain)
    for a, b in zip(plain, zero):
        assert torch.equal(a["search"], b["search"]) and torch.equal(a["exemplar"], b["exemplar"])


def test_a_negative_pair_searches_another_video_with_an_empty_mask(davis):
    items = _items(davis, "data.negative=1")
    assert not any(bool(item["positive"]) for item in items)
    assert all(float(item["search_mask"].sum()) == 0 for item in items)
    some = _items(davis, "data.negative=0.5", count=24)
    assert 0 < sum(bool(item["positive"]) for item in some) < 24


def test_negative_pairs_train_every_rows_score_as_background(davis):
    task = SiamMaskTask(tiny_config(phases(1), "siammask.branches=2", "data.negative=1"), davis)
    model = task.build(_World())
    batch = task.collate([task.dataset(0, 4)[i] for i in range(4)])
    parts = task.losses(model, batch, torch.Generator())
    assert float(parts["similarity_object_fraction"]) == 0  # no RoW is the object's
    assert "mask" not in parts and torch.isfinite(parts["loss"])  # nothing to segment, nothing NaN
    parts["loss"].backward()
    three = SiamMaskTask(tiny_config(phases(1), "siammask.branches=3", "data.negative=1"), davis)
    model = three.build(_World())
    parts = three.losses(model, three.collate([three.dataset(0, 2)[i] for i in range(2)]), torch.Generator())
    assert float(parts["score_object_fraction"]) == 0 and float(parts["box"].detach()) == 0


def test_a_mirrored_search_crop_carries_its_box_and_mask(davis):
    for item in _items(davis, "data.hflip=1"):
        torch.testing.assert_close(minmax_box(item["search_mask"][0] > 0.5), item["box"], atol=3.0, rtol=0.05)
    mirrored, plain = _items(davis, "data.hflip=1")[0], _items(davis)[0]
    assert not torch.equal(mirrored["search"], plain["search"])


def test_colour_jitter_stays_in_range_and_changes_the_crop():
    crop = torch.rand(3, 16, 16)
    jittered = jitter_colour(crop, 0.4, torch.Generator().manual_seed(0))
    assert jittered.shape == crop.shape and 0 <= float(jittered.min()) and float(jittered.max()) <= 1
    assert not torch.allclose(jittered, crop)
    torch.testing.assert_close(jitter_colour(crop, 0.0, torch.Generator()), crop)


@pytest.mark.parametrize("setting", ["data.negative=1.5", "data.hflip=-0.1", "data.colour=1", "freeze=6"])
def test_recipe_options_refuse_bad_values(setting):
    with pytest.raises(ConfigError, match=setting.split("=")[0].split(".")[-1]):
        tiny_config(setting)


def test_frozen_stages_keep_their_weights_and_statistics(davis, tmp_path):
    from test_ranet_panels import assert_training_keeps_stem_and_layer1  # tests/ is on sys.path under pytest

    task = SiamMaskTask(tiny_config(phases(3, lr=0.01), "siammask.branches=2", "freeze=2"), davis)
    task.build(_World())
    assert_training_keeps_stem_and_layer1(task, tmp_path / "run")


def test_train_only_trains_the_score_branch_alone(davis, tmp_path):
    task = SiamMaskTask(tiny_config(phases(3, lr=0.01), "siammask.branches=2",
                                    "train_only=[heads.score, adjust.score]"), davis)
    task.build(_World())
    before = {key: value.clone() for key, value in task.model.state_dict().items()}
    Trainer(task, tmp_path / "run").run()
    after = task.model.state_dict()
    score = [key for key in before if key.startswith(("heads.score.", "adjust.score."))]
    assert any(not torch.equal(before[key], after[key]) for key in score)
    # the rest, BatchNorm statistics included (the mask branch's adjust layers run in every step)
    assert all(torch.equal(before[key], after[key]) for key in before if key not in score)


def test_validation_at_start_scores_step_0_and_a_resumed_run_does_not_again(davis, tmp_path):
    config = tiny_config(phases(4), "siammask.branches=2", "validation.every=2", "validation.max_frames=4",
                         "validation.at_start=true", "train.checkpoint_every=2")
    validator = Validator.from_config(config.validation, davis, "val", 2017, ["seq0"])
    run = tmp_path / "run"
    Trainer(SiamMaskTask(config, davis), run, validator=validator).run(stop_after=2)
    Trainer(SiamMaskTask(config, davis), run, validator=validator, resume=True).run()
    record = json.loads((run / "validation.json").read_text())
    assert [entry["step"] for entry in record["history"]] == [0, 2, 4]
    assert (run / "best-model.pt").is_file()
    # the bar on the learning curve: the first mask on every frame, as `--model static` scores it
    from mast.models.static import StaticTracker

    assert record["zero_motion"] == pytest.approx(validator.score(StaticTracker()).JF)
    assert 0 < record["zero_motion"] < 1
