"""What RANet's training shows in TensorBoard (issue 26): the loose crop and the mask, the class balance."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from mast.common.config import ConfigError
from mast.train.config import load_config
from mast.train.distributed import World
from mast.train.loop import Trainer
from mast.train.panels import BOX_COLOUR, crop_tile, mask_tile, tile_rows
from mast.train.ranet.config import RANetDataConfig, RANetTrainingConfig
from mast.train.ranet.data import RANetDataset, rotate
from mast.train.ranet.losses import class_balance, mask_losses
from mast.train.ranet.task import RANetTask
from mast.train.validation import Validator
from test_ranet import TINY, synthetic, write_davis  # noqa: E402  (tests/ is on sys.path under pytest)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_class_balance_by_hand():
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    balance = class_balance(logits, target)
    bce = torch.nn.functional.softplus  # BCE of a positive pixel is softplus(-x), of a negative one softplus(x)
    torch.testing.assert_close(balance["positive_fraction"], torch.tensor(0.5))
    torch.testing.assert_close(balance["predicted_fraction"], torch.tensor(0.5))
    torch.testing.assert_close(balance["bce_positive"], (bce(torch.tensor(-2.0)) + bce(torch.tensor(1.0))) / 2)
    torch.testing.assert_close(balance["bce_negative"], (bce(torch.tensor(0.5)) + bce(torch.tensor(-3.0))) / 2)
    empty = class_balance(logits, torch.zeros_like(target))
    assert float(empty["bce_positive"]) == 0 and float(empty["positive_fraction"]) == 0
    assert set(balance) <= set(mask_losses(logits, target, "both"))


def test_mask_tile_blends_the_mask_and_draws_the_box():
    frame = torch.full((3, 40, 60), 0.5)
    mask = torch.zeros(40, 60)
    mask[10:20, 10:30] = 1
    tile = mask_tile(frame, mask, (5, 5, 50, 35))
    assert tile.shape == (3, 40, 60) and 0 <= float(tile.min()) and float(tile.max()) <= 1
    assert not torch.allclose(tile[:, 15, 20], frame[:, 15, 20])  # inside the mask: tinted
    torch.testing.assert_close(tile[:, 38, 58], frame[:, 38, 58], atol=1 / 255, rtol=0)  # outside both: as it was
    torch.testing.assert_close(tile[:, 5, 30] * 255, torch.tensor(BOX_COLOUR, dtype=torch.float32))
    assert crop_tile(frame, mask, (5, 5, 50, 35)).shape == (3, 30, 45)


def test_tile_rows_scales_and_pads():
    rows = tile_rows([[torch.ones(3, 20, 40), torch.ones(3, 10, 10)], [torch.ones(3, 40, 40)]], 20)
    assert rows.shape == (3, 40, 60)
    assert float(rows[:, 20:, :20].min()) == 1 and float(rows[:, 20:, 20:].max()) == 0


def test_training_logs_the_class_balance_and_both_panels(tmp_path):
    """After a validation, the picture holds a training row and a validation row."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    davis = write_davis(tmp_path / "davis", {"one": synthetic(0, frames=6)})
    config = load_config(overrides=[*TINY, "phases=[{name: ranet, steps: 2, lr: 0.001}]", "train.batch_size=2",
                                    "train.log_every=1", "train.image_every=2"], schema=RANetTrainingConfig)
    task = RANetTask(config, davis)
    Trainer(task, tmp_path / "run", validator=Validator(davis, every=1, max_frames=4, sequences=["one"])).run()
    name, picture = task.picture()
    assert picture.shape == (3, 2 * 64, 4 * 64)  # training: four 64 x 64 tiles; validation: two, padded
    assert float(picture[:, 64:, 2 * 64:].max()) == 0 and float(picture[:, 64:, :64].max()) > 0
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    for key in ("positive_fraction", "predicted_fraction", "bce_positive", "bce_negative"):
        values = [event.value for event in events.Scalars(f"train/{key}")]
        assert values and all(math.isfinite(value) for value in values), key
    assert f"train/{name}" in events.Tags()["images"]


# -- [Thesis] §3.3's augmentations (configs/ranet-cpu.yaml) -------------------------------------------------------


def test_rotate_turns_frames_and_masks_together():
    frames = torch.rand(2, 3, 6, 6)
    ids = torch.zeros(2, 6, 6, dtype=torch.long)
    ids[:, 0, 5] = 1  # top right
    turned, labels = rotate(frames, ids, 90)
    torch.testing.assert_close(turned, torch.rot90(frames, 1, (2, 3)), atol=1e-5, rtol=0)  # counter-clockwise
    assert labels[:, 0, 0].tolist() == [1, 1] and int(labels.sum()) == 2
    disc = torch.zeros(1, 40, 80, dtype=torch.long)
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(80.0), indexing="ij")
    disc[0][(ys - 20) ** 2 + (xs - 40) ** 2 <= 100] = 2  # a non-square frame: a disc stays a disc
    _, labels = rotate(torch.rand(1, 3, 40, 80), disc, 30)
    assert set(labels.unique().tolist()) == {0, 2} and abs(int((labels == 2).sum()) - int((disc == 2).sum())) <= 8


def test_independent_views_move_the_template_alone(davis_one):
    """With ``independent``, the template's view differs from the current frame's; the previous mask
    stays in the current frame's coordinates. Without it (or rotation) the default draws are unchanged."""
    from mast.data.annotated import discover_annotated

    videos = discover_annotated(davis_one)
    base = RANetDataConfig(size=(48, 48), dilate=0, shift=0, frames=2, scale=(0.5, 0.5), hflip=0.0)
    plain = RANetDataset(videos, 4, base, seed=1, phase=0)[0]
    torch.testing.assert_close(plain["previous"], plain["target"])
    apart = RANetDataset(videos, 4, replace(base, independent=True, rotate=30), seed=1, phase=0)
    for index in range(4):
        item = apart[index]
        torch.testing.assert_close(item["previous"], item["target"])  # same view: M_{t-1} = M_t here (frames: 2)
    moved = [apart[index] for index in range(4)]
    assert any(not torch.equal(item["template_mask"], item["target"]) for item in moved)


@pytest.fixture(scope="module")
def davis_one(tmp_path_factory):
    """One still synthetic video: every frame and mask the same, so only the views differ."""
    frames, masks = synthetic(0, frames=3)
    return write_davis(tmp_path_factory.mktemp("davis"), {"one": (frames[:1].expand(3, -1, -1, -1),
                                                                  masks[:1].expand(3, -1, -1))})


def test_the_config_validation_section_stops_training_early(tmp_path):
    """``validation.patience`` of a RANet config is what ``--validate`` stops by (the recipe's early stopping)."""
    import json

    from mast.cli.main import main

    davis = write_davis(tmp_path / "davis", {"one": synthetic(0, frames=5)})
    sets = [item for override in [*TINY, "train.batch_size=2", "phases=[{name: ranet, steps: 6, lr: 0.001}]",
                                  "validation.every=1", "validation.patience=1", "validation.min_delta=1.0"]
            for item in ("--set", override)]
    assert main(["train-baseline", "ranet", "--data", str(davis), "--out", str(tmp_path / "run"), *sets,
                 "--validate", str(davis), "--validate-sequences", "one"]) == 0
    history = json.loads((tmp_path / "run" / "validation.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [1, 2]  # no gain above min_delta at step 2: stop


def built_task(tmp_path, *overrides: str) -> RANetTask:
    """A built RANet task of three steps on one synthetic sequence, with ``overrides``."""
    davis = write_davis(tmp_path / "davis", {"one": synthetic(0, frames=5)})
    config = load_config(overrides=[*TINY, "train.batch_size=2", "phases=[{name: ranet, steps: 3, lr: 0.01}]",
                                    *overrides], schema=RANetTrainingConfig)
    task = RANetTask(config, davis)
    task.build(World(rank=0, size=1, device=torch.device("cpu")))
    return task


def test_frozen_stages_keep_the_init_weights_and_statistics(tmp_path):
    assert_training_keeps_stem_and_layer1(built_task(tmp_path, "freeze=2"), tmp_path / "run")


def assert_training_keeps_stem_and_layer1(task, run) -> None:
    """Trains a built baseline ``task`` of ``freeze: 2`` into ``run``: the stem's and layer1's weights
    and BatchNorm buffers stay as they were, layer2's move."""
    before = {key: value.clone() for key, value in task.model.backbone.state_dict().items()}
    Trainer(task, run).run()
    after = task.model.backbone.state_dict()
    kept = [key for key in before if key.startswith(("stem.", "layers.0."))]
    moved = [key for key in before if key.startswith("layers.1.") and after[key].is_floating_point()]
    assert kept and all(torch.equal(before[key], after[key]) for key in kept)  # weights and BatchNorm buffers
    assert any(not torch.equal(before[key], after[key]) for key in moved)


def test_freeze_is_checked_against_the_backbone():
    with pytest.raises(ConfigError, match="freeze"):
        load_config(overrides=[*TINY, "freeze=6"], schema=RANetTrainingConfig)


def test_train_only_trains_the_named_parts_and_holds_the_rest(tmp_path):
    task = built_task(tmp_path, "train_only=[decoder.out, ranker]")
    before = {key: value.clone() for key, value in task.model.state_dict().items()}
    Trainer(task, tmp_path / "run").run()
    after = task.model.state_dict()
    trained = [key for key in before if key.startswith(("decoder.out.", "ranker."))]
    held = [key for key in before if key not in trained]
    assert all(torch.equal(before[key], after[key]) for key in held)  # weights and BatchNorm buffers alike
    assert all(not torch.equal(before[key], after[key]) for key in trained if key.endswith("weight"))


@pytest.mark.parametrize("parts, message", [(["decoder.outs"], "names no parameter of the model; its parts are"),
                                            (["backbone.stem"], "only parameters that freeze keeps")])
def test_train_only_refuses_parts_that_train_nothing(tmp_path, parts, message):
    with pytest.raises(ValueError, match=message):
        built_task(tmp_path, "freeze=2", f"train_only=[{', '.join(parts)}]")


def test_train_only_refuses_what_is_not_a_list_of_names():
    with pytest.raises(ConfigError, match="train_only"):
        load_config(overrides=[*TINY, "train_only=['', decoder]"], schema=RANetTrainingConfig)
