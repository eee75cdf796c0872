"""The backbone shipped with the package (mast/weights/, docs/cpu-hour.md): by name, wherever a checkpoint is taken."""
from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import mast
from mast.cli.main import build_parser, main
from mast.common.checkpoints import load_checkpoint
from mast.common.masks import read_mask, write_palette_png
from mast.common.outputs import file_sha256
from mast.data.synthetic import translating_video
from mast.eval.metrics import region_similarity
from mast.models.backbone import BackboneConfig, ResNetBackbone
from mast.models.shipped import SHIPPED, WEIGHTS, checkpoint_path, shipped_file
from tests.test_propagate import write_frames

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "docs" / "cpu-hour.md"


def test_every_shipped_backbone_is_a_small_safe_file_the_package_installs():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mast"]
    for name, file in SHIPPED.items():
        path = shipped_file(name)
        assert path.is_file() and path.stat().st_size < 5 * 2**20, path
        assert any(fnmatch.fnmatch(path.relative_to(WEIGHTS.parent).as_posix(), glob) for glob in package_data)
        payload = load_checkpoint(path)  # weights_only=True
        assert set(payload) >= {"backbone_config", "state_dict", "propagation"}


def test_the_model_card_describes_the_shipped_file():
    card = CARD.read_text()
    digest = re.search(r"\| sha256 \| `([0-9a-f]{64})` \|", card)
    assert digest and digest.group(1) == file_sha256(shipped_file("cpu-hour"))
    assert "CC BY-NC" in card  # it says which licences the training data are under (and avoids)


def test_load_backbone_by_name_extracts_features():
    backbone = mast.load_backbone("cpu-hour")
    features = backbone.extract(np.zeros((60, 90, 3), np.uint8))
    assert features.shape == (backbone.channels, -(-60 // backbone.stride), -(-90 // backbone.stride))
    assert torch.isfinite(features).all()


def test_an_existing_file_of_that_name_wins_over_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpoint_path("cpu-hour") == shipped_file("cpu-hour")
    ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)).save(tmp_path / "cpu-hour")
    assert checkpoint_path("cpu-hour") == Path("cpu-hour")
    assert mast.load_backbone("cpu-hour").channels == 8


def test_the_shipped_features_track_an_object_the_training_never_saw(tmp_path):
    # Trained weights, not an architecture: the same network at random initialisation reaches a mean
    # J of 0.53 here (falling to 0.37 by the last frame); the shipped one 0.87.
    frames, ids = translating_video(num_frames=8, height=96, width=96, num_objects=1, seed=11)
    tracker = mast.load_tracker("mast", checkpoint="cpu-hour", preset="quick", device="cpu")
    first = ids[0].numpy().astype(np.uint8)
    masks = list(mast.track(tracker, [f.permute(1, 2, 0).numpy() for f in (frames * 255).round().byte()],
                            first_mask=first))
    overlaps = [region_similarity(masks[t] > 0, ids[t].numpy() > 0) for t in range(1, len(masks))]
    assert np.mean(overlaps) > 0.8, overlaps


def test_commands_take_the_name_where_they_take_a_checkpoint(tmp_path):
    parser = build_parser()
    shipped = shipped_file("cpu-hour")
    propagate = parser.parse_args(["propagate", "--video", "v", "--first-mask", "m", "--checkpoint", "cpu-hour",
                                   "--out", "o"])
    finetune = parser.parse_args(["finetune", "--init", "cpu-hour", "--data", "d", "--out", "o"])
    baseline = parser.parse_args(["train-baseline", "siammask", "--data", "d", "--init", "cpu-hour", "--out", "o"])
    assert propagate.checkpoint == finetune.init == baseline.init == shipped


def test_mast_propagate_with_the_shipped_backbone_writes_masks(tmp_path):
    frames, ids = translating_video(num_frames=4, height=48, width=48, num_objects=1, seed=2)
    write_frames(tmp_path / "clip", frames)
    write_palette_png(tmp_path / "first.png", ids[0].numpy().astype(np.uint8))
    assert main(["propagate", "--video", str(tmp_path / "clip"), "--first-mask", str(tmp_path / "first.png"),
                 "--checkpoint", "cpu-hour", "--preset", "quick", "--out", str(tmp_path / "out")]) == 0
    assert read_mask(tmp_path / "out" / "clip" / "00003.png").shape == (48, 48)


@pytest.mark.parametrize("file_there", [False, True])
def test_compare_models_files_name_the_shipped_backbone(tmp_path, file_there):
    from mast.eval.compare_models import read_models

    if file_there:  # a file of that name beside the models file is what the entry means
        ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)).save(tmp_path / "cpu-hour")
    (tmp_path / "models.yaml").write_text("- {name: shipped, model: mast, checkpoint: cpu-hour}\n")
    entry = read_models(tmp_path / "models.yaml")[0]
    assert entry.checkpoint == (tmp_path / "cpu-hour" if file_there else shipped_file("cpu-hour"))
