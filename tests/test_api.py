"""The Python API (``import mast``): the README's example as written, and the same masks as ``mast propagate``."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import mast
from mast.cli.main import main
from mast.common.errors import ArgumentError
from mast.common.masks import read_mask, write_palette_png
from mast.data.synthetic import translating_video
from mast.models.backbone import BackboneConfig, ResNetBackbone
from tests.test_propagate import write_frames

README = Path(__file__).resolve().parents[1] / "README.md"
LIBRARY_PAGE = README.parent / "docs" / "library.md"  # the README's Python API continues there
TINY = BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)


def write_davis(root: Path, name: str = "bear", num_frames: int = 6, size: int = 48) -> Path:
    """A DAVIS-2017 folder of one sequence, two objects, void (255) on every mask's border."""
    frames, masks = translating_video(num_frames=num_frames, height=size, width=size, num_objects=2, seed=3)
    write_frames(root / "JPEGImages" / "480p" / name, frames)
    for t, mask in enumerate(masks):
        ids = mask.numpy().astype(np.uint8)
        ids[:2], ids[:, :2] = 255, 255
        write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{name}\n")
    return root


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """What the README's example names: DAVIS/, runs/mast/backbone.pt and results/ of `mast propagate`."""
    write_davis(tmp_path / "DAVIS")
    (tmp_path / "runs" / "mast").mkdir(parents=True)
    torch.manual_seed(0)
    ResNetBackbone(TINY).save(tmp_path / "runs" / "mast" / "backbone.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["propagate", "--davis", "DAVIS", "--preset", "quick", "--out", "results"]) == 0
    return tmp_path


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_python_blocks_run_as_written(workspace, capsys):
    blocks = [(page, block) for page in (README, LIBRARY_PAGE) for block in python_blocks(page.read_text())]
    assert len(blocks) >= 5 and any("mast.track(" in block for page, block in blocks if page == README)
    namespace: dict = {}
    for page, block in blocks:  # in order, in one namespace, as a reader pasting them into a notebook would
        exec(compile(block, str(page), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "J&F" in printed and "(8, 12, 12) 4 8" in printed


def propagate_cli(workspace: Path, out: str, *flags: str) -> dict[str, np.ndarray]:
    assert main(["propagate", *flags, "--preset", "quick", "--out", out]) == 0
    return {path.stem: read_mask(path) for path in sorted((workspace / out / "bear").glob("*.png"))}


def test_track_gives_the_masks_mast_propagate_writes_from_a_void_bearing_davis_mask(workspace):
    written = propagate_cli(workspace, "cli", "--davis", "DAVIS")
    first = Path("DAVIS/Annotations/480p/bear/00000.png")
    assert 255 in read_mask(first) and 255 not in written["00000"]  # void became background, as in the writer
    tracker = mast.load_tracker("mast", preset="quick", device="cpu")
    from_paths = list(mast.track(tracker, "DAVIS/JPEGImages/480p/bear", first_mask=first))
    assert len(from_paths) == len(written) == 6
    for mask, expected in zip(from_paths, written.values()):
        assert mask.dtype == np.uint8 and np.array_equal(mask, expected)
    video = np.stack([np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(p).convert("RGB"))
                      for p in sorted(Path("DAVIS/JPEGImages/480p/bear").glob("*.jpg"))])
    from_arrays = list(mast.track(tracker, video, first_mask=read_mask(first)))
    assert all(np.array_equal(a, b) for a, b in zip(from_arrays, from_paths))


def test_a_trained_checkpoint_and_a_box_track_as_the_command_does(workspace):
    written = propagate_cli(workspace, "box", "--video", "DAVIS/JPEGImages/480p/bear", "--first-box", "10,12,20,16",
                            "--checkpoint", "runs/mast/backbone.pt", "--cosine", "--temperature", "0.05")
    tracker = mast.load_tracker("mast", "runs/mast/backbone.pt", "quick", "cpu", normalize=True, temperature=0.05)
    masks = list(mast.track(tracker, "DAVIS/JPEGImages/480p/bear", first_box=(10, 12, 20, 16)))
    assert all(np.array_equal(a, b) for a, b in zip(masks, written.values())) and len(masks) == len(written)


def test_evaluate_returns_the_numbers_mast_evaluate_writes(workspace):
    assert main(["evaluate", "--davis", "DAVIS", "--results", "results"]) == 0
    global_table, per_object = mast.evaluate("results", "DAVIS", split="val")
    with open("results/global_results-val.csv") as handle:
        row = next(csv.DictReader(handle))
    assert {key: float(value) for key, value in row.items()} == global_table
    assert [row["Sequence"] for row in per_object] == ["bear_1", "bear_2"]


def test_load_backbone_extracts_features_of_an_rgb_frame(workspace):
    backbone = mast.load_backbone("runs/mast/backbone.pt")
    frame = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    features = backbone.extract(frame)
    assert (backbone.stride, backbone.channels) == (4, 8) and features.shape == (8, 10, 13)
    expected = backbone(backbone.prepare(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255))[0]
    torch.testing.assert_close(features, expected)
    with pytest.raises(ValueError, match="RGB uint8"):
        backbone.extract(frame.astype(np.float32))


@pytest.mark.parametrize("kwargs, argument, message", [
    ({}, "first_mask", "exactly one of first_mask"),
    ({"first_mask": np.full((48, 48), 255, np.uint8), "first_box": (0, 0, 4, 4)}, "first_mask", "exactly one"),
    ({"first_mask": np.where(np.eye(48) > 0, 255, 0)}, "first_mask", "only 0 and 255"),
    ({"first_mask": np.full((48, 48), 300)}, "first_mask", "ids must lie in 0..254"),
    ({"first_mask": np.full((48, 48), 1.5)}, "first_mask", "integer object ids"),
    ({"first_mask": np.ones((40, 48), np.uint8)}, "first_mask", "the array is 48x40 but the frames are 48x48"),
    ({"first_box": (0, 0, 0, 4)}, "first_box", "w, h > 0"),
    ({"first_box": (0, 0, float("inf"), 4)}, "first_box", "w, h > 0"),
    ({"first_box": "1,2,3"}, "first_box", "must be 'x,y,w,h'"),
    ({"first_box": "inf,1,2,3"}, "first_box", "must be 'x,y,w,h'"),
])
def test_track_refuses_what_it_cannot_represent_naming_the_argument(kwargs, argument, message):
    frames, _ = translating_video(num_frames=3, height=48, width=48)
    video = (frames.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    with pytest.raises(ArgumentError, match=re.escape(message)) as error:
        mast.track(mast.load_tracker(preset="quick"), video, **kwargs)  # refused up front, before any frame is tracked
    assert error.value.argument == argument and "--" not in str(error.value)


def test_track_refuses_frames_it_cannot_read():
    tracker = mast.load_tracker(preset="quick")
    with pytest.raises(ArgumentError, match="frames: an array of frames is"):
        mast.track(tracker, np.zeros((8, 8, 3), np.uint8), first_box=(0, 0, 2, 2))
    with pytest.raises(ArgumentError, match="frame 0 is float64"):
        mast.track(tracker, [np.zeros((8, 8, 3))], first_box=(0, 0, 2, 2))
    with pytest.raises(ArgumentError, match="holds no frame"):
        mast.track(tracker, [], first_box=(0, 0, 2, 2))


def test_load_tracker_refuses_unknown_names_and_misplaced_settings(tmp_path):
    with pytest.raises(ArgumentError, match="unknown model 'sam'") as error:
        mast.load_tracker("sam")
    assert error.value.argument == "model"
    with pytest.raises(ArgumentError, match="unknown preset 'fast'"):
        mast.load_tracker(preset="fast")
    with pytest.raises(ArgumentError, match="window: must be an odd integer"):
        mast.load_tracker(window=4)
    with pytest.raises(ArgumentError, match="needs the model.pt"):
        mast.load_tracker("ranet")
    with pytest.raises(ArgumentError, match="window: a setting of the memory propagator"):
        mast.load_tracker("siammask", tmp_path / "model.pt", window=5)
    with pytest.raises(ArgumentError, match="device: 'tpu' is not a device"):
        mast.load_tracker(device="tpu")


def test_import_mast_is_light_until_the_api_is_used():
    import subprocess
    import sys

    code = "import sys, mast; print('torch' in sys.modules); mast.load_tracker; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split() == ["False", "True"]


def test_a_frames_path_that_is_no_video_is_named_as_frames(tmp_path):
    with pytest.raises(FileNotFoundError, match="frames: .*nothing.mp4 does not exist") as error:
        mast.track(mast.load_tracker(preset="quick"), tmp_path / "nothing.mp4", first_box=(0, 0, 2, 2))
    assert error.value.argument == "frames"


def test_a_baselines_model_pt_given_as_a_backbone_is_one_line(tmp_path, capsys):
    from mast.models.ranet.model import RANet, RANetConfig

    RANet(BackboneConfig(output_stride=8, widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8),
          RANetConfig()).save(tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt is the model.pt of a ranet run, not a backbone; track it as model ranet"):
        mast.load_tracker("mast", tmp_path / "model.pt")
    state = ResNetBackbone(TINY).state_dict()
    state["extra"] = state.pop("head.bias")
    torch.save({"backbone_config": TINY.__dict__, "state_dict": state}, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"1 missing \(e.g. head.bias\); 1 unexpected \(e.g. extra\)$"):
        mast.load_backbone(tmp_path / "renamed.pt")
