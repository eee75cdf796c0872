"""scripts/compare_evidence.py: the three sets stay apart, every row reaches the comparison (zero motion,
pixels, the --init backbone, each baseline's best validated weights), the learning curves sit beside the
table and a rerun reuses the work."""
import csv
import json

import pytest
import yaml

from conftest import load_script
from mast.models.backbone import BackboneConfig, ResNetBackbone
from test_baseline_evidence import write_davis2016

#: One training step (the time budget is only a bound here), tiny crops and batches, no loader processes.
TINY_SETTINGS = ("phases.0.steps=1", "train.batch_size=2", "data.workers=0", "data.size=[64,64]")
TINY = ["--minutes", "1", *[item for value in TINY_SETTINGS for item in ("--set", value)]]
SPLIT = ["--train-sequences", "a,b", "--validate-sequences", "v", "--score-sequences", "c"]


@pytest.fixture(scope="module")
def script():
    return load_script("compare_evidence")


@pytest.fixture
def davis(tmp_path):
    return write_davis2016(tmp_path / "davis", ["a", "b", "v", "c"])


@pytest.mark.parametrize("extra, message", [
    (["--score-sequences", "b,c"], "--score-sequences overlap --train-sequences: b"),
    (["--score-sequences", "v,c"], "--score-sequences overlap --validate-sequences: v"),
    (["--validate-sequences", "a"], "--validate-sequences overlap --train-sequences: a"),
    (["--validate-sequences", ""], "--validate-sequences: give the held-out sequences"),
    (["--score-sequences", "zz"], "zz"),
    (["--baselines", "siammask,maskrcnn"], "--baselines: unknown maskrcnn"),
    (["--baselines", "ranet", "--config", "siammask=configs/siammask.yaml"], "--config: expected NAME=FILE"),
    (["--baselines", "ranet", "--config", "ranet=nowhere.yaml"], "--config: nowhere.yaml is not a file"),
    (["--init", "nowhere.pt"], "--init: nowhere.pt is not a file"),
    (["--pixel-presets", "fast"], "--pixel-presets: unknown fast"),
    (["--minutes", "0"], "--minutes must be > 0"),
])
def test_bad_arguments_are_refused_before_anything_is_written(script, davis, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as stopped:
        script.main(["--davis", str(davis), *SPLIT, "--out", str(tmp_path / "out"), *extra])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_other_files_is_refused(script, davis, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        script.main(["--davis", str(davis), *SPLIT, "--out", str(tmp_path / "out")])
    assert "holds files this script did not write" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_the_default_trains_each_recipe_from_the_shipped_backbone(script, davis, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("loss: both\n")
    args = script.parse_args(["--davis", str(davis), *SPLIT, "--baselines", "ranet,siammask",
                              "--config", f"siammask={recipe}", "--out", str(tmp_path / "out")])
    assert args.init == "cpu-hour" and args.recipes == {"ranet": script.ROOT / "configs" / "ranet-cpu.yaml",
                                                        "siammask": recipe}
    command = [str(item) for item in script.training_command("ranet", args)]
    assert command[command.index("--init") + 1] == "cpu-hour"
    assert command[command.index("--config") + 1] == str(script.ROOT / "configs" / "ranet-cpu.yaml")
    assert command[command.index("--sequences") + 1] == "a,b"
    assert command[command.index("--validate-sequences") + 1] == "v"
    assert "validation.at_start=true" in command  # a learning curve from step 0, and always a best-model.pt


def test_every_row_is_compared_the_best_weights_scored_and_a_rerun_reuses_the_training(
        script, davis, tmp_path, monkeypatch):
    init = tmp_path / "backbone.pt"
    ResNetBackbone(BackboneConfig(colour_space="rgb", output_stride=8, feature_dim=16, widths=(8, 16, 32, 32),
                                  blocks=(1, 1, 1, 1))).save(init)
    out = tmp_path / "out"
    argv = ["--davis", str(davis), *SPLIT, "--baselines", "ranet", "--init", str(init), "--out", str(out), *TINY]
    assert script.main(argv) == 0

    models = yaml.safe_load((out / "models.yaml").read_text())
    assert [(entry["name"], entry["model"], entry.get("checkpoint")) for entry in models] == [
        ("static", "static", None), ("pixels-quick", "mast", None),
        ("self-supervised-quick", "mast", str(init)), ("ranet", "ranet", "runs/ranet/best-model.pt")]
    with open(out / "compare" / "compare.csv") as table:
        rows = {(row["model"], row["sequence"]): row for row in csv.DictReader(table)}
    assert set(rows) == {(entry["name"], sequence) for entry in models for sequence in ("c", "(all)")}
    assert [rows[entry["name"], "(all)"]["supervision"] for entry in models] == [
        "none", "none (pixels)", "self-supervised", "supervised"]
    assert all(row["status"] == "ok" for row in rows.values())

    # The baseline read the masks of a and b, validated on v, never read c, and started from --init.
    run = out / "runs" / "ranet"
    assert json.loads((run / "run.json").read_text())["history"][0]["sequences"] == ["a", "b"]
    assert json.loads((run / "validation.json").read_text())["sequences"] == ["v"]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["rotate"] == 30  # the ranet-cpu recipe
    record = json.loads((out / "compare_evidence.json").read_text())
    history = json.loads((run / "validation.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [0, 1]  # validated before the first step and at the end
    assert record["ranet"]["steps"] == 1 and record["ranet"]["best_step"] in (0, 1)
    assert (out / "ranet-validation.png").read_bytes() == (run / "validation.png").read_bytes()
    summary = (out / "evidence.md").read_text()
    assert "| ranet | (all) | supervised | ok |" in summary and "(ranet-validation.png)" in summary

    ran = []
    monkeypatch.setattr(script, "mast", lambda *arguments: ran.append(arguments[0]))
    assert script.main(argv) == 0
    assert ran == ["compare"]  # no training again; mast compare reuses its own rows
    with pytest.raises(SystemExit, match="ranet was trained with other settings"):
        script.main([*argv, "--minutes", "2"])


def _tiny_init(tmp_path):
    init = tmp_path / "backbone.pt"
    ResNetBackbone(BackboneConfig(colour_space="rgb", output_stride=8, feature_dim=16, widths=(8, 16, 32, 32),
                                  blocks=(1, 1, 1, 1))).save(init)
    return init


def test_refit_trains_on_training_and_validation_sequences_for_the_steps_validation_chose(script, davis, tmp_path):
    out = tmp_path / "out"
    argv = ["--davis", str(davis), *SPLIT, "--baselines", "ranet", "--init", str(_tiny_init(tmp_path)),
            "--out", str(out), *TINY, "--set", "validation.at_start=false", "--refit"]  # the one validation: step 1
    assert script.main(argv) == 0
    record = json.loads((out / "compare_evidence.json").read_text())
    assert record["ranet"]["best_step"] == record["ranet"]["refit"]["steps"] == 1
    refitted = out / "runs" / "ranet-refit"
    assert json.loads((refitted / "run.json").read_text())["history"][0]["sequences"] == ["a", "b", "v"]
    assert not (refitted / "validation.json").exists()  # c is never read; v is trained on, not validated
    models = yaml.safe_load((out / "models.yaml").read_text())
    assert models[-1] == {"name": "ranet-refit", "model": "ranet", "checkpoint": "runs/ranet-refit/model.pt"}
    with open(out / "compare" / "compare.csv") as table:
        assert {"ranet-refit", "ranet"} <= {row["model"] for row in csv.DictReader(table) if row["sequence"] == "c"}
    assert "ranet-refit: the same recipe on a, b, v for 1 steps" in (out / "evidence.md").read_text()


def test_no_refit_when_the_best_validation_was_the_starting_model(script, davis, tmp_path, monkeypatch):
    args = script.parse_args(["--davis", str(davis), *SPLIT, "--baselines", "ranet", "--refit",
                              "--out", str(tmp_path / "out")])
    monkeypatch.setattr(script, "mast", lambda *arguments: pytest.fail("nothing to refit: step 0 was best"))
    record = {"ranet": {"best_step": 0}}
    script.refit("ranet", args, record)
    assert record["ranet"]["refit"] is None and script.models_file(args)[-1]["name"] == "ranet"
