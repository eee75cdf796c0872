"""scripts/compare_evidence.py: the split is honest, every model reaches the comparison and a rerun reuses the work."""
import csv
import json

import pytest
import yaml

from conftest import load_script
from test_baseline_evidence import write_davis2016

#: One training step each (the time budgets are only a bound here), tiny batches, no loader processes.
TINY_SETTINGS = ("phases.0.steps=1", "train.batch_size=2", "data.workers=0")
TINY = ["--minutes", "1", "--backbone-minutes", "1",
        *[item for value in TINY_SETTINGS for item in ("--set", value, "--backbone-set", value)]]


@pytest.fixture(scope="module")
def script():
    return load_script("compare_evidence")


@pytest.fixture
def davis(tmp_path):
    return write_davis2016(tmp_path / "davis", ["a", "b", "c"])


@pytest.mark.parametrize("extra, message", [
    (["--train-sequences", "a,b", "--score-sequences", "b,c"], "overlap --train-sequences: b"),
    (["--train-sequences", "a", "--score-sequences", "zz"], "zz"),
    (["--baselines", "siammask,maskrcnn"], "--baselines: unknown maskrcnn"),
    (["--pixel-presets", "fast"], "--pixel-presets: unknown fast"),
    (["--minutes", "0"], "--minutes must be > 0"),
])
def test_bad_arguments_are_refused_before_anything_is_written(script, davis, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as stopped:
        script.main(["--davis", str(davis), "--train-sequences", "a,b", "--score-sequences", "c",
                     "--out", str(tmp_path / "out"), *extra])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_other_files_is_refused(script, davis, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        script.main(["--davis", str(davis), "--train-sequences", "a,b", "--score-sequences", "c",
                     "--out", str(tmp_path / "out")])
    assert "holds files this script did not write" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_every_model_is_compared_trained_only_on_the_training_split_and_a_rerun_reuses_it(
        script, davis, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["--davis", str(davis), "--train-sequences", "a,b", "--score-sequences", "c", "--baselines", "siammask",
            "--out", str(out), *TINY]
    assert script.main(argv) == 0

    models = yaml.safe_load((out / "models.yaml").read_text())
    assert [(entry["name"], entry["model"]) for entry in models] == [
        ("pixels-quick", "mast"), ("self-supervised-quick", "mast"), ("siammask", "siammask")]
    with open(out / "compare" / "compare.csv") as table:
        rows = {(row["model"], row["sequence"]): row for row in csv.DictReader(table)}
    assert set(rows) == {(entry["name"], sequence) for entry in models for sequence in ("c", "(all)")}
    assert {rows[name, "(all)"]["supervision"] for name in ("pixels-quick", "self-supervised-quick", "siammask")} == {
        "none (pixels)", "self-supervised", "supervised"}
    assert all(row["status"] == "ok" for row in rows.values())
    assert (out / "compare" / "compare.png").is_file() and (out / "compare" / "index.html").is_file()

    # The backbone read the frames of a and b only, the baseline the masks of a and b only.
    pretrain = json.loads((out / "runs" / "self-supervised" / "run.json").read_text())["history"][0]
    assert pretrain["inputs"]["data"] == [str(davis / "JPEGImages" / "480p" / name) for name in ("a", "b")]
    baseline = json.loads((out / "runs" / "siammask" / "run.json").read_text())["history"][0]
    assert baseline["sequences"] == ["a", "b"]
    record = json.loads((out / "compare_evidence.json").read_text())
    assert record["siammask"]["steps"] == record["self-supervised"]["steps"] == 1

    ran = []
    monkeypatch.setattr(script, "mast", lambda *arguments: ran.append(arguments[0]))
    assert script.main(argv) == 0
    assert ran == ["compare"]  # no training again; mast compare reuses its own rows
    with pytest.raises(SystemExit, match="siammask was trained with other settings"):
        script.main([*argv, "--minutes", "2"])
