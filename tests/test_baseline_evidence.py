"""scripts/baseline_evidence.py: the split is honest, every kind of row is produced and a rerun resumes."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_script
from mast.data.synthetic import translating_video
from mast.models.backbone import BackboneConfig, ResNetBackbone


@pytest.fixture(scope="module")
def script():
    return load_script("baseline_evidence")


def write_davis2016(root: Path, names: list[str]) -> Path:
    """A DAVIS-2016-layout folder: JPEG frames, 0/255 masks on every frame, ImageSets/2016/dev.txt."""
    for seed, name in enumerate(names):
        frames, ids = translating_video(num_frames=4, height=64, width=64, num_objects=1, seed=seed)
        for t, frame in enumerate(frames):
            for kind in ("JPEGImages", "Annotations"):
                (root / kind / "480p" / name).mkdir(parents=True, exist_ok=True)
            pixels = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=95)
            mask = (ids[t].numpy() > 0).astype(np.uint8) * 255
            Image.fromarray(mask).save(root / "Annotations" / "480p" / name / f"{t:05d}.png")
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "dev.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture
def davis(tmp_path):
    return write_davis2016(tmp_path / "davis", ["a", "b", "c"])


@pytest.fixture
def backbone(tmp_path):
    path = tmp_path / "backbone.pt"
    ResNetBackbone(BackboneConfig(colour_space="lab", widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))).save(path)
    return path


@pytest.mark.parametrize("extra, message", [
    (["--train-sequences", "a,b", "--score-sequences", "b,c"], "overlap --train-sequences: b"),
    (["--train-sequences", "a", "--score-sequences", "zz"], "zz"),
    (["--train-sequences", "a", "--score-sequences", "c", "--variants", "siammask/huge"], "unknown siammask/huge"),
    (["--train-sequences", "a", "--score-sequences", "c", "--ranet-steps", "0"], "--ranet-steps must be >= 1"),
])
def test_bad_arguments_are_refused_before_anything_is_written(script, davis, backbone, tmp_path, capsys,
                                                              extra, message):
    with pytest.raises(SystemExit) as stopped:
        script.main(["--davis", str(davis), "--ss-checkpoint", str(backbone), "--out", str(tmp_path / "out"), *extra])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_kind_of_row_is_scored_and_a_rerun_reuses_them(script, davis, backbone, tmp_path, monkeypatch):
    rows = "siammask/untrained,siammask/init,ranet/random-bce,pixels,self-supervised"
    argv = ["--davis", str(davis), "--ss-checkpoint", str(backbone), "--out", str(tmp_path / "out"),
            "--train-sequences", "a,b", "--score-sequences", "c", "--variants", rows,
            "--siammask-steps", "1", "--ranet-steps", "1", "--set", "train.batch_size=2", "--set", "data.workers=0"]
    assert script.main(argv) == 0
    report = json.loads((tmp_path / "out" / "baseline_evidence.json").read_text())
    assert [row["row"] for row in report["rows"]] == rows.split(",")
    assert [row["training_steps"] for row in report["rows"]] == [0, 1, 1, 0, 0]
    for row in report["rows"]:
        assert 0 <= row["J&F"] <= 1 and row["frames_per_second"] > 0 and list(row["per_object"]) == ["c_1"]
    assert (tmp_path / "out" / "siammask-init" / "run" / "model.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "pixels" / "results" / "c").glob("*.png")) == [
        f"{t:05d}.png" for t in range(4)]

    def no_command(*arguments):
        raise AssertionError(f"a rerun ran mast {arguments}")

    monkeypatch.setattr(script, "mast", no_command)
    assert script.main(argv) == 0
    assert json.loads((tmp_path / "out" / "baseline_evidence.json").read_text())["rows"] == report["rows"]
    with pytest.raises(SystemExit, match="siammask-init holds row siammask/init made with other settings"):
        script.main([*argv, "--siammask-steps", "2"])
