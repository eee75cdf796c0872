"""The baseline registry (mast.train.baselines) is the one list: the command, its task contract, a new baseline."""
from __future__ import annotations

import argparse
import inspect
import typing
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path

import pytest
import torch

from mast.cli.main import build_parser, main
from mast.train import baselines
from mast.train.config import PhaseConfig, RunConfig, load_config
from mast.train.tasks import BaselineTaskFactory, TrainingTask

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _baseline_choices(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    """The choices of ``mast train-baseline``'s positional argument."""
    subcommands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    command = subcommands.choices["train-baseline"]
    return tuple(next(action for action in command._actions if action.dest == "baseline").choices)


def test_the_command_offers_exactly_the_registered_baselines(capsys):
    assert baselines.names() == ("siammask", "ranet", "detector")
    assert _baseline_choices(build_parser()) == baselines.names()
    with pytest.raises(SystemExit):
        main(["train-baseline", "--help"])
    assert "{" + ",".join(baselines.names()) + "}" in capsys.readouterr().out


def test_the_command_imports_no_module_by_its_path():
    import mast.cli.train

    assert "importlib" not in inspect.getsource(mast.cli.train)


def test_an_unknown_name_is_an_argument_error_naming_the_registered_ones():
    from mast.common.errors import ArgumentError

    with pytest.raises(ArgumentError, match="registered: siammask, ranet") as caught:
        baselines.baseline("siamfc")
    assert caught.value.argument == "baseline"


def _contract_parameters() -> list[inspect.Parameter]:
    """``BaselineTaskFactory.__call__``'s parameters after ``self``."""
    return list(inspect.signature(BaselineTaskFactory.__call__).parameters.values())[1:]


def _protocol_members() -> set[str]:
    """What a :class:`TrainingTask` has: its attributes and its methods."""
    methods = {name for name, value in vars(TrainingTask).items()
               if inspect.isfunction(value) and not name.startswith("_")}
    return methods | set(typing.get_type_hints(TrainingTask))


@pytest.mark.parametrize("name", baselines.names())
def test_every_registered_task_class_follows_the_constructor_contract(name, tmp_path):
    baseline = baselines.baseline(name)
    expected = [(p.name, p.default) for p in _contract_parameters()]
    assert [(p.name, p.default) for p in inspect.signature(baseline.task).parameters.values()] == expected
    assert is_dataclass(baseline.schema) and {"train", "phases"} <= set(baseline.schema.__dataclass_fields__)
    config = load_config(CONFIGS / baseline.config_file, schema=baseline.schema)
    task = baseline.task(config, tmp_path, ["one"], 2016, None)  # reads nothing without init
    missing = {member for member in _protocol_members() if not hasattr(task, member)}
    assert not missing and task.config == config and task.inputs == [str(tmp_path)]


@dataclass(frozen=True)
class FakeData:
    workers: int = 0


@dataclass(frozen=True)
class FakeConfig:
    data: FakeData = field(default_factory=FakeData)
    train: RunConfig = field(default_factory=lambda: RunConfig(batch_size=2, device="cpu", log_every=1))
    phases: tuple[PhaseConfig, ...] = (PhaseConfig(name="fake", steps=2),)


class FakeTask:
    """The smallest task a run can train: a linear map pulled towards 0 (records its arguments)."""

    final_name = "model.pt"
    made: list[tuple] = []

    def __init__(self, config: FakeConfig, root: Path, sequences: list[str] | None = None, year: int = 2017,
                 init: Path | None = None) -> None:
        self.config, self.inputs = config, [str(root)]
        FakeTask.made.append((Path(root), sequences, year, init))

    def build(self, world):
        torch.manual_seed(self.config.train.seed)
        self.model = torch.nn.Linear(2, 1).to(world.device)
        return self.model

    def describe(self):
        return {}

    def setup_outputs(self, out_dir, world):
        """Nothing to write."""

    def dataset(self, phase_index, samples):
        return [{"x": torch.ones(2)}] * samples

    def collate(self, items):
        return {"x": torch.stack([item["x"] for item in items]), "skipped_clips": 0}

    def losses(self, model, batch, generator):
        return {"loss": model(batch["x"]).pow(2).mean()}

    def picture(self):
        return None

    def checkpoint_state(self):
        return {"model": self.model.state_dict()}

    def restore(self, path, payload):
        self.model.load_state_dict(payload["model"])

    def validation_trackers(self):
        return {}

    def save_final(self, path, variant=None):
        torch.save(self.model.state_dict(), path)


@pytest.fixture
def fake_registered(monkeypatch):
    """A baseline ``fake`` registered through the registry's API, for this test only."""
    monkeypatch.setattr(baselines, "LOADERS", dict(baselines.LOADERS))
    baselines.register("fake")(lambda: (FakeConfig, FakeTask))
    FakeTask.made.clear()


def test_a_registered_baseline_is_trained_by_the_command(fake_registered, tmp_path):
    assert baselines.names()[-1] == "fake" and _baseline_choices(build_parser())[-1] == "fake"
    data, config = tmp_path / "data", tmp_path / "fake.yaml"
    data.mkdir()
    config.write_text("phases: [{name: fake, steps: 2}]\n")
    command = ["train-baseline", "fake", "--data", str(data), "--sequences", "a,b", "--year", "2016",
               "--config", str(config), "--out", str(tmp_path / "run")]
    assert main(command) == 0
    assert FakeTask.made == [(data, ["a", "b"], 2016, None)]
    assert (tmp_path / "run" / "model.pt").is_file()
    with pytest.raises(ValueError, match="already registered"):
        baselines.register("fake")(lambda: (FakeConfig, FakeTask))


def test_a_missing_init_is_shown_under_its_flag(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    assert main(["train-baseline", "ranet", "--data", str(data), "--init", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "mast train-baseline: error: --init: checkpoint not found: " in capsys.readouterr().err


def _masked_videos(root: Path, mask_values: int) -> Path:
    """A DAVIS-layout folder of one 3-frame video whose object is ``mask_values`` in its masks
    (1: a DAVIS-2017 palette mask of object ids, 255: a DAVIS-2016 0/255 mask)."""
    import numpy as np
    from PIL import Image

    from mast.data.synthetic import translating_video

    frames, masks = translating_video(num_frames=3, height=32, width=32, seed=0)
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        for top, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
            (root / top / "480p" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray((frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
            root / "JPEGImages" / "480p" / "v" / f"{t:05d}.jpg")
        Image.fromarray((mask.numpy() > 0).astype(np.uint8) * mask_values, mode="L").save(
            root / "Annotations" / "480p" / "v" / f"{t:05d}.png")
    return root


@pytest.mark.parametrize("name", ("siammask", "ranet"))
def test_masks_of_the_other_year_are_refused_up_front_with_the_year_to_give(name, tmp_path, capsys):
    """Before any write, with the hint ``mast propagate`` gives, rather than training on no object."""
    cases = ((_masked_videos(tmp_path / "ids", 1), ["--year", "2016"], "need --year 2017"),
             (_masked_videos(tmp_path / "binary", 255), [], "need --year 2016"))
    for data, year, hint in cases:
        out = tmp_path / f"run-{data.name}"
        assert main(["train-baseline", name, "--data", str(data), *year, "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("mast train-baseline: error: --year: ") and error.endswith(hint)
        assert str(data / "Annotations" / "480p" / "v" / "00000.png") in error and not out.exists()


@pytest.mark.parametrize("command, size", [(["pretrain"], "99999"), (["train-baseline", "ranet"], "[99999,256]"),
                                           (["train-baseline", "ranet"], "[256,4096]")])
def test_an_impossible_crop_size_is_one_line_naming_the_key(command, size, tmp_path, capsys):
    """Not an allocation of hundreds of GB (a traceback, or the machine's memory) at the first step."""
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    assert main([*command, "--data", str(data), "--out", str(out), "--set", f"data.size={size}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"mast {command[0]}: error: data.size must be ") and "2048" in error
    assert len(error.splitlines()) == 1 and not out.exists()
    from mast.train.config import MAX_CROP_SIZE, DataConfig

    assert DataConfig(size=MAX_CROP_SIZE).size == 2048
