"""scripts/evidence.py keeps the videos it scores out of training."""
import sys

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def evidence():
    return load_script("evidence")


@pytest.fixture
def davis(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / "davis" / "JPEGImages" / "480p" / name).mkdir(parents=True)
    return tmp_path / "davis"


@pytest.mark.parametrize("extra, message", [
    (["--train-sequences", "a,b", "--score-sequences", "b,c"], "share b"),
    (["--data", "{root}/JPEGImages", "--score-sequences", "c"], "holds the frames of scored sequence c"),
    (["--data", "{root}/JPEGImages/480p/c/..", "--score-sequences", "c"], "holds the frames of scored sequence c"),
    (["--data", "{root}/JPEGImages/480p/c/x", "--score-sequences", "c"], "holds the frames of scored sequence c"),
    (["--train-sequences", "a", "--validate-sequences", "b,c", "--score-sequences", "b"],
     "--validate-sequences and --score-sequences share b"),
    (["--train-sequences", "zz", "--score-sequences", "b"], "zz not found"),
    (["--saved-presets", "quick,fast", "--score-sequences", "c"], "--saved-presets: quick,fast is not a list"),
    (["--pixel-presets", "", "--score-sequences", "c"], "--pixel-presets:  is not a list"),
])
def test_overlapping_train_and_score_videos_are_refused(evidence, davis, tmp_path, monkeypatch, capsys, extra, message):
    argv = ["evidence.py", "--davis", str(davis), "--out", str(tmp_path / "out"), *(a.format(root=davis) for a in extra)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        evidence.main()
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_disjoint_sequences_give_the_training_inputs(evidence, davis, tmp_path):
    import argparse

    args = argparse.Namespace(davis=davis, train_sequences=["a"], score_sequences=["c"], validate_sequences=["b"],
                              data=[tmp_path / "videos"])
    assert evidence.check_split(args) == [tmp_path / "videos", davis / "JPEGImages" / "480p" / "a"]


def test_saved_knobs_are_scored_under_each_preset_and_a_rescore_keeps_the_other_rows(evidence, tmp_path, monkeypatch):
    import json

    from test_baseline_evidence import write_davis2016

    davis = write_davis2016(tmp_path / "davis", ["a", "b"])
    tiny = ["model.widths=[8,8,16,16]", "model.feature_dim=8", "data.size=32", "train.batch_size=2",
            "data.workers=0", "phases=[{name: a, mode: pairs, steps: 2, lr: 0.001}]"]
    common = ["evidence.py", "--davis", str(davis), "--score-sequences", "b", "--out", str(tmp_path / "out"),
              *[item for setting in tiny for item in ("--set", setting)]]
    monkeypatch.setattr(sys, "argv", [*common, "--train-sequences", "a", "--rows", "saved",
                                      "--saved-presets", "quick,crw"])
    assert evidence.main() == 0
    report = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert [row["features"] for row in report["results"]] == ["trained/saved", "trained/saved/crw"]
    monkeypatch.setattr(sys, "argv", [*common, "--evaluate-only", "--rows", "saved,pixels", "--saved-presets", "crw"])
    assert evidence.main() == 0
    rescored = json.loads((tmp_path / "out" / "evidence.json").read_text())["results"]
    assert [row["features"] for row in rescored] == ["trained/saved", "trained/saved/crw", "pixels/quick"]
    assert rescored[0] == report["results"][0]


def test_merged_rows_replace_by_name_and_append_new_ones(evidence):
    earlier = [{"features": "a", "J&F-Mean": 0.1}, {"features": "b", "J&F-Mean": 0.2}]
    scored = [{"features": "c", "J&F-Mean": 0.3}, {"features": "a", "J&F-Mean": 0.4}]
    assert evidence.merged_rows(earlier, scored) == [{"features": "a", "J&F-Mean": 0.4},
                                                      {"features": "b", "J&F-Mean": 0.2},
                                                      {"features": "c", "J&F-Mean": 0.3}]


def test_a_trained_row_under_the_saved_knobs_reuses_the_saved_row(evidence, tmp_path, monkeypatch):
    from mast.models.backbone import BackboneConfig, ResNetBackbone
    from mast.models.protocol import COSINE, PropagationConfig, PropagationKnobs

    (tmp_path / "run").mkdir()
    tiny = BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)
    ResNetBackbone(tiny).save(tmp_path / "run" / "backbone.pt", COSINE)  # saved: the cosine protocol
    propagated = []

    def fake_score(name, tracker, args):
        propagated.append((name, tracker.config))
        return {"features": name, "J&F": len(propagated)}

    monkeypatch.setattr(evidence, "propagate_and_score", fake_score)
    args = evidence.argparse.Namespace(rows=["saved", "trained"], saved_presets=["quick", "crw"], window=13,
                                       out=tmp_path, pixel_presets=[], score_sequences=["c"])
    rows = {row["features"]: row["J&F"] for row in evidence.score_all(args, config=None)}
    assert [name for name, _ in propagated] == ["trained/saved", "trained/saved/crw", "trained/dot"]
    assert rows == {"trained/saved": 1, "trained/saved/crw": 2, "trained/dot": 3, "trained/cosine": 1}
    assert propagated[1][1] == PropagationConfig.preset("crw", COSINE)
    dot = propagated[2][1].engine  # raw dot products over every key, whatever the checkpoint saved
    assert (dot.normalize, dot.temperature, dot.topk, dot.window) == (False, 1.0, None, 13)
    assert propagated[0][1] == PropagationConfig.preset("quick", COSINE, PropagationKnobs(window=13))
