"""RANet (docs/baselines.md §7.3): ranking, correlation, losses, training, tracking, the CLI, bad input."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mast.common.config import ConfigError
from mast.common.masks import read_mask, write_palette_png
from mast.data.synthetic import translating_video
from mast.models.backbone import BackboneConfig
from mast.models.matching import nearest_correlation
from mast.models.ranet.model import (RANet, RANetConfig, best_correlation, correlation_maps, discriminant_scores,
                                     gather_maps, neighbourhood_maxima, rank_side)
from mast.models.ranet.tracker import RANetTracker, loose_box, merge_objects
from mast.models.tracker import track
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.ranet.config import RANetDataConfig, RANetTrainingConfig
from mast.train.ranet.data import RANetDataset, perturb_mask
from mast.train.ranet.losses import mask_losses, soft_iou_loss
from mast.train.ranet.task import RANetTask

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_BACKBONE = BackboneConfig(colour_space="rgb", output_stride=8, feature_dim=16, widths=(8, 16, 32, 32),
                               blocks=(1, 1, 1, 1))
TINY = ["model.widths=[8,16,32,32]", "model.blocks=[1,1,1,1]", "model.feature_dim=16", "ranet.ranked_maps=24",
        "ranet.decoder_width=16", "data.size=[64,64]", "data.workers=0", "data.max_gap=4", "data.dilate=2",
        "data.shift=2", "data.scale=[0.7,1.0]", "train.batch_size=8", "train.log_every=5", "train.image_every=20",
        "train.checkpoint_every=1000", "train.amp=false"]


def tiny_model(**ranet) -> RANet:
    return RANet(TINY_BACKBONE, RANetConfig(**{"decoder_width": 8, **ranet})).eval()


def write_davis(root: Path, videos: dict[str, tuple[torch.Tensor, torch.Tensor]], masks: bool = True) -> Path:
    """A DAVIS-layout folder (JPEGImages/480p, Annotations/480p, ImageSets/2017/val.txt) of ``videos``."""
    for name, (frames, ids) in videos.items():
        images = root / "JPEGImages" / "480p" / name
        images.mkdir(parents=True)
        for t, frame in enumerate(frames):
            pixels = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(images / f"{t:05d}.jpg", quality=95)
            if masks:
                path = root / "Annotations" / "480p" / name / f"{t:05d}.png"
                write_palette_png(path, ids[t].numpy().astype(np.uint8))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(videos) + "\n")
    return root


def synthetic(seed: int, objects: int = 1, frames: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return translating_video(num_frames=frames, height=64, width=64, num_objects=objects, seed=seed)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    """Training videos: one and two translating discs."""
    root = tmp_path_factory.mktemp("davis")
    return write_davis(root, {"one": synthetic(0), "two": synthetic(1, objects=2), "three": synthetic(2)})


@pytest.fixture(scope="module")
def trained(davis, tmp_path_factory):
    """A tiny RANet trained for a few dozen steps on ``davis``: ``(run folder, loop summary)``."""
    out = tmp_path_factory.mktemp("run") / "ranet"
    config = load_config(overrides=[*TINY, "phases=[{name: ranet, steps: 60, lr: 0.003, lr_milestones: [0.7]}]"],
                         schema=RANetTrainingConfig)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # set up before the per-test fixture _threads
    try:
        summary = Trainer(RANetTask(config, davis, None, 2017, None), out).run()
    finally:
        torch.set_num_threads(before)
    return out, summary


# -- the ranking attention module ---------------------------------------------------------------------------------


def test_ranking_keeps_256_plus_256_maps_in_score_order():
    model = tiny_model()  # the default: 256 maps per side
    assert model.config.ranked_maps == 256
    frame = torch.rand(1, 3, 256, 256)  # 32 x 32 = 1024 template pixels
    mask = torch.zeros(1, 256, 256)
    mask[:, 40:200, 64:184] = 1  # 20 x 15 = 300 foreground cells
    with torch.no_grad():
        template = model.template(model.encode(frame), mask)
        current = model.encode(torch.rand(1, 3, 256, 256))
        maps, indices = model.ranked_maps(template, current)
    assert maps.shape == (1, 512, 32, 32) and indices.shape == (1, 512)
    foreground = template.foreground[0]
    assert int(foreground.sum()) == 300
    brute = correlation_maps(template.features, current.embedding)[0]  # (1024, 32, 32)
    scores = template.learned[0] + brute.flatten(1).amax(dim=1)
    for side, chosen in ((foreground, indices[0, :256]), (~foreground, indices[0, 256:])):
        assert bool(side[chosen].all()) and len(set(chosen.tolist())) == 256
        expected = torch.nonzero(side)[:, 0][scores[side].argsort(descending=True)[:256]]
        torch.testing.assert_close(scores[chosen], scores[expected])  # the 256 best, best first
        assert bool((scores[chosen][:-1] >= scores[chosen][1:]).all())
    gates = torch.sigmoid(template.learned[0])
    torch.testing.assert_close(maps[0], brute[indices[0]] * gates[indices[0], None, None], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cells", [1, 0])
def test_ranking_fills_with_zero_maps_when_the_mask_is_tiny_or_empty(cells):
    model = tiny_model(ranked_maps=16)
    mask = torch.zeros(1, 64, 64)
    mask[:, 8:8 + 8 * cells, 16:16 + 8 * cells] = 1  # one feature cell, or none
    with torch.no_grad():
        template = model.template(model.encode(torch.rand(1, 3, 64, 64)), mask)
        current = model.encode(torch.rand(1, 3, 64, 64))
        maps, indices = model.ranked_maps(template, current)
        logits = model(torch.rand(1, 3, 64, 64), mask, torch.rand(1, 3, 64, 64), mask)
    assert indices[0, :16].tolist() == [1 * 8 + 2] * cells + [-1] * (16 - cells)
    assert bool((maps[0, cells:16] == 0).all()) and bool((maps[0, :cells].abs().sum((1, 2)) > 0).all())
    assert bool((indices[0, 16:] >= 0).all())  # the background has 63 or 64 cells
    assert logits.shape == (1, 64, 64) and bool(torch.isfinite(logits).all())


def test_rank_side_pads_and_prefers():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3]])
    side = torch.tensor([[True, True, False, True, True]])
    assert rank_side(scores, side, 6).tolist() == [[1, 3, 4, 0, -1, -1]]
    preferred = torch.tensor([[True, False, False, False, True]])
    assert rank_side(scores, side, 3, preferred).tolist() == [[4, 0, 1]]  # maxima first, each group by score


def test_correlation_maps_equal_brute_force():
    template = torch.nn.functional.normalize(torch.randn(2, 5, 4), dim=2)
    current = torch.nn.functional.normalize(torch.randn(2, 4, 3, 6), dim=1)
    maps = correlation_maps(template, current)
    for b in range(2):
        for n in range(5):
            for i in range(3):
                for j in range(6):
                    expected = sum(float(template[b, n, c]) * float(current[b, c, i, j]) for c in range(4))
                    assert math.isclose(float(maps[b, n, i, j]), expected, abs_tol=1e-5)
    torch.testing.assert_close(best_correlation(template, current, chunk=2), maps.flatten(2).amax(dim=2))
    indices = torch.tensor([[3, -1], [0, 4]])
    chosen = gather_maps(template, indices, current)
    torch.testing.assert_close(chosen[0, 0], maps[0, 3])
    assert bool((chosen[0, 1] == 0).all())
    torch.testing.assert_close(chosen[1], maps[1, [0, 4]])


def test_untrained_nearest_match_labels_each_pixel_by_its_nearest_template_pixel():
    model = tiny_model(ranked_maps=8, nearest_match=True)
    frames = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 64, 64)
    mask[:, 16:40, 16:40] = 1
    template, current = model.encode(frames), model.encode(frames.flip(0))
    with torch.no_grad():
        ranking = model.template(template, mask)
        logits = model.segment(ranking, current, mask)
        nearest = nearest_correlation(ranking.features, ranking.foreground, current.embedding)
    prior = torch.nn.functional.interpolate(nearest[:, :1] - nearest[:, 1:], size=(64, 64), mode="bilinear",
                                            align_corners=False)[:, 0]
    torch.testing.assert_close(logits, model.config.prior_gain * prior)
    assert float((logits > 0).float().mean()) > 0


def test_nearest_match_round_trips_and_old_checkpoints_load_without_it(tmp_path):
    model = tiny_model(ranked_maps=8, nearest_match=True, prior_gain=5.0)
    with torch.no_grad():
        model.prior_gain.fill_(7.5)
    model.save(tmp_path / "model.pt")
    loaded = RANet.from_checkpoint(tmp_path / "model.pt")
    assert loaded.config.nearest_match and loaded.config.prior_gain == 5.0
    assert loaded.prior_gain.item() == 7.5
    # A checkpoint written before the option existed has no such keys: it loads as nearest_match=False.
    old = tiny_model(ranked_maps=8)
    old.save(tmp_path / "old.pt")
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    for key in ("nearest_match", "prior_gain"):
        del payload["ranet_config"][key]
    torch.save(payload, tmp_path / "old.pt")
    assert RANet.from_checkpoint(tmp_path / "old.pt").config.nearest_match is False
    with pytest.raises(ConfigError, match="prior_gain"):
        RANetConfig(prior_gain=0)


def test_discriminant_score_and_neighbourhood_maxima_by_hand():
    # Four pixels on a line of 1-d "features": foreground {0, 1}, background {2, 3}.
    features = torch.tensor([[[1.0], [0.5], [-0.5], [-1.0]]])
    foreground = torch.tensor([[True, True, False, False]])
    # topk 1: pixel 0's best other-fg correlation is 0.5 (pixel 1), best bg -0.5 -> 1.0;
    # pixel 1: fg 0.5, bg -0.25 -> 0.75; pixel 2: bg 0.5, fg -0.25 -> 0.75; pixel 3: 0.5 - (-0.5) = 1.0.
    torch.testing.assert_close(discriminant_scores(features, foreground, topk=1, chunk=3),
                               torch.tensor([[1.0, 0.75, 0.75, 1.0]]))
    # topk 8 sums what there is: pixel 0: 0.5 - (-0.5 - 1.0) = 2.0.
    assert math.isclose(float(discriminant_scores(features, foreground, topk=8)[0, 0]), 2.0)
    scores = torch.tensor([[[1.0, 3.0, 2.0, 4.0, 5.0]]])  # 5.0 is of the other side
    side = torch.tensor([[[True, True, True, True, False]]])
    assert neighbourhood_maxima(scores, side, 3).tolist() == [[[False, True, False, True, False]]]


def test_variants_run_and_change_the_ranking():
    frame, mask = torch.rand(1, 3, 64, 64), torch.zeros(1, 64, 64)
    mask[:, 8:40, 8:40] = 1
    rankings = []
    for variant in ({}, {"discriminant": True}, {"neighbourhood_max": True}):
        torch.manual_seed(0)
        model = tiny_model(ranked_maps=8, **variant)
        with torch.no_grad():
            encoded = model.encode(frame)
            rankings.append(model.ranked_maps(model.template(encoded, mask), encoded)[1])
    assert not torch.equal(rankings[0], rankings[1]) and not torch.equal(rankings[0], rankings[2])


# -- losses ---------------------------------------------------------------------------------------------------------


def test_soft_iou_equals_its_definition_on_hand_cases():
    big = 50.0  # sigmoid(50) == 1 and sigmoid(-50) == 0 in float32
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert math.isclose(float(soft_iou_loss(torch.tensor([[[big, big], [-big, -big]]]), target)), 0.0, abs_tol=1e-6)
    assert math.isclose(float(soft_iou_loss(torch.tensor([[[-big, -big], [big, big]]]), target)), 1.0, abs_tol=1e-6)
    # Everything at probability 0.5: I = 1, U = 2 + 2 - 1 = 3 -> L = 2/3.
    assert math.isclose(float(soft_iou_loss(torch.zeros(1, 2, 2), target)), 2 / 3, rel_tol=1e-6)
    # Per sample, then averaged: half the mask found (I = 1, U = 2 -> 0.5) and a perfect one (0).
    logits = torch.tensor([[[big, -big], [-big, -big]], [[big, big], [-big, -big]]])
    assert math.isclose(float(soft_iou_loss(logits, target.expand(2, -1, -1))), 0.25, abs_tol=1e-6)
    x = torch.tensor([[[0.3, -1.2], [2.0, 0.1]]])
    p = torch.sigmoid(x)
    m = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    i = (p * m).sum()
    assert math.isclose(float(soft_iou_loss(x, m)), float(1 - i / (p.sum() + m.sum() - i)), rel_tol=1e-6)


def test_soft_iou_is_differentiable():
    logits = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(2, 3, 4) > 0.5).double()
    assert torch.autograd.gradcheck(lambda x: soft_iou_loss(x, target), (logits,))
    assert soft_iou_loss(logits, target).dtype == torch.float64


def test_loss_choice():
    logits, target = torch.randn(2, 4, 4), (torch.rand(2, 4, 4) > 0.5).float()
    both = mask_losses(logits, target, "both")
    torch.testing.assert_close(both["loss"], both["bce"] + both["soft_iou"])
    torch.testing.assert_close(mask_losses(logits, target, "bce")["loss"], both["bce"])
    torch.testing.assert_close(mask_losses(logits, target, "soft-iou")["loss"], both["soft_iou"])
    with pytest.raises(ValueError, match="loss must be one of"):
        mask_losses(logits, target, "dice")


# -- data -------------------------------------------------------------------------------------------------------------


def test_previous_mask_perturbation():
    mask = torch.zeros(20, 20)
    mask[8:12, 8:12] = 1
    found = set()
    for seed in range(40):
        out = perturb_mask(mask, dilate=2, shift=3, generator=torch.Generator().manual_seed(seed))
        assert out.shape == mask.shape and set(out.unique().tolist()) <= {0.0, 1.0}
        found.add(int(out.sum()))
    assert found == {0, 4, 16, 36, 64}  # eroded by 2 and 1, kept, dilated by 1 and 2
    same = perturb_mask(mask, 0, 0, torch.Generator().manual_seed(0))
    assert torch.equal(same, mask)


def test_samples_are_seeded_and_hold_one_object(davis):
    from mast.data.annotated import discover_annotated

    videos = discover_annotated(davis)
    dataset = RANetDataset(videos, 10, RANetDataConfig(size=(48, 56), dilate=2, shift=2), seed=3, phase=0)
    first, again = dataset[4], dataset[4]
    for key in ("template", "current", "template_mask", "target", "previous"):
        assert torch.equal(first[key], again[key])
    assert first["template"].shape == (3, 48, 56) and first["target"].shape == (48, 56)
    assert float(first["template_mask"].sum()) > 0 and set(first["target"].unique().tolist()) <= {0.0, 1.0}


# -- training and tracking ----------------------------------------------------------------------------------------


def test_a_few_dozen_steps_lower_the_loss(trained):
    out, summary = trained
    losses = summary["losses"]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert (out / "model.pt").is_file() and (out / "config.yaml").is_file()


@pytest.mark.parametrize("min_crop", [None, 48])
def test_end_to_end_translating_object(trained, min_crop):
    """Whole frames, and the loose box of the previous mask (a 21-pixel disc: a 48-pixel box)."""
    frames, masks = synthetic(7, frames=10)  # a video not trained on
    tracker = RANetTracker.from_checkpoint(trained[0] / "model.pt", loose_crop=min_crop is not None,
                                           min_crop=min_crop or 64)
    steps = list(track(tracker, frames, masks[0]))
    scores = [iou(step.labels() == 1, masks[t] == 1) for t, step in enumerate(steps, 1)]
    assert np.mean(scores) > 0.7, scores
    if min_crop is not None:  # far from the object, outside every box, is background for sure
        assert all(float(step.probabilities[0, :, 60:].min()) > 0.99 for step in steps[:3])


def test_two_objects_stay_separate(trained):
    frames, masks = synthetic(8, objects=2, frames=8)
    tracker = RANetTracker.from_checkpoint(trained[0] / "model.pt")
    steps = list(track(tracker, frames, masks[0]))
    for label in (1, 2):
        scores = [iou(step.labels() == label, masks[t] == label) for t, step in enumerate(steps, 1)]
        assert np.mean(scores) > 0.6, (label, scores)
    for step in steps:
        torch.testing.assert_close(step.probabilities.sum(0), torch.ones(64, 64))


def test_merge_gives_every_pixel_one_label():
    objects = torch.tensor([[[0.9, 0.9, 0.1]], [[0.8, 0.1, 0.1]]])  # (2 objects, 1, 3)
    merged = merge_objects(objects)
    assert merged.shape == (3, 1, 3)
    torch.testing.assert_close(merged.sum(0), torch.ones(1, 3))
    assert merged.argmax(0).tolist() == [[1, 1, 0]]  # overlap -> the likelier object; nothing -> background


def test_loose_box():
    masks = torch.zeros(2, 100, 200)
    masks[0, 40:60, 50:70] = 1
    masks[1, 40:60, 90:110] = 1  # together: x 50..109, y 40..59
    assert loose_box(masks, 1.5, minimum=10) == (35, 35, 125, 65)
    assert loose_box(masks, 1.5, minimum=64) == (35, 18, 125, 82)
    assert loose_box(torch.zeros(1, 30, 40), 1.5) == (0, 0, 40, 30)


def test_an_object_that_disappears_does_not_crash():
    frames, masks = synthetic(3, objects=2, frames=4)
    tracker = RANetTracker(tiny_model(ranked_maps=8))
    tracker.start(frames[0], masks[0])
    tracker.previous[1] = 0  # as if object 2 had vanished
    assert tracker.step(frames[1]).probabilities.shape == (3, 64, 64)


def test_resume_reproduces_the_uninterrupted_run(davis, tmp_path):
    overrides = [*TINY, "phases=[{name: ranet, steps: 3, lr: 0.001}]", "train.batch_size=2"]
    config = load_config(overrides=overrides, schema=RANetTrainingConfig)
    Trainer(RANetTask(config, davis), tmp_path / "full").run()
    Trainer(RANetTask(config, davis), tmp_path / "cut").run(stop_after=2)
    Trainer(RANetTask(config, davis), tmp_path / "cut", resume=True).run()
    full, cut = (RANet.from_checkpoint(tmp_path / name / "model.pt").state_dict() for name in ("full", "cut"))
    for key in full:
        torch.testing.assert_close(full[key], cut[key])


@pytest.mark.parametrize("variant", [{}, {"discriminant": True, "neighbourhood_max": True}, {"nearest_match": True}])
def test_every_parameter_learns(variant):
    """What DDP needs of a model (the loop's DDP itself is tests/test_train.py's): no unused parameter."""
    model = tiny_model(ranked_maps=8, **variant).train()
    mask = torch.zeros(2, 64, 64)
    mask[:, 16:40, 16:40] = 1
    model(torch.rand(2, 3, 64, 64), mask, torch.rand(2, 3, 64, 64), mask).mean().backward()
    # embed.0's gradient is zero at initialisation (behind the zero-initialised embed.2), but it has one.
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


def test_restore_names_both_configs(davis, tmp_path):
    config = load_config(overrides=[*TINY, "phases=[{name: ranet, steps: 1}]", "train.batch_size=2"],
                         schema=RANetTrainingConfig)
    Trainer(RANetTask(config, davis), tmp_path / "run").run()
    other = RANetTask(replace(config, ranet=replace(config.ranet, ranked_maps=8)), davis)
    trainer = Trainer(other, tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="'ranked_maps': 24.*'ranked_maps': 8"):
        trainer.run()


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_train_propagate_evaluate(davis, tmp_path, capsys):
    from mast.cli.main import main

    sets = [item for override in TINY for item in ("--set", override)]
    run = tmp_path / "run"
    assert main(["train-baseline", "ranet", "--data", str(davis), "--sequences", "one,two", "--out", str(run), *sets,
                 "--set", "phases=[{name: ranet, steps: 2, lr: 0.001}]", "--set", "train.time_budget_minutes=5"]) == 0
    assert (run / "model.pt").is_file()
    assert load_config(run / "config.yaml", schema=RANetTrainingConfig).train.time_budget_minutes == 5
    results = tmp_path / "results"
    assert main(["propagate", "--model", "ranet", "--checkpoint", str(run / "model.pt"), "--davis", str(davis),
                 "--out", str(results)]) == 0
    assert read_mask(results / "two" / "00011.png").shape == (64, 64)
    capsys.readouterr()
    assert main(["evaluate", "--davis", str(davis), "--results", str(results), "--processes", "1"]) == 0
    assert "J&F" in capsys.readouterr().out
    clip = tmp_path / "clip"
    clip.mkdir()
    frames, masks = synthetic(5, frames=3)
    for t, frame in enumerate(frames):
        Image.fromarray((frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(clip / f"{t:05d}.png")
    write_palette_png(tmp_path / "first.png", masks[0].numpy().astype(np.uint8))
    assert main(["propagate", "--model", "ranet", "--checkpoint", str(run / "model.pt"), "--video", str(clip),
                 "--first-mask", str(tmp_path / "first.png"), "--out", str(tmp_path / "video")]) == 0
    assert len(list((tmp_path / "video" / "clip").glob("*.png"))) == 3


def test_cli_bad_input_is_one_line(davis, tmp_path, capsys):
    from mast.cli.main import main

    bare = write_davis(tmp_path / "bare", {"s": synthetic(0, frames=3)}, masks=False)
    (bare / "Annotations" / "480p").mkdir(parents=True)
    assert main(["train-baseline", "ranet", "--data", str(bare), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("mast train-baseline: error: ") and "Annotations" in error
    sets = [item for override in TINY for item in ("--set", override)]
    assert main(["train-baseline", "ranet", "--data", str(davis), "--year", "2016", "--out", str(tmp_path / "y"),
                 *sets]) == 2  # palette ids 1, 2 read as 0/255 masks: no object anywhere, found up front
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "holds object ids 1 and no value above 127, in which DAVIS-2016 finds no object; DAVIS-2017 masks "
        "(object ids) need --year 2017")
    assert not (tmp_path / "y").exists()
    assert main(["propagate", "--model", "ranet", "--davis", str(davis), "--sequences", "one",
                 "--out", str(tmp_path / "p")]) == 2
    assert "--checkpoint: --model ranet needs the model.pt" in capsys.readouterr().err
    not_ranet = tmp_path / "backbone.pt"
    torch.save({"state_dict": {}}, not_ranet)
    assert main(["propagate", "--model", "ranet", "--checkpoint", str(not_ranet), "--davis", str(davis),
                 "--sequences", "one", "--out", str(tmp_path / "p")]) == 2
    assert "is not a RANet model.pt" in capsys.readouterr().err
    assert main(["propagate", "--model", "ranet", "--checkpoint", str(not_ranet), "--window", "5", "--davis",
                 str(davis), "--sequences", "one", "--out", str(tmp_path / "p")]) == 2
    assert "--window: a setting of the memory propagator (--model mast), not of --model ranet" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="model.output_stride"):
        load_config(overrides=["model.output_stride=4"], schema=RANetTrainingConfig)
    with pytest.raises(ConfigError, match="loss"):
        load_config(overrides=["loss=dice"], schema=RANetTrainingConfig)


def test_wrong_mask_sizes_and_empty_first_labels_are_refused():
    model = tiny_model(ranked_maps=8)
    frame = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"template mask must be \(B, H, W\) at the template frame's size \(64, 64\)"):
        model(frame, torch.zeros(1, 32, 32), frame, torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="previous mask must be"):
        model(frame, torch.zeros(1, 64, 64), frame, torch.zeros(1, 64, 60))
    tracker = RANetTracker(model)
    with pytest.raises(ValueError, match="hold no object"):
        tracker.start(frame[0], torch.zeros(64, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"first-frame labels are \(32, 32\) but the frame is \(64, 64\)"):
        tracker.start(frame[0], torch.ones(32, 32, dtype=torch.long))


# (8, 8, 8, 8): layer3's stride becomes 2 between equal widths, adding a shortcut the source lacks.
@pytest.mark.parametrize("widths", [(8, 8, 16, 16), (8, 8, 8, 8)])
def test_init_takes_the_backbone_of_a_pretrain_checkpoint(davis, tmp_path, widths):
    from mast.models.backbone import ResNetBackbone

    backbone = ResNetBackbone(BackboneConfig(colour_space="lab", feature_dim=16, widths=widths, blocks=(1, 1, 1, 1)))
    backbone.save(tmp_path / "backbone.pt")
    config = load_config(overrides=[*TINY, "phases=[{name: ranet, steps: 1}]", "train.batch_size=2"],
                         schema=RANetTrainingConfig)
    task = RANetTask(config, davis, ["one"], 2017, tmp_path / "backbone.pt")
    assert task.config.model == replace(backbone.config, output_stride=8)
    Trainer(task, tmp_path / "run").run()
    assert load_config(tmp_path / "run" / "config.yaml", schema=RANetTrainingConfig).model.colour_space == "lab"
    assert RANet.from_checkpoint(tmp_path / "run" / "model.pt").backbone.config.widths == widths


def test_validation_scores_the_tracker_during_training(davis, tmp_path):
    import json

    import cv2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mast.train.validation import Validator

    config = load_config(overrides=[*TINY, "phases=[{name: ranet, steps: 2, lr: 0.001}]", "train.batch_size=2"],
                         schema=RANetTrainingConfig)
    run = tmp_path / "run"
    Trainer(RANetTask(config, davis), run, validator=Validator(davis, every=2, max_frames=4, sequences=["one"])).run()
    history = json.loads((run / "validation.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [2] and history[0]["best"] == "ranet"
    assert 0 <= history[0]["ranet"]["J&F"] <= 1 and (run / "best-model.pt").is_file()
    # the baseline's learning curve: a picture beside validation.json and TensorBoard's val/*
    assert cv2.imread(str(run / "validation.png")) is not None
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert [event.step for event in events.Scalars("val/J&F")] == [event.step for event in
                                                                    events.Scalars("val/ranet/J&F")] == [2]


def test_from_checkpoint_returns_the_model_and_names_the_tracker_by_the_file(tmp_path):
    from mast.common.outputs import file_sha256

    path = tmp_path / "model.pt"
    saved = tiny_model(ranked_maps=8)
    saved.save(path)
    model = RANet.from_checkpoint(path)
    assert isinstance(model, RANet) and model.config == saved.config
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    assert RANetTracker.from_checkpoint(path, "cpu").name == f"ranet:sha256:{file_sha256(path)}"
