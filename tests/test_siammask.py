"""SiamMask and its SiamFC / SiamRPN modes: geometry, heads, targets, training, tracking, CLI, bad input."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mast.common.config import ConfigError
from mast.common.masks import read_mask, write_palette_png
from mast.data.synthetic import translating_video
from mast.models.backbone import BackboneConfig, ResNetBackbone
from mast.models.siammask.geometry import (
    RESPONSE_SIZE, box_iou, decode_boxes, encode_boxes, exemplar_side, make_anchors, minmax_box, rotated_box,
    row_coordinates, search_side,
)
from mast.models.siammask.model import SiamMask, SiamMaskConfig, depthwise_correlation, window_prior
from mast.models.siammask.tracker import SiamMaskTracker, TrackerConfig, merge_objects, paste_mask
from mast.models.tracker import track
from mast.ops.crops import square_crop
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.siammask import losses
from mast.train.siammask.config import SiamMaskTrainingConfig
from mast.train.siammask.task import SiamMaskTask

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_BACKBONE = BackboneConfig(colour_space="rgb", output_stride=8, widths=(8, 16, 32, 32), blocks=(1, 1, 1, 1))
TINY = ["model.widths=[8,16,32,32]", "model.blocks=[1,1,1,1]", "siammask.channels=32", "data.workers=0",
        "train.batch_size=4", "train.device=cpu", "train.log_every=1", "train.image_every=5"]
SIZE, FRAMES = 96, 12
#: One direction per training video, so that no direction of motion is a cue the network can learn.
VELOCITIES = ((2.0, 1.0), (-1.0, 2.0), (-2.0, -1.0))
#: Wider search jitter and clipping than the paper's defaults: what configs/siammask.yaml trains with.
RECIPE = ["data.search_shift=32", "train.clip_grad=10"]


def phases(steps: int, lr: float = 0.003) -> str:
    return f"phases=[{{name: a, steps: {steps}, lr: {lr}, lr_milestones: []}}]"


def tiny_config(*overrides: str):
    return load_config(overrides=[*TINY, *overrides], schema=SiamMaskTrainingConfig)


def write_davis(root: Path, velocities: tuple[tuple[float, float], ...] = VELOCITIES) -> Path:
    """A DAVIS-layout folder of synthetic translating discs, one sequence ``seq<k>`` per velocity
    (frames, palette masks, ImageSets/2017/val.txt)."""
    names = []
    for seed, velocity in enumerate(velocities):
        frames, masks = translating_video(num_frames=FRAMES, height=SIZE, width=SIZE, velocity=velocity, seed=seed)
        name = f"seq{seed}"
        names.append(name)
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            folder = root / "JPEGImages" / "480p" / name
            folder.mkdir(parents=True, exist_ok=True)
            image = (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{t:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask.numpy().astype(np.uint8))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    return write_davis(tmp_path_factory.mktemp("davis"))


def train_recording(config, data: Path, out: Path) -> list[dict[str, float]]:
    """Trains; returns every step's loss components."""
    trainer = Trainer(SiamMaskTask(config, data), out)
    steps = []
    log = trainer._log

    def record(loss, optimiser, rate):
        steps.append(dict(trainer.components, loss=loss))
        log(loss, optimiser, rate)

    trainer._log = record
    trainer.run()
    return steps


@pytest.fixture(scope="module")
def trained(davis, tmp_path_factory):
    """SiamMask-2B trained briefly on the synthetic videos: ``(run folder, per-step components)``."""
    out = tmp_path_factory.mktemp("run") / "run"
    return out, train_recording(tiny_config(phases(80), "siammask.branches=2", *RECIPE), davis, out)


# -- geometry ------------------------------------------------------------------


def test_context_rule_and_search_side():
    w, h = torch.tensor(40.0), torch.tensor(20.0)
    assert float(exemplar_side(w, h)) == pytest.approx(math.sqrt((40 + 30) * (20 + 30)))
    assert float(search_side(w, h) / exemplar_side(w, h)) == pytest.approx(255 / 127)
    coords = row_coordinates()
    assert coords.shape == (RESPONSE_SIZE,) and coords[8] == 127 and coords[1] - coords[0] == 8


def test_anchors_are_k_ratios_of_one_area_at_every_row():
    anchors = make_anchors((0.5, 1.0, 2.0), 8.0)
    assert anchors.shape == (3, 17, 17, 4)
    torch.testing.assert_close(anchors[..., 2] * anchors[..., 3], torch.full((3, 17, 17), 64.0**2))
    torch.testing.assert_close(anchors[:, 0, 0, 3] / anchors[:, 0, 0, 2], torch.tensor([0.5, 1.0, 2.0]))
    assert anchors[0, 8, 8, :2].tolist() == [127, 127] and anchors[0, 2, 5, :2].tolist() == [127 - 24, 127 - 48]
    boxes = torch.tensor([[120.0, 130.0, 50.0, 90.0]])
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes.expand(3, 17, 17, 4))


def test_anchor_labels_on_hand_built_boxes():
    anchors = make_anchors((1.0,), 8.0)  # 64 x 64 squares every 8 pixels
    # Exactly the centre anchor: IoU 1 there; 8 px away IoU 56*64/(2*64*64-56*64) = 0.78; 16 px: 0.6; 24 px: 0.45.
    box = torch.tensor([[127.0, 127.0, 64.0, 64.0]])
    labels, deltas = losses.anchor_labels(anchors, box, positive_iou=0.6, negative_iou=0.3)
    row = labels[0, 0, 8]  # the centre row of RoWs, varying x
    assert row[8] == 1 and row[7] == 1 and row[6] == 1 and row[5] == -1 and row[0] == 0
    assert labels[0, 0, 0, 0] == 0
    torch.testing.assert_close(deltas[0, 0, 8, 8], torch.zeros(4))
    assert deltas[0, 0, 8, 7].tolist() == pytest.approx([8 / 64, 0, 0, 0])
    # A box no anchor matches at 0.6 still trains its best anchor.
    thin = torch.tensor([[131.0, 127.0, 8.0, 200.0]])
    labels, _ = losses.anchor_labels(anchors, thin, 0.6, 0.3)
    best = box_iou(anchors, thin[0]).flatten().argmax()
    assert int((labels == 1).sum()) == 1 and labels.flatten()[best] == 1
    rows = losses.positive_rows((labels == 1).any(dim=1))
    assert rows.tolist() == [[0, int(best) // 17, int(best) % 17]]


def test_similarity_labels_are_a_disc_around_the_target():
    positive = losses.similarity_labels(torch.tensor([[127.0, 127.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0]]), 16.0)
    assert int(positive[0].sum()) == 13 and positive[0, 8, 8] and positive[0, 8, 10] and not positive[0, 9, 10]
    assert int(positive[1].sum()) == 1 and positive[1, 0, 0]  # off the grid: the nearest RoW


def test_hard_negative_mining_keeps_the_hardest():
    values = torch.tensor([[1.0, 0.1, 0.2, 5.0, 0.3]])
    positive = torch.tensor([[True, False, False, False, False]])
    negative = ~positive
    assert float(losses.balanced_loss(values, positive, negative, None)) == pytest.approx((1 + 5.6 / 4) / 2)
    assert float(losses.balanced_loss(values, positive, negative, 1.0)) == pytest.approx((1 + 5) / 2)
    assert float(losses.balanced_loss(values, positive, negative, 2.0)) == pytest.approx((1 + 5.3 / 2) / 2)


def _rectangle_mask(angle: float, size=(120, 160)) -> torch.Tensor:
    points = cv2.boxPoints(((80.0, 60.0), (60.0, 24.0), angle)).round().astype(np.int32)
    mask = np.zeros(size, np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return torch.from_numpy(mask.astype(bool))


@pytest.mark.parametrize("angle", [0.0, 20.0, -30.0, 40.0])
def test_rotated_rectangle_of_a_rotated_box_mask_recovers_its_angle(angle):
    cx, cy, w, h, found = rotated_box(_rectangle_mask(angle))
    assert found == pytest.approx(angle, abs=2.0)
    assert (cx, cy) == pytest.approx((80, 60), abs=1.0) and (w, h) == pytest.approx((61, 25), abs=2.5)
    box = minmax_box(_rectangle_mask(angle))
    assert float(box[2] * box[3]) >= w * h - 70  # the axis-aligned box is looser unless the angle is 0
    empty = torch.zeros(5, 5, dtype=torch.bool)
    assert rotated_box(empty) is None and minmax_box(empty) is None


def test_paste_is_the_inverse_of_the_window_crop():
    _, masks = translating_video(num_frames=1, height=96, width=80, seed=3)
    mask = (masks[0] == 1).float()
    center, side = torch.tensor([37.3, 51.2]), 70.0
    window = square_crop(mask[None, None], center.view(1, 2), torch.tensor([side]), 63)[0, 0]
    back = paste_mask(window, center, side, 96, 80)
    assert back.shape == (96, 80)
    assert torch.equal(back > 0.5, mask > 0.5)


def test_merging_objects_thresholds_at_one_half_and_gives_overlaps_to_the_more_confident():
    masks = torch.tensor([[[0.9, 0.6, 0.4, 0.0]], [[0.0, 0.8, 0.0, 0.2]]])
    one = merge_objects(masks[:1], torch.tensor([0.3]))
    assert one.argmax(0).tolist() == [[1, 1, 0, 0]] and torch.allclose(one.sum(0), torch.ones(1, 4))
    two = merge_objects(masks, torch.tensor([0.9, 0.3]))
    assert two.argmax(0).tolist() == [[1, 1, 0, 0]]  # object 2's 0.8 weighs 0.27 against object 1's 0.6
    two = merge_objects(masks, torch.tensor([0.9, 0.9]))
    assert two.argmax(0).tolist() == [[1, 2, 0, 0]]


# -- the network -----------------------------------------------------------------


def test_depthwise_correlation_equals_a_brute_force_loop():
    search, kernel = torch.randn(2, 3, 9, 8), torch.randn(2, 3, 4, 3)
    out = depthwise_correlation(search, kernel)
    assert out.shape == (2, 3, 6, 6)
    expected = torch.zeros_like(out)
    for b in range(2):
        for c in range(3):
            for y in range(6):
                for x in range(6):
                    expected[b, c, y, x] = (search[b, c, y:y + 4, x:x + 3] * kernel[b, c]).sum()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(depthwise_correlation(search, kernel, stride=2), out[..., ::2, ::2])


@pytest.mark.parametrize("branches,mask,refine", [(2, True, False), (3, True, False), (3, True, True),
                                                  (2, True, True), (3, False, False), (2, False, False)])
def test_every_head_has_its_shape(branches, mask, refine):
    config = SiamMaskConfig(branches=branches, mask=mask, refine=refine, channels=16, anchor_ratios=(0.5, 1.0, 2.0))
    model = SiamMask(TINY_BACKBONE, config)
    rows = torch.tensor([[0, 0, 0], [1, 16, 16], [1, 3, 9]])
    out = model(torch.rand(2, 3, 127, 127), torch.rand(2, 3, 255, 255), rows)
    assert out["score"].shape == ((2, 3, 2, 17, 17) if branches == 3 else (2, 1, 17, 17))
    assert ("box" in out) == (branches == 3) and ("masks" in out) == mask
    if branches == 3:
        assert out["box"].shape == (2, 3, 4, 17, 17)
    if mask:
        side = 127 if refine else 63
        assert out["masks"].shape == (3, side, side)
        out["masks"].sum().backward()  # the mask reaches back into the backbone
        assert model.backbone.stem[0].weight.grad.abs().sum() > 0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="siammask.refine needs mask: true"):
        tiny_config("siammask.mask=false", "siammask.refine=true")
    with pytest.raises(ConfigError, match="model.output_stride must be 8"):
        tiny_config("model.output_stride=4")
    with pytest.raises(ConfigError, match="tracker.box_from"):
        tiny_config("tracker.box_from=opt")
    with pytest.raises(ConfigError, match="siammask.prior_gain"):
        tiny_config("siammask.prior_gain=0")


# -- nearest match ---------------------------------------------------------------


def _nearest(branches: int = 2, refine: bool = True, mask: bool = True, **extra) -> SiamMask:
    torch.manual_seed(0)
    return SiamMask(TINY_BACKBONE, SiamMaskConfig(branches=branches, mask=mask, refine=refine, channels=16,
                                                  nearest_match=True, **extra)).eval()


def _disc(batch: int = 2, size: int = 127, radius: float = 30.0) -> torch.Tensor:
    """``(batch, size, size)``: a centred disc, an exemplar's object mask."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    return (((xs - centre) ** 2 + (ys - centre) ** 2) <= radius**2).float().expand(batch, -1, -1)


@pytest.mark.parametrize("branches,refine", [(2, True), (3, False)])
def test_untrained_nearest_match_scores_and_masks_are_the_prior(branches, refine):
    model = _nearest(branches, refine)
    rows = torch.tensor([[0, 8, 8], [1, 0, 16], [1, 5, 3]])
    with torch.no_grad():
        templates = model.templates(torch.rand(2, 3, 127, 127), _disc())
        out = model.respond(templates, torch.rand(2, 3, 255, 255))
        masks = model.row_masks(out, rows)
    prior, kernel, gain = out["prior"], templates["match_kernel"], model.config.prior_gain
    assert prior.shape == (2, 1, 64, 64) and kernel.shape == (2, 1, 32, 32)  # cells 4 crop pixels apart
    torch.testing.assert_close(kernel.sum((1, 2, 3)), torch.ones(2))
    # RoW (i, j) averages the prior over the exemplar's object laid on the search cells from (2i, 2j).
    pooled = torch.tensor([[[(prior[b, 0, 2 * i:2 * i + 32, 2 * j:2 * j + 32] * kernel[b, 0]).sum() for j in range(17)]
                            for i in range(17)] for b in range(2)])
    if branches == 2:
        torch.testing.assert_close(out["score"][:, 0], gain * pooled, rtol=1e-4, atol=1e-4)
    else:  # every anchor's object logit; the background logits are the zeroed head's
        torch.testing.assert_close(out["score"][:, :, 1], gain * pooled[:, None].expand(-1, 5, -1, -1),
                                   rtol=1e-4, atol=1e-4)
        assert bool((out["score"][:, :, 0] == 0).all())
    torch.testing.assert_close(masks, gain * window_prior(prior, rows, model.config.mask_size))
    assert float(prior.abs().max()) > 0


@pytest.mark.parametrize("cells,size", [(64, 127), (32, 127), (64, 63)])
def test_window_prior_samples_the_rows_window(cells, size):
    stride = 256 // cells  # cell m is centred at search pixel stride * m
    ramp = torch.arange(float(cells)).expand(1, 1, cells, cells)  # each cell's column index
    rows = torch.tensor([[0, 3, 0], [0, 16, 12]])
    sampled = window_prior(ramp, rows, size)
    # Mask sample k covers search pixel 8 j + 63 + (k - (S - 1) / 2) * 127 / S (the RoW window's grid).
    pixels = 8 * rows[:, 2:3] + 63 + (torch.arange(float(size)) - (size - 1) / 2) * 127 / size
    torch.testing.assert_close(sampled[:, size // 2], pixels / stride)


def test_the_score_peaks_where_the_exemplar_was_cut_from_the_search_crop():
    model = _nearest()
    search = torch.rand(1, 3, 255, 255)
    for i, j in [(8, 8), (3, 12), (14, 2)]:
        exemplar = search[:, :, 8 * i:8 * i + 127, 8 * j:8 * j + 127]  # RoW (i, j)'s window
        with torch.no_grad():
            score = model.respond(model.templates(exemplar, _disc(1, radius=24)), search)["score"][0, 0]
        assert divmod(int(score.argmax()), 17) == (i, j)


def test_nearest_match_needs_the_exemplar_mask():
    with pytest.raises(ValueError, match="nearest_match needs the exemplar's mask"):
        _nearest().templates(torch.rand(1, 3, 127, 127))


def test_nearest_match_round_trips_and_old_checkpoints_load_without_it(tmp_path):
    model = _nearest(prior_gain=5.0)
    with torch.no_grad():
        model.prior_gain.fill_(7.5)
        model.score_gain.fill_(3.0)
    model.save(tmp_path / "model.pt")
    loaded = SiamMask.from_checkpoint(tmp_path / "model.pt")
    assert loaded.config.nearest_match and loaded.config.prior_gain == 5.0
    assert (loaded.prior_gain.item(), loaded.score_gain.item()) == (7.5, 3.0)
    # A checkpoint written before the option existed has no such keys: it loads as nearest_match=False.
    _untrained(branches=2).save(tmp_path / "old.pt")
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    for key in ("nearest_match", "prior_gain"):
        del payload["siammask_config"][key]
    torch.save(payload, tmp_path / "old.pt")
    assert SiamMask.from_checkpoint(tmp_path / "old.pt").config.nearest_match is False


# -- training --------------------------------------------------------------------


def _assert_lowered(steps: list[dict[str, float]], names: tuple[str, ...], span: int) -> None:
    for name in names:
        values = [step[name] for step in steps]
        assert all(np.isfinite(values)), name
        assert np.mean(values[-span:]) < 0.7 * np.mean(values[:span]), (name, values)


def test_training_lowers_every_loss_and_leaves_model_pt(trained, davis, tmp_path):
    out, steps = trained  # two-branch: L_2B = 32 L_mask + L_sim
    assert len(steps) == 80
    _assert_lowered(steps, ("loss", "similarity", "mask"), 10)
    for name in ("config.yaml", "run.json", "model.pt", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").iterdir())
    tracker = SiamMaskTracker.from_checkpoint(out / "model.pt")
    assert tracker.model.config.branches == 2 and tracker.config == TrackerConfig()
    payload = torch.load(out / "model.pt", weights_only=True)
    assert set(payload) == {"format", "backbone_config", "siammask_config", "tracker", "state_dict"}
    # three-branch: L_3B = 32 L_mask + L_score + L_box
    steps = train_recording(tiny_config(phases(16), *RECIPE), davis, tmp_path / "3b")
    _assert_lowered(steps, ("loss", "score", "box", "mask"), 4)


@pytest.mark.parametrize("variant", ["siammask.branches=2", "siammask.refine=true", "loss.hard_negatives=true",
                                     "siammask.mask=false", "siammask.nearest_match=true"])
def test_every_variant_trains(davis, tmp_path, variant):
    result = Trainer(SiamMaskTask(tiny_config(phases(2), variant, "train.batch_size=2"), davis), tmp_path / "run").run()
    assert len(result["losses"]) == 2 and all(np.isfinite(result["losses"]))
    model = SiamMask.from_checkpoint(tmp_path / "run" / "model.pt")
    assert model.config == tiny_config(variant).siammask


def test_resume_reproduces_the_uninterrupted_run(davis, tmp_path):
    config = tiny_config(phases(4), "train.batch_size=2")
    whole = Trainer(SiamMaskTask(config, davis), tmp_path / "whole").run()["losses"]
    Trainer(SiamMaskTask(config, davis), tmp_path / "split").run(stop_after=2)
    resumed = Trainer(SiamMaskTask(config, davis), tmp_path / "split", resume=True).run()["losses"]
    np.testing.assert_allclose(resumed, whole, rtol=1e-5, atol=1e-6)
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


class _World:
    device, is_main, size, rank = torch.device("cpu"), True, 1, 0


@pytest.mark.parametrize("variant", ["siammask.branches=3", "siammask.branches=2", "siammask.refine=true",
                                     "siammask.mask=false", "siammask.branches=2,siammask.mask=false",
                                     "siammask.nearest_match=true",
                                     "siammask.nearest_match=true,siammask.branches=2,siammask.refine=true",
                                     "siammask.nearest_match=true,siammask.mask=false"])
def test_every_parameter_gets_a_gradient(davis, variant):
    """What DDP (torchrun) needs: no parameter outside the loss, in every variant."""
    task = SiamMaskTask(tiny_config(phases(1), *variant.split(",")), davis)
    model = task.build(_World())
    batch = task.collate([task.dataset(0, 2)[i] for i in range(2)])
    task.losses(model, batch, torch.Generator())["loss"].backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing


def test_youtube_vos_layout_and_2016_masks_train(tmp_path):
    """YouTube-VOS: JPEGImages/<seq>, Annotations/<seq>, masks on some frames only; --year 2016: 0/255 masks."""
    frames, masks = translating_video(num_frames=10, height=64, width=64, seed=4)
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        (tmp_path / "yt" / "JPEGImages" / "clip").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "yt" / "JPEGImages" / "clip" / f"{t:05d}.jpg"),
                    (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8))
        if t % 3 == 0:
            (tmp_path / "yt" / "Annotations" / "clip").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "yt" / "Annotations" / "clip" / f"{t:05d}.png"),
                        (mask.numpy() > 0).astype(np.uint8) * 255)
    task = SiamMaskTask(tiny_config(phases(2), "train.batch_size=2"), tmp_path / "yt", year=2016)
    assert len(Trainer(task, tmp_path / "run").run()["losses"]) == 2
    assert [len(v) for v in task.videos] == [4] and task.describe()["annotated_frames"] == 4


def test_init_takes_the_pretrained_backbone_and_its_architecture(davis, tmp_path):
    pretrained = ResNetBackbone(BackboneConfig(colour_space="lab", widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1)))
    pretrained.save(tmp_path / "backbone.pt")
    task = SiamMaskTask(tiny_config(phases(1)), davis, init=tmp_path / "backbone.pt")
    assert task.config.model == BackboneConfig(colour_space="lab", output_stride=8, widths=(8, 8, 16, 16),
                                               blocks=(1, 1, 1, 1))

    model = task.build(_World())
    for key, value in pretrained.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(model.backbone.state_dict()[key], value)


def test_a_pair_dataset_item_is_centred_on_its_object(davis):
    task = SiamMaskTask(tiny_config(phases(1)), davis)
    task.build(_World())
    item = task.dataset(0, 8)[3]
    assert item["exemplar"].shape == (3, 127, 127) and item["search"].shape == (3, 255, 255)
    box = minmax_box(item["search_mask"][0] > 0.5)
    torch.testing.assert_close(box, item["box"], atol=3.0, rtol=0.05)  # the jitter moves both alike
    assert abs(float(item["box"][0]) - 127) <= 9 and abs(float(item["box"][1]) - 127) <= 9
    assert item["exemplar_mask"].shape == (127, 127)  # the object on the exemplar, cropped with it
    centre = minmax_box(item["exemplar_mask"] > 0.5)[:2]
    assert float((centre - 63).abs().max()) <= 9
    assert torch.equal(task.dataset(0, 8)[3]["search"], item["search"])  # item i depends on (seed, phase, i) only


# -- tracking --------------------------------------------------------------------


def _ious(tracker, frames, masks, label=1):
    out = []
    for step, gt in zip(track(tracker, list(frames), masks[0]), masks[1:]):
        predicted, truth = step.labels() == label, gt == label
        out.append(float((predicted & truth).sum()) / max(float((predicted | truth).sum()), 1.0))
    return out


def test_end_to_end_tracking_of_a_translating_object_keeps_iou_above_0_7(trained):
    frames, masks = translating_video(num_frames=FRAMES, height=SIZE, width=SIZE, velocity=VELOCITIES[0], seed=0)
    ious = _ious(SiamMaskTracker.from_checkpoint(trained[0] / "model.pt"), frames, masks)
    assert min(ious) > 0.7, ious


def _untrained(branches=3, mask=True):
    torch.manual_seed(0)
    return SiamMask(TINY_BACKBONE, SiamMaskConfig(branches=branches, mask=mask, channels=16))


@pytest.mark.parametrize("branches,mask", [(3, True), (2, True), (3, False), (2, False)])
def test_every_mode_tracks_several_objects_and_an_object_at_the_border(branches, mask):
    frames, masks = translating_video(num_frames=4, height=72, width=88, num_objects=2, seed=1)
    masks[0, :10, :12] = 3  # a third object in the corner, touching two borders
    tracker = SiamMaskTracker(_untrained(branches, mask), TrackerConfig(lost_score=0.0, box_from="rotated"))
    steps = list(track(tracker, list(frames), masks[0]))
    assert len(steps) == 3
    for step in steps:
        assert step.probabilities.shape == (4, 72, 88) and step.boxes.shape == (3, 4)
        assert torch.allclose(step.probabilities.sum(0), torch.ones(72, 88), atol=1e-5)
        assert bool(torch.isfinite(step.boxes).all())


def test_untrained_nearest_match_follows_a_translating_object():
    """No training, a random tiny backbone: matching to the first frame's cells alone follows the
    disc (measured: IoU 0.56-0.73, mean 0.62; the same network without nearest_match: 0 in every frame)."""
    frames, masks = translating_video(num_frames=FRAMES, height=SIZE, width=SIZE, velocity=VELOCITIES[0], seed=0)
    ious = _ious(SiamMaskTracker(_nearest(), TrackerConfig(scale_step=1.0375)), frames, masks)
    assert min(ious) > 0.5, ious


def test_a_target_leaving_the_frame_is_kept_at_its_last_box_with_an_empty_mask():
    frames, masks = translating_video(num_frames=8, height=64, width=64, velocity=(6.0, 0.0), seed=2)
    model = _untrained()
    with torch.no_grad():
        model.heads["score"][-1].bias[1::2] = -50.0  # object logits: no RoW scores above lost_score
    tracker = SiamMaskTracker(model, TrackerConfig(lost_score=0.5))
    steps = list(track(tracker, list(frames), masks[0]))
    first = minmax_box(masks[0] == 1)
    for step in steps:
        assert (step.labels() == 0).all()
        torch.testing.assert_close(step.boxes[0, 2:], first[2:].clamp_min(10))
    # Without the lost rule the box follows its best guess but stays inside the frame.
    tracker = SiamMaskTracker(_untrained(), TrackerConfig(lost_score=0.0))
    for step in track(tracker, list(frames), masks[0]):
        centre = step.boxes[0, :2] + (step.boxes[0, 2:] - 1) / 2
        assert 0 <= float(centre[0]) <= 63 and 0 <= float(centre[1]) <= 63


def test_an_empty_first_frame_object_is_a_clear_error():
    frames, masks = translating_video(num_frames=2, height=64, width=64, seed=0)
    labels = masks[0].clone()
    labels[labels == 1] = 2  # label 1 has no pixel
    with pytest.raises(ValueError, match="object label 1 has an empty first-frame mask"):
        SiamMaskTracker(_untrained()).start(frames[0], labels)


# -- the command line ------------------------------------------------------------


def _sets(*overrides: str) -> list[str]:
    return [item for override in (*TINY, *overrides) for item in ("--set", override)]


def test_cli_train_propagate_evaluate(trained, davis, tmp_path, capsys):
    from mast.cli.main import main

    run = tmp_path / "cli"
    assert main(["train-baseline", "siammask", "--data", str(davis), "--sequences", "seq1", "--out", str(run),
                 *_sets(phases(1), "train.batch_size=2")]) == 0
    assert (run / "model.pt").is_file()
    assert main(["train-baseline", "siammask", "--data", str(davis), "--out", str(run), *_sets(phases(1))]) == 2
    assert "already holds a run" in capsys.readouterr().err
    results = tmp_path / "results"
    assert main(["propagate", "--model", "siammask", "--checkpoint", str(trained[0] / "model.pt"),
                 "--davis", str(davis), "--out", str(results), "--box-from", "rotated"]) == 0
    assert "siammask:sha256:" in capsys.readouterr().out
    for name in ("seq0", "seq1", "seq2"):
        assert len(list((results / name).glob("*.png"))) == FRAMES
    assert read_mask(results / "seq0" / "00005.png").max() == 1
    assert main(["evaluate", "--davis", str(davis), "--results", str(results), "--processes", "1"]) == 0
    table = (results / "global_results-val.csv").read_text().splitlines()
    j_and_f = float(table[1].split(",")[0])
    assert j_and_f > 0.5, table


def test_cli_video_with_a_first_box(trained, tmp_path):
    from mast.cli.main import main

    frames, masks = translating_video(num_frames=5, height=SIZE, width=SIZE, velocity=VELOCITIES[0], seed=0)
    folder = tmp_path / "clip"
    folder.mkdir()
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:03d}.png"), (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).astype(np.uint8))
    x, y, w, h = (int(v) for v in minmax_box(masks[0] == 1).tolist())
    box = f"{x - (w - 1) // 2},{y - (h - 1) // 2},{w},{h}"
    assert main(["propagate", "--model", "siammask", "--checkpoint", str(trained[0] / "model.pt"),
                 "--video", str(folder), "--first-box", box, "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out" / "clip").glob("*.png"))) == 5


def test_cli_bad_input_is_one_line_and_writes_nothing(trained, davis, tmp_path, capsys):
    from mast.cli.main import main

    no_masks = tmp_path / "frames-only"
    (no_masks / "JPEGImages" / "480p" / "seq").mkdir(parents=True)
    (no_masks / "Annotations" / "480p" / "seq").mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(no_masks / "JPEGImages" / "480p" / "seq" / f"{t:05d}.jpg"), np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / "run"
    assert main(["train-baseline", "siammask", "--data", str(no_masks), "--out", str(out), *_sets(phases(1))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mast train-baseline: error: ") and "Annotations" in err[-1] and not out.exists()
    checkpoint = str(trained[0] / "model.pt")
    cases = [
        (["--davis", str(davis)], "--checkpoint: --model siammask needs the model.pt"),
        (["--davis", str(davis), "--checkpoint", checkpoint, "--window", "5"], "--window: a setting of the memory"),
        (["--davis", str(davis), "--checkpoint", checkpoint, "--preset", "quick"], "--preset: a setting of the memory"),
        (["--davis", str(davis), "--checkpoint", checkpoint, "--dot", "--no-roi"], "--cosine/--dot: a setting of"),
        (["--davis", str(davis), "--checkpoint", str(davis / "ImageSets" / "2017" / "val.txt")], "cannot read"),
    ]
    for flags, message in cases:
        assert main(["propagate", "--model", "siammask", *flags, "--out", str(tmp_path / "res")]) == 2
        assert message in capsys.readouterr().err
    assert main(["propagate", "--davis", str(davis), "--box-from", "rotated", "--out", str(tmp_path / "res")]) == 2
    assert "--box-from: not a propagation setting of model mast" in capsys.readouterr().err
    empty = tmp_path / "empty.png"
    write_palette_png(empty, np.zeros((SIZE, SIZE), np.uint8))
    assert main(["propagate", "--model", "siammask", "--checkpoint", checkpoint, "--out", str(tmp_path / "res"),
                 "--video", str(davis / "JPEGImages" / "480p" / "seq0"), "--first-mask", str(empty)]) == 2
    assert "the first-frame annotation has no object" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_validation_scores_the_tracker_during_training(davis, tmp_path):
    import json

    from mast.train.validation import Validator

    config = tiny_config(phases(2), "siammask.branches=2", "train.batch_size=2")
    run = tmp_path / "run"
    Trainer(SiamMaskTask(config, davis), run, validator=Validator(davis, every=1, max_frames=4)).run()
    history = json.loads((run / "validation.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [1, 2] and {entry["best"] for entry in history} == {"siammask"}
    assert 0 <= history[-1]["siammask"]["J&F"] <= 1 and (run / "best-model.pt").is_file()


def test_from_checkpoint_returns_the_model_and_the_tracker_applies_overrides_to_the_saved_settings(tmp_path):
    from mast.common.errors import ArgumentError
    from mast.common.outputs import file_sha256

    path = tmp_path / "model.pt"
    saved = _untrained(branches=2)
    saved.save(path, tracker={**TrackerConfig().__dict__, "box_from": "rotated", "lr": 0.2})
    model = SiamMask.from_checkpoint(path)
    assert isinstance(model, SiamMask) and not model.training and model.config == saved.config
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    tracker = SiamMaskTracker.from_checkpoint(path)
    assert (tracker.config.box_from, tracker.config.lr) == ("rotated", 0.2)
    assert tracker.name == f"siammask:sha256:{file_sha256(path)}"
    assert SiamMaskTracker.from_checkpoint(path, "cpu", box_from="minmax").config == TrackerConfig(lr=0.2)
    assert SiamMaskTracker.from_checkpoint(path, box_from=None).config.box_from == "rotated"
    with pytest.raises(ArgumentError, match="not a SiamMask tracker setting") as unknown:
        SiamMaskTracker.from_checkpoint(path, window=0.2)
    with pytest.raises(ArgumentError, match="must be one of minmax, rotated") as bad:
        SiamMaskTracker.from_checkpoint(path, box_from="convex")
    assert (unknown.value.argument, bad.value.argument) == ("window", "box_from")
