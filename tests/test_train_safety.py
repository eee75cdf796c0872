"""`mast pretrain` / `finetune` refuse bad input up front, writing nothing, and
survive frames that do not decode."""
from __future__ import annotations

import hashlib
import re
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from mast.cli.main import main
from mast.common.config import ConfigError
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask
from tests.test_train import TINY, tiny_config, videos  # noqa: F401 (videos is a fixture)

ONE_STEP = "phases=[{name: a, mode: pairs, steps: 1, lr: 0.001}]"
SETS = [item for override in [*TINY, ONE_STEP] for item in ("--set", override)]


def _error_line(capsys, command: str = "pretrain") -> str:
    """The error, which must be one line, and the last one (a progress bar may precede it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith(f"mast {command}: error: "), lines
    return lines[-1]


def _checksums(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("override,named", [
    ("train.batch_size=0", "train.batch_size"),
    ("phases.0.steps=-3", "phases.0.steps"),
    ("phases.0.lr=0", "phases.0.lr"),
    ("data.size=0", "data.size"),
    ("data.workers=-1", "data.workers"),
    ("model.widths=[8,8,16]", "model.widths"),
    ("model.blocks=[1,1,1,1,1]", "model.blocks"),
    ("train.checkpoint_every=0", "train.checkpoint_every"),
    ("train.log_every=0", "train.log_every"),
    ("train.image_every=-1", "train.image_every"),
    ("train.time_budget_minutes=0", "train.time_budget_minutes"),
    ("phases.0.lr_milestones=[0.5,1.0]", "phases.0.lr_milestones"),
    ("phases.0.pair_gap_probs=[0.5,0.5]", "phases.0.pair_gap_probs"),
    ("phases.0.pair_gap_probs=[0.5,0.4,0.3]", "phases.0.pair_gap_probs"),
    ("phases.0.mode=triples", "phases.0.mode"),
    ("objective.name=l2", "objective.name"),
    ("engine.window=4", "engine.window"),
    ("memory.short_term=[0]", "memory.short_term"),
])
def test_bad_set_values_are_refused_before_anything_is_written(videos, tmp_path, capsys, override, named):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(videos), "--out", str(out), *SETS, "--set", override]) == 2
    error = _error_line(capsys)
    assert named in error and f"got {yaml.safe_load(override.split('=', 1)[1])!r}" in error
    assert not out.exists()


def test_unknown_set_keys_list_the_known_keys_at_their_level(videos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(videos), "--out", str(out), *SETS, "--set", "train.batchsize=4"]) == 2
    assert "train.batchsize (known at train: amp, batch_size, checkpoint_every" in _error_line(capsys)
    assert main(["pretrain", "--data", str(videos), "--out", str(out), *SETS, "--set", "phases.0.stepz=4"]) == 2
    assert "known at phases.0: lr, lr_gamma" in _error_line(capsys)
    assert not out.exists()


def test_related_values_are_checked_once_every_override_is_in():
    config = load_config(overrides=["phases.0.pair_gaps=[1,4]", "phases.0.pair_gap_probs=[0.25,0.75]"])
    assert config.phases[0].pair_gap_probs == (0.25, 0.75)
    with pytest.raises(ConfigError, match="model.colour_space lab"):
        load_config(overrides=["model.colour_space=rgb"])  # lab-huber reconstructs LAB channels


@pytest.mark.parametrize("device,message", [
    ("tpu", "train.device: 'tpu' is not a device"),
    ("cuda", "train.device: 'cuda': CUDA is not available"),
])
def test_a_device_this_machine_lacks_is_a_one_line_error(videos, tmp_path, capsys, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(videos), "--out", str(out), *SETS, "--set", f"train.device={device}"]) == 2
    assert message in _error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("relation", ["is", "lies inside", "contains"])
def test_an_output_overlapping_the_data_is_refused(videos, tmp_path, capsys, relation):
    data = tmp_path / "data" / "videos"
    shutil.copytree(videos, data)
    out = {"is": data, "lies inside": data / "video0" / "run", "contains": tmp_path / "data"}[relation]
    before = _checksums(tmp_path)
    assert main(["pretrain", "--data", str(videos), str(data), "--out", str(out), *SETS]) == 2
    assert f"{relation} the input --data {data}" in _error_line(capsys)
    assert _checksums(tmp_path) == before and not (data / "video0" / "run").exists()


def test_an_output_that_is_a_file_is_refused(videos, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert main(["pretrain", "--data", str(videos), "--out", str(out), *SETS]) == 2
    assert "is an existing file" in _error_line(capsys) and out.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_clips_with_undecodable_frames_are_replaced_and_counted(videos, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(videos, data)
    for index in (5, 12):  # frames of clips this seed draws
        (data / "video0" / f"{index:05d}.png").write_bytes(b"\x89PNG truncated")
    config = tiny_config("train.device=cpu", "train.log_every=1", "phases=[{name: a, mode: pairs, steps: 3, lr: 0.001}]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = Trainer(ReconstructionTask(config, [str(data)]), tmp_path / "run").run()
    skipped = [str(w.message) for w in caught if "skipping clip" in str(w.message)]
    assert summary["steps"] == 3 and summary["skipped_clips"] == len(skipped) > 0
    assert all("video0/000" in message for message in skipped)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert events.Scalars("train/skipped_clips")[-1].value == summary["skipped_clips"]


def test_data_of_nothing_but_broken_frames_stops_with_one_line_from_a_worker(tmp_path, capsys):
    data = tmp_path / "data" / "broken"
    data.mkdir(parents=True)
    cv2.imwrite(str(data / "00000.png"), np.zeros((80, 80, 3), np.uint8))  # frame 0 passes discovery
    for index in range(1, 6):
        (data / f"{index:05d}.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["pretrain", "--data", str(data), "--out", str(out), *SETS, "--set", "data.workers=1"]) == 2
    assert re.search(r"clips in a row .*broken/0000[1-5]\.png", _error_line(capsys))
