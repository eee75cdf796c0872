"""`mast pretrain` / `finetune` refuse bad input up front, writing nothing, and
survive frames that do not decode."""
from __future__ import annotations

import errno
import hashlib
import json
import os
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
from mast.common.files import is_temporary
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
    skipped = [str(w.message) for w in caught if "skipping training samples" in str(w.message)]
    assert summary["steps"] == 3 and summary["skipped_clips"] >= len(skipped) > 0
    assert all("video0/000" in message for message in skipped) and len(set(skipped)) == len(skipped)  # each once
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
    assert re.search(r"in a row failed .*broken/0000[1-5]\.png", _error_line(capsys))


# -- the run folder: a recorded output folder (mast.train.runs) ----------------------------------------------------


def _pretrain(videos: Path, out: Path, *flags: str, command: str = "pretrain") -> int:
    return main([command, "--data", str(videos), "--out", str(out), *SETS, *flags])


@pytest.fixture(scope="module")
def finished_run(videos, tmp_path_factory) -> Path:
    """A finished one-step `mast pretrain` run folder (copied by the tests that change it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert _pretrain(videos, out) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def test_the_record_lists_every_file_the_run_wrote_and_nothing_else(videos, finished_run):
    record = json.loads((finished_run / "run.json").read_text())
    assert record["command"] == "pretrain" and record["format"] == 1
    on_disk = {str(p.relative_to(finished_run)) for p in finished_run.rglob("*") if p.is_file()} - {"run.json"}
    assert set(record["files"]) == on_disk
    assert {"config.yaml", "backbone.pt", "checkpoints/last.pt", "checkpoints/step-00000001.pt"} <= on_disk
    assert any(name.startswith("tensorboard/events.") for name in on_disk)
    started = record["history"][0]
    assert started["inputs"]["data"] == [str(videos.resolve())]
    assert started["task"] == "ReconstructionTask" and started["world_size"] == 1 and "git_sha" in started


@pytest.mark.parametrize("command", ["pretrain", "train-baseline"])
def test_a_folder_holding_the_users_files_is_refused_and_left_as_it_was(videos, tmp_path, capsys, command):
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("config.yaml", "backbone.pt"):
        (out / name).write_text(f"my {name}")
    (out / "run.json").write_text('{"experiment": "mine", "command": ["python", "train.py"]}')
    before = _checksums(out)
    flags = ["siammask", "--data", str(videos), "--out", str(out)] if command == "train-baseline" else None
    for extra in ([], ["--overwrite"]):
        if flags is None:
            assert _pretrain(videos, out, *extra) == 2
        else:
            assert main([command, *flags, *extra]) == 2
        error = _error_line(capsys, command)
        assert "run.json was not written by mast" in error, error
        assert _checksums(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)
    (out / "run.json").unlink()  # no record at all: the other files are named
    assert _pretrain(videos, out) == 2
    assert "holds files mast did not write (backbone.pt, config.yaml)" in _error_line(capsys)


def test_a_results_folder_of_another_command_is_refused_naming_it(videos, tmp_path, capsys):
    from mast.common.outputs import OutputFolder

    results = OutputFolder(tmp_path / "results", "propagate", {"tracker": "pixels"}).check()
    results.start()
    results.release()
    before = _checksums(tmp_path / "results")
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert _pretrain(videos, tmp_path / "results", *flags) == 2
        assert "holds the output of `mast propagate`, not of `mast pretrain`" in _error_line(capsys)
    assert _checksums(tmp_path / "results") == before


def test_resume_continues_only_a_run_of_the_same_command(videos, finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    before = _checksums(run)
    init = ["--init", str(run / "backbone.pt")]
    assert _pretrain(videos, run, "--resume", *init, command="finetune") == 2
    assert "holds the output of `mast pretrain`, not of `mast finetune`" in _error_line(capsys, "finetune")
    assert _pretrain(videos, tmp_path / "new", "--resume") == 2
    assert _error_line(capsys).endswith(f"--resume: {tmp_path / 'new'} holds no run to continue; drop --resume")
    assert not (tmp_path / "new").exists() and _checksums(run) == before


def test_a_plain_rerun_is_refused_and_says_what_to_do(videos, finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    before = _checksums(run)
    assert _pretrain(videos, run) == 2
    assert _error_line(capsys).endswith(f"--out: {run} already holds a run; add --resume to continue it, "
                                        "--overwrite to replace it, or choose another folder")
    assert _pretrain(videos, run, "--resume", "--overwrite") == 2
    assert "--overwrite: --resume continues the run and --overwrite replaces it" in _error_line(capsys)
    assert _checksums(run) == before


def test_overwrite_removes_only_what_the_run_wrote(videos, finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "mine.pt").write_text("mine")
    before = _checksums(run)
    assert _pretrain(videos, run, "--overwrite") == 2  # a file of the user's where the run writes
    assert "checkpoints/mine.pt" in _error_line(capsys) and _checksums(run) == before
    (run / "checkpoints" / "mine.pt").unlink()
    old_events = {p.name for p in (run / "tensorboard").iterdir()}
    assert _pretrain(videos, run, "--overwrite") == 0
    record = json.loads((run / "run.json").read_text())
    assert len(record["history"]) == 1 and "--overwrite" in record["history"][0]["argv"]
    assert (run / "notes.txt").read_text() == "mine"
    assert not old_events & {p.name for p in (run / "tensorboard").iterdir()}  # the old run's events went
    assert set(record["files"]) == {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()} - {
        "run.json", "notes.txt"}


def test_resuming_with_other_inputs_warns_naming_both(videos, tmp_path, capsys):
    other = Path(shutil.copytree(videos, tmp_path / "other-videos"))
    run = tmp_path / "run"
    two_steps = ["--set", "phases=[{name: a, mode: pairs, steps: 2, lr: 0.001}]"]
    assert main(["pretrain", "--data", str(videos), "--out", str(run), *SETS, *two_steps, "--set",
                 "train.checkpoint_every=1"]) == 0
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "step-00000002.pt").unlink()  # as if cut after step 1
    assert main(["pretrain", "--data", str(other), "--out", str(run), "--resume"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "other inputs" in line]
    assert len(warning) == 1 and warning[0].startswith("mast pretrain: warning: resuming")
    assert f"data: [{str(other.resolve())!r}] now, [{str(videos.resolve())!r}] there" in warning[0]
    assert json.loads((run / "run.json").read_text())["history"][1]["inputs"]["data"] == [str(other.resolve())]


# -- everyday faults: one line, exit 2, nothing half-written -------------------------------------------------------


def test_an_output_under_a_file_is_a_one_line_error(videos, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _pretrain(videos, tmp_path / "notes.txt" / "run") == 2
    assert "notes.txt is a file, so the folder cannot be made" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_parent_is_a_one_line_error(videos, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _pretrain(videos, locked / "run") == 2
        assert "is not writable" in _error_line(capsys)
    finally:
        locked.chmod(0o700)


def test_a_full_disk_is_a_one_line_error_and_leaves_no_half_written_file(videos, tmp_path, capsys, monkeypatch):
    real_save = torch.save

    def full_disk(payload, path, *args, **kwargs):  # half the checkpoint fits
        real_save(payload, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    assert _pretrain(videos, out) == 2
    assert "[Errno 28] No space left on device" in _error_line(capsys)
    left = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert not [name for name in left if is_temporary(name)] and not (out / "checkpoints" / "last.pt").exists()
    assert set(json.loads((out / "run.json").read_text())["files"]) == left - {"run.json"}
