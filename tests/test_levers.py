"""scripts/levers.py: every lever trains on the same split and budget and lands in one table."""
import json

import pytest

from conftest import load_script
from test_baseline_evidence import write_davis2016

TINY = ["model.widths=[8,8,16,16]", "model.feature_dim=8", "data.size=32", "train.batch_size=2",
        "data.workers=0", "objective.clusters=4"]


@pytest.fixture(scope="module")
def levers():
    return load_script("levers")


@pytest.mark.parametrize("extra, message", [
    (["--levers", "base,deeper"], "unknown deeper"),
    (["--levers", "extra-clips"], "needs --extra-data"),
    (["--levers", "base", "--minutes", "0"], "--minutes must be > 0"),
])
def test_bad_arguments_are_refused(levers, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as stopped:
        levers.main(["--davis", str(tmp_path), "--out", str(tmp_path / "out"), *extra])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_levers_share_split_and_budget_and_differ_by_their_change(levers, tmp_path):
    davis = write_davis2016(tmp_path / "davis", ["a", "b", "c"])
    argv = ["--davis", str(davis), "--train-sequences", "a,b", "--score-sequences", "c", "--validate-sequences", "a",
            "--minutes", "0.03", "--pixel-presets", "quick", "--levers", "base,cosine-training,memory-phase",
            "--pairs-steps", "1", "--out", str(tmp_path / "out"), *[item for s in TINY for item in ("--set", s)]]
    assert levers.main(argv) == 0
    table = json.loads((tmp_path / "out" / "levers.json").read_text())
    assert [row["lever"] for row in table["levers"]] == ["base", "cosine-training", "memory-phase"]
    assert table["pixel_bar"] == table["references"][-1]["J&F-Mean"]
    assert [row["features"] for row in table["references"]] == ["random/dot", "random/cosine", "pixels/quick"]
    pixels = json.loads((tmp_path / "out" / "pixels-quick" / "evidence.json").read_text())
    assert pixels["training_steps"] == 0 and not (tmp_path / "out" / "pixels-quick" / "run").exists()
    for row in table["levers"]:
        assert 0 <= row["J&F"] <= 1 and row["gain_over_pixels"] == pytest.approx(row["J&F"] - table["pixel_bar"])
    configs = {name: json.loads((tmp_path / "out" / name / "evidence.json").read_text())["config"]
               for name in ("base", "cosine-training", "memory-phase")}
    assert [c["engine"]["normalize"] for c in configs.values()] == [False, True, False]
    assert [p["mode"] for p in configs["memory-phase"]["phases"]] == ["pairs", "memory"]
    assert {c["train"]["time_budget_minutes"] for c in configs.values()} == {0.03}
    assert {tuple(json.loads((tmp_path / "out" / n / "evidence.json").read_text())["score_sequences"])
            for n in configs} == {("c",)}
