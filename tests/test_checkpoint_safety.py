"""Checkpoints: weights-only loading, architecture checks, falling back past a damaged
last.pt, and the temporaries a killed run leaves behind."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import mast
from mast.cli.main import main
from mast.common.files import is_temporary, temporary_sibling
from mast.common.checkpoints import save_checkpoint
from mast.train import checkpoint as ckpt
from mast.common.config import from_dict
from mast.train.config import TrainingConfig, save_config
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask
from tests.test_train import TINY, tiny_config, videos  # noqa: F401 (videos is a fixture)

PHASES = "phases=[{name: a, mode: pairs, steps: 4, lr: 0.003}]"
RUN = [PHASES, "train.device=cpu", "train.checkpoint_every=2"]
SETS = [item for override in [*TINY, *RUN] for item in ("--set", override)]


@pytest.fixture(scope="module")
def whole(videos, tmp_path_factory) -> tuple[Path, list[float]]:
    """A finished 4-step run (checkpoints at steps 2 and 4) and its losses."""
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, Trainer(ReconstructionTask(tiny_config(*RUN), [str(videos)]), out).run()["losses"]


def _copy_run(whole_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(whole_run, copy)
    return copy


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _error_line(capsys, command: str) -> str:
    """The error, which must be one line, and the last one (a progress bar may precede it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith(f"mast {command}: error: "), lines
    return lines[-1]


class _RunsCode:
    """Unpickling this creates ``marker``: what a crafted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    np.random.seed(3), random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # a cached gaussian is part of numpy's state
    save_checkpoint({"rng": ckpt.rng_state()}, tmp_path / "rng.pt")
    expected = (np.random.standard_normal(5), random.random(), torch.rand(3))
    np.random.seed(0), random.seed(0), torch.manual_seed(0)
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    np.testing.assert_array_equal(np.random.standard_normal(5), expected[0])
    assert random.random() == expected[1] and torch.equal(torch.rand(3), expected[2])


def test_a_checkpoint_holds_the_config_as_plain_data_that_rebuilds_it(whole):
    payload = torch.load(whole[0] / "checkpoints" / "last.pt", weights_only=True)
    assert isinstance(payload["config"], dict)
    assert from_dict(TrainingConfig, payload["config"]) == tiny_config(*RUN)


def test_a_crafted_checkpoint_runs_nothing(videos, whole, tmp_path, capsys):
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": _RunsCode(marker), "state": {}, "backbone_config": {}}, crafted)
    torch.load(crafted, weights_only=False)
    assert marker.exists()  # the file is live: a pickle loader would run it
    marker.unlink()

    fine = ["finetune", "--init", str(crafted), "--data", str(videos), "--out", str(tmp_path / "fine"), *SETS]
    assert main(fine) == 2
    assert "--init: refusing checkpoint" in _error_line(capsys, "finetune") and not marker.exists()

    out = _copy_run(whole[0], tmp_path)  # a run of mast pretrain whose only checkpoint is the crafted one
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    shutil.copy(crafted, out / "checkpoints" / "last.pt")
    assert main(["pretrain", "--data", str(videos), "--out", str(out), "--resume"]) == 2
    error = _error_line(capsys, "pretrain")
    assert "refusing training checkpoint" in error and "last.pt" in error and not marker.exists()


def test_another_architecture_is_a_one_line_error_naming_both(videos, whole, tmp_path, capsys):
    run = _copy_run(whole[0], tmp_path)
    save_config(tiny_config(*RUN, "model.widths=[8,8,8,16]"), run / "config.yaml")
    assert main(["pretrain", "--data", str(videos), "--out", str(run), "--resume"]) == 2
    error = _error_line(capsys, "pretrain")
    assert "last.pt" in error and "widths=(8, 8, 16, 16)" in error and "widths=(8, 8, 8, 16)" in error

    init = ["--init", str(run / "checkpoints" / "step-00000002.pt")]
    sets = [*SETS, "--set", "model.blocks=[1,1,1,2]"]
    assert main(["finetune", *init, "--data", str(videos), "--out", str(tmp_path / "fine"), *sets]) == 2
    error = _error_line(capsys, "finetune")
    assert "blocks=(1, 1, 1, 1)" in error and "blocks=(1, 1, 1, 2)" in error


def test_a_damaged_last_checkpoint_falls_back_to_the_newest_readable_step(videos, whole, tmp_path):
    run = _copy_run(whole[0], tmp_path)
    last, newest = run / "checkpoints" / "last.pt", run / "checkpoints" / "step-00000004.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    newest.write_bytes(b"garbage")
    # A complete checkpoint still being written by a live process: never a result.
    planted = run / "checkpoints" / f".step-00000009.pt.mast-tmp-{os.getpid()}-0123abcd.pt"
    shutil.copy(whole[0] / "checkpoints" / "step-00000004.pt", planted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = Trainer(ReconstructionTask(tiny_config(*RUN), [str(videos)]), run, resume=True).run()["losses"]
    message = next(str(w.message) for w in caught if "resuming from" in str(w.message))
    assert "last.pt" in message and "step-00000004.pt" in message
    assert message.endswith(f"resuming from {run / 'checkpoints' / 'step-00000002.pt'} instead")
    np.testing.assert_allclose(losses, whole[1], rtol=1e-5, atol=1e-6)
    assert planted.exists()


def test_no_readable_checkpoint_is_a_clear_error(videos, whole, tmp_path, capsys):
    run = _copy_run(whole[0], tmp_path)
    for path in (run / "checkpoints").iterdir():
        path.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["pretrain", "--data", str(videos), "--out", str(run), "--resume"]) == 2
    error = _error_line(capsys, "pretrain")
    assert "no readable checkpoint" in error and "step-00000002.pt" in error


def test_stale_temporaries_are_removed_when_a_run_starts(videos, whole, tmp_path):
    run = _copy_run(whole[0], tmp_path)
    dead = _dead_pid()
    stale = [run / f".config.yaml.mast-tmp-{dead}-0123abcd", run / f".backbone.pt.mast-tmp-{dead}-89abcdef.pt",
             run / "checkpoints" / f".last.pt.mast-tmp-{dead}-deadbeef.pt"]
    for path in stale:
        path.write_bytes(b"half")
    stale_folder = run / f".centroids.json.mast-tmp-{dead}-00000000"
    stale_folder.mkdir()
    kept = [temporary_sibling(run / "checkpoints" / "last.pt"), run / ".notes.tmp", run / "checkpoints" / "mine.pt"]
    for path in kept:
        path.write_bytes(b"not mast's to remove")
    Trainer(ReconstructionTask(tiny_config(*RUN), [str(videos)]), run, resume=True).prepare()
    assert not any(path.exists() for path in [*stale, stale_folder])
    assert all(path.exists() for path in kept)


def test_every_training_write_goes_through_a_rule_named_temporary(videos, tmp_path, monkeypatch):
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: (renamed.append(Path(source)),
                                                               real_replace(source, target))[1])
    config = tiny_config("train.device=cpu", "phases=[{name: a, mode: pairs, steps: 1, lr: 0.001}]")
    Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run").run()
    targets = {path.name.split(".mast-tmp-")[0] for path in renamed}
    assert {".config.yaml", ".run.json", ".step-00000001.pt", ".last.pt", ".backbone.pt"} <= targets
    assert all(is_temporary(path) for path in renamed), renamed


_KILLED_RUN = """
import os, signal, sys, torch
from mast.train.config import load_config
from mast.train.loop import Trainer
from mast.train.reconstruction import ReconstructionTask

real_save, calls = torch.save, []
def save_then_die(payload, path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 2:  # last.pt of the first checkpoint (step-00000002.pt came first)
        real_save(payload, path, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(payload, path, *args, **kwargs)
torch.save = save_then_die
Trainer(ReconstructionTask(load_config(overrides=sys.argv[3:]), [sys.argv[1]]), sys.argv[2]).run()
"""


def test_a_run_killed_mid_checkpoint_resumes_and_its_temporary_is_removed(videos, whole, tmp_path):
    run = tmp_path / "run"
    environment = dict(os.environ, PYTHONPATH=str(Path(mast.__file__).parents[1]), OMP_NUM_THREADS="2")
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(videos), str(run), *TINY, *RUN],
                            env=environment, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    left = [path for path in (run / "checkpoints").iterdir() if path.name.startswith(".")]
    assert left and all(is_temporary(path) for path in left)
    assert not (run / "checkpoints" / "last.pt").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = Trainer(ReconstructionTask(tiny_config(*RUN), [str(videos)]), run, resume=True).run()["losses"]
    assert any("resuming from" in str(w.message) and "step-00000002.pt" in str(w.message) for w in caught)
    assert not any(path.exists() for path in left)
    np.testing.assert_allclose(losses, whole[1], rtol=1e-5, atol=1e-6)
