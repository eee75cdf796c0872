"""The training loop: learning, exact resume, distributed runs, bad input."""
from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from mast.data.synthetic import translating_video
from mast.common.config import ConfigError
from mast.train.config import TrainingConfig, load_config
from mast.train.loop import Trainer, TrainingAborted
from mast.train.reconstruction import ReconstructionTask

TINY = [
    "model.widths=[8,8,16,16]", "model.blocks=[1,1,1,1]", "model.feature_dim=16",
    "data.size=64", "data.workers=0", "data.scale=[0.5,1.0]", "engine.window=5",
    "train.batch_size=4", "train.log_every=5", "train.image_every=10", "train.checkpoint_every=1000",
    "memory.long_term=[0]", "memory.short_term=[1,2]", "objective.clusters=8",
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two synthetic moving-texture videos as frame folders."""
    root = tmp_path_factory.mktemp("videos")
    for seed in range(2):
        frames, _ = translating_video(num_frames=16, height=80, width=80, seed=seed)
        folder = root / f"video{seed}"
        folder.mkdir()
        for t, frame in enumerate(frames):
            image = (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{t:05d}.png"), image)
    return root


def tiny_config(*overrides: str) -> TrainingConfig:
    torch.set_num_threads(2)
    return load_config(overrides=[*TINY, *overrides])


@pytest.mark.parametrize("objective,lr", [("lab-huber", 3e-3), ("kmeans-ce", 3e-3)])
def test_loss_decreases(videos, tmp_path, caplog, objective, lr):
    caplog.set_level(logging.INFO, logger="mast")
    config = tiny_config(f"objective.name={objective}",
                         f"phases=[{{name: a, mode: pairs, steps: 40, lr: {lr}, lr_milestones: []}}]")
    losses = Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run").run()["losses"]
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10]), losses
    for name in ("config.yaml", "run.json", "backbone.pt", "checkpoints/last.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert list((tmp_path / "run" / "tensorboard").iterdir())
    built = f"building 8 colour centroids from the training videos -> {tmp_path / 'run' / 'centroids.json'}"
    assert (built in caplog.messages) == (objective == "kmeans-ce")
    assert (tmp_path / "run" / "centroids.json").is_file() == (objective == "kmeans-ce")


def test_a_trainer_is_constructed_without_side_effects_and_prepare_raises(videos, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 1, lr: 0.001}]")
    no_data = Trainer(ReconstructionTask(config, [str(tmp_path / "nothing-here")]), tmp_path / "out" / "run")
    into_a_file = Trainer(ReconstructionTask(config, [str(videos)]), notes)
    no_device = Trainer(ReconstructionTask(tiny_config("train.device=tpu"), [str(videos)]), tmp_path / "out" / "run")
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        no_data.prepare()
    with pytest.raises(ValueError, match="is an existing file"):
        into_a_file.run()
    with pytest.raises(ValueError, match="train.device: 'tpu'"):
        no_device.prepare()
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["notes.txt"] and notes.read_text() == "mine"


def test_resume_reproduces_the_uninterrupted_run(videos, tmp_path):
    # On the CPU: GPU atomics and cuDNN's algorithm choice are not bitwise reproducible.
    phases = "phases=[{name: a, mode: pairs, steps: 6, lr: 0.003}, {name: b, mode: memory, steps: 4, lr: 0.001}]"
    config = tiny_config(phases, "train.device=cpu")
    whole = Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "whole").run()["losses"]
    Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "split").run(stop_after=4)
    resumed = Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "split", resume=True).run()["losses"]
    assert len(whole) == 10
    np.testing.assert_allclose(resumed, whole, rtol=1e-5, atol=1e-6)
    a = torch.load(tmp_path / "whole" / "backbone.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "backbone.pt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_a_resumed_run_has_only_the_rest_of_its_time_budget(videos, tmp_path, monkeypatch):
    # Each step takes 10 s of a fake clock: the 1-minute budget holds 6 steps in all.
    import mast.train.loop as loop

    clock = {"now": 0.0}
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=lambda: clock["now"], perf_counter=lambda: clock["now"]))
    real_step = Trainer._step

    def ten_second_step(self, *args):
        clock["now"] += 10.0
        return real_step(self, *args)

    monkeypatch.setattr(Trainer, "_step", ten_second_step)
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 100, lr: 0.001}]", "train.time_budget_minutes=1")
    assert Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run").run(stop_after=4)["steps"] == 4
    clock["now"] += 1000.0  # time between the two parts does not count
    assert Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run", resume=True).run()["steps"] == 6
    spent = Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run", resume=True).run()
    assert spent["steps"] == 6  # nothing left: no step at all, not one more


def test_two_process_gloo_ranks_end_with_identical_weights(videos, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    weights = [tmp_path / f"rank{r}.pt" for r in range(2)]
    mp.spawn(_ddp_rank, args=(2, port, str(videos), str(tmp_path), [str(w) for w in weights]), nprocs=2, join=True)
    first, second = (torch.load(w, weights_only=True) for w in weights)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert (tmp_path / "run" / "backbone.pt").is_file()


def _ddp_rank(rank: int, world: int, port: int, videos: str, tmp: str, weights: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    config = load_config(overrides=[*TINY, "phases=[{name: a, mode: pairs, steps: 3, lr: 0.003}]", "train.device=cpu"])
    trainer = Trainer(ReconstructionTask(config, [videos]), Path(tmp) / "run")
    trainer.run()
    torch.save(trainer.task.backbone.state_dict(), weights[rank])
    from mast.train import distributed

    distributed.teardown()


def test_corrupt_video_is_skipped_with_a_warning(videos, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.mp4").write_bytes(os.urandom(2048))
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 2, lr: 0.001}]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(ReconstructionTask(config, [str(data), str(videos)]), tmp_path / "run").prepare()
    assert any("broken.mp4" in str(w.message) for w in caught)
    assert trainer.task.sources.num_skipped == 1
    trainer.run()
    assert "broken.mp4" in (tmp_path / "run" / "run.json").read_text()
    with pytest.raises(ValueError, match="broken.mp4|no usable"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Trainer(ReconstructionTask(config, [str(data)]), tmp_path / "other").prepare()


def test_non_finite_losses_are_skipped_then_abort(videos, tmp_path, monkeypatch):
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 8, lr: 0.001}]", "train.max_bad_steps=3",
                         "train.checkpoint_every=2")
    trainer = Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run").prepare()
    real_loss = trainer.task.objective.loss
    calls = {"n": 0}

    def flaky(reconstruction, prepared):
        calls["n"] += 1
        loss = real_loss(reconstruction, prepared)
        return loss * float("nan") if calls["n"] in (2, 5, 6, 7) else loss

    monkeypatch.setattr(trainer.task.objective, "loss", flaky)
    with pytest.raises(TrainingAborted, match="3 non-finite"):
        trainer.run()
    assert trainer.progress.skipped == 4
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_bad_config_and_init_errors(videos, tmp_path):
    with pytest.raises(ConfigError, match="engine.windw"):
        load_config(overrides=["engine.windw=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.*train.batchsize"):
        load_config(bad)
    from mast.models.backbone import BackboneConfig, ResNetBackbone

    ResNetBackbone(BackboneConfig(feature_dim=8, widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1))).save(tmp_path / "other.pt")
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 1, lr: 0.001}]")
    with pytest.raises(ValueError, match="other.pt"):
        Trainer(ReconstructionTask(config, [str(videos)], init=tmp_path / "other.pt"), tmp_path / "run").prepare()
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        Trainer(ReconstructionTask(config, [str(tmp_path / "nothing-here")]), tmp_path / "run").prepare()


def test_cli_pretrain_then_finetune(videos, tmp_path, capsys):
    from mast.cli.main import main

    sets = [item for override in TINY for item in ("--set", override)]
    phases = ["--set", "phases=[{name: a, mode: pairs, steps: 2, lr: 0.001}]"]
    assert main(["pretrain", "--data", str(videos), "--out", str(tmp_path / "pre"), *sets, *phases]) == 0
    lines = capsys.readouterr().err.splitlines()  # the library's log messages, one line each
    assert any(re.fullmatch(r"mast pretrain: 2 videos \(0 unreadable, skipped\) on \S+, 1 process\(es\)", line)
               for line in lines), lines
    assert main(["pretrain", "--data", str(videos), "--out", str(tmp_path / "pre"), *sets, *phases]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["finetune", "--init", str(tmp_path / "pre" / "backbone.pt"), "--data", str(videos),
                 "--out", str(tmp_path / "fine"), *sets, *phases]) == 0
    assert (tmp_path / "fine" / "backbone.pt").is_file()


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    """A DAVIS-layout root with a mask for every frame (two objects)."""
    from mast.common.masks import write_palette_png

    root = tmp_path_factory.mktemp("davis")
    for seed in range(2):
        frames, masks = translating_video(num_frames=12, height=80, width=80, num_objects=2, seed=seed)
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            folder = root / "JPEGImages" / "480p" / f"seq{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            image = (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{t:05d}.jpg"), image)
            write_palette_png(root / "Annotations" / "480p" / f"seq{seed}" / f"{t:05d}.png", mask.numpy().astype(np.uint8))
    return root


def test_mask_ce_learns_from_annotated_clips(annotated, tmp_path):
    config = tiny_config("objective.name=mask-ce", "objective.max_objects=3",
                         "phases=[{name: a, mode: pairs, steps: 30, lr: 0.003, lr_milestones: []}]")
    losses = Trainer(ReconstructionTask(config, [str(annotated)]), tmp_path / "run").run()["losses"]
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8]), losses


def test_mask_ce_needs_annotations(videos, tmp_path):
    config = tiny_config("objective.name=mask-ce", "phases=[{name: a, mode: pairs, steps: 1, lr: 0.001}]")
    with pytest.raises(ValueError, match="no annotation"):
        Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run").run()
