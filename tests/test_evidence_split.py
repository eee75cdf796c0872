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
