"""Colour centroids for CorrFlow's kmeans-ce objective: sampling, k-means, labels, file, CLI."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mast.cli.centroids import register
from mast.common.files import is_temporary, temporary_sibling
from mast.common.colour import rgb_to_lab
from mast.data.synthetic import translating_video
from mast.data.video import TensorVideoSource
from mast.train.centroids import (
    assign_labels,
    build_centroids,
    ensure_centroids,
    fit_centroids,
    load_centroids,
    sample_lab_pixels,
    save_centroids,
)
from tests.conftest import requires_cuda

#: Four well separated flat colours (8-bit RGB), one per quarter of each block frame.
BLOCK_COLOURS = np.array([[230, 20, 20], [20, 200, 40], [30, 40, 220], [240, 240, 60]], dtype=np.uint8)


def _write_frames(folder: Path, frames: np.ndarray) -> Path:
    """``(T, H, W, 3)`` uint8 RGB frames -> ``folder/00000.png``, ... (lossless, so colours stay exact)."""
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:05d}.png"), np.ascontiguousarray(frame[:, :, ::-1]))
    return folder


def _block_frames(num_frames: int, size: int = 24) -> np.ndarray:
    """Frames split into 4 flat colour blocks; the split point moves so counts differ per frame."""
    frames = np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        row, col = size // 2 + t % 3 - 1, size // 2 - t % 2
        frames[t, :row, :col], frames[t, :row, col:] = BLOCK_COLOURS[0], BLOCK_COLOURS[1]
        frames[t, row:, :col], frames[t, row:, col:] = BLOCK_COLOURS[2], BLOCK_COLOURS[3]
    return frames


def _block_lab() -> torch.Tensor:
    """The LAB values of :data:`BLOCK_COLOURS`, ``(4, 3)``."""
    rgb = torch.from_numpy(BLOCK_COLOURS.astype(np.float32) / 255).T.reshape(1, 3, 4, 1)
    return rgb_to_lab(rgb).reshape(3, 4).T


@pytest.fixture
def block_data(tmp_path: Path) -> Path:
    root = tmp_path / "blocks"
    _write_frames(root / "video_a", _block_frames(4))
    _write_frames(root / "video_b", _block_frames(3)[:, ::-1])
    return root


@pytest.fixture
def translating_data(tmp_path: Path) -> Path:
    root = tmp_path / "moving"
    for seed in range(2):
        frames, _ = translating_video(num_frames=5, height=40, width=40, seed=seed)
        _write_frames(root / f"seq{seed}", (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    return root


def _match(found: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest distance from an expected colour to its nearest found centroid."""
    return torch.cdist(expected, found).min(dim=1).values.max().item()


class _CountingSource(TensorVideoSource):
    """Records which frame indices were read."""

    def read(self, indices):
        object.__getattribute__(self, "reads").extend(indices)
        return super().read(indices)


def _counting_source(num_frames: int = 20, size: int = 16) -> _CountingSource:
    source = _CountingSource("counted", torch.rand(num_frames, 3, size, size, generator=torch.Generator().manual_seed(1)))
    object.__setattr__(source, "reads", [])
    return source


# -- sampling ---------------------------------------------------------------------------------------------------


def test_sample_reads_only_chosen_frames_and_is_deterministic():
    source = _counting_source()
    pixels = sample_lab_pixels([source], num_pixels=1000, frames_per_video=4, seed=3, progress=False)
    assert pixels.shape == (1000, 3) and pixels.dtype == torch.float32
    assert source.reads == [0, 6, 13, 19]  # spread over the whole video, each read once
    assert pixels[:, 0].min() >= 0 and pixels[:, 0].max() <= 100
    again = sample_lab_pixels([source], num_pixels=1000, frames_per_video=4, seed=3, progress=False)
    other = sample_lab_pixels([source], num_pixels=1000, frames_per_video=4, seed=4, progress=False)
    assert torch.equal(pixels, again) and not torch.equal(pixels, other)


def test_sample_caps_at_available_pixels_and_rejects_empty_input():
    tiny = TensorVideoSource("tiny", torch.rand(2, 3, 4, 4))
    assert sample_lab_pixels([tiny], num_pixels=10_000, frames_per_video=8, progress=False).shape == (32, 3)
    with pytest.raises(ValueError, match="no video frames"):
        sample_lab_pixels([], progress=False)


def test_sample_skips_a_video_that_fails_to_decode():
    class Broken(TensorVideoSource):
        def read(self, indices):
            raise ValueError("cannot decode")

    good = TensorVideoSource("good", torch.rand(3, 3, 8, 8))
    with pytest.warns(RuntimeWarning, match="broken"):
        pixels = sample_lab_pixels([Broken("broken", torch.rand(3, 3, 8, 8)), good], 60, 3, progress=False)
    assert pixels.shape == (30, 3)  # the good video's share only


# -- k-means ----------------------------------------------------------------------------------------------------


def test_fit_recovers_flat_colours_sorted_by_lightness():
    expected = _block_lab()
    pixels = expected.repeat_interleave(torch.tensor([300, 120, 500, 80]), dim=0)
    centroids = fit_centroids(pixels + 0.01 * torch.randn_like(pixels), k=4, seed=0)
    assert centroids.shape == (4, 3) and centroids.dtype == torch.float32
    assert _match(centroids, expected) < 0.05
    assert torch.equal(centroids[:, 0], centroids[:, 0].sort().values)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="k-means needs"):
        fit_centroids(torch.zeros(3, 3), k=4)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        fit_centroids(torch.zeros(10, 2), k=2)


# -- labels -----------------------------------------------------------------------------------------------------


def test_assign_labels_picks_the_nearest_centroid():
    centroids = torch.tensor([[0.0, 0, 0], [50, 0, 0], [50, 40, -40], [100, 0, 0]])
    lab = torch.tensor([[[10.0, 40], [80, 55]], [[0, 0], [0, 30]], [[0, 0], [0, -20]]])[None]  # (1, 3, 2, 2)
    expected = torch.tensor([[[0, 1], [3, 2]]])
    assert torch.equal(assign_labels(lab, centroids), expected)
    tie = torch.tensor([25.0, 0, 0]).view(1, 3, 1, 1)  # as far from centroid 0 as from 1: the lower index wins
    assert assign_labels(tie, centroids).item() == 0


def test_assign_labels_in_chunks_matches_the_direct_computation(monkeypatch):
    import mast.train.centroids as module

    lab = rgb_to_lab(torch.rand(2, 3, 17, 13))
    centroids = fit_centroids(lab.permute(0, 2, 3, 1).reshape(-1, 3), k=5)
    direct = torch.cdist(lab.permute(0, 2, 3, 1).reshape(-1, 3), centroids).argmin(dim=1).view(2, 17, 13)
    monkeypatch.setattr(module, "_ASSIGN_CHUNK_ELEMENTS", 7 * 3 * 5)  # 7 pixels per chunk, last one partial
    labels = assign_labels(lab, centroids)
    assert labels.dtype == torch.long and labels.shape == (2, 17, 13)
    assert torch.equal(labels, direct)


def test_assign_labels_checks_shapes():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        assign_labels(torch.zeros(3, 4, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(k, 3\)"):
        assign_labels(torch.zeros(1, 3, 4, 4), torch.zeros(2, 2))


@requires_cuda
def test_assign_labels_on_cuda_matches_cpu():
    lab = rgb_to_lab(torch.rand(2, 3, 64, 64))
    centroids = fit_centroids(lab.permute(0, 2, 3, 1).reshape(-1, 3), k=16)
    on_gpu = assign_labels(lab.cuda().half(), centroids)  # centroids follow the input's device
    assert on_gpu.device.type == "cuda"
    agree = (on_gpu.cpu() == assign_labels(lab.half().float(), centroids)).float().mean()
    assert agree > 0.999  # a last-bit difference in the GPU's sum may flip an exact near-tie


# -- file -------------------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path):
    centroids = torch.tensor([[10.5, -3.25, 7.0], [60.0, 20.0, -15.125]])
    path = tmp_path / "sub" / "centroids.json"
    save_centroids(path, centroids, {"seed": 7, "source": tmp_path})
    loaded, meta = load_centroids(path)
    assert torch.equal(loaded, centroids)
    assert meta["seed"] == 7 and meta["source"] == str(tmp_path) and "mast_version" in meta
    assert [p.name for p in path.parent.iterdir()] == ["centroids.json"]  # no temporary file left


def test_save_refuses_non_finite_values(tmp_path: Path):
    with pytest.raises(ValueError, match="NaN"):
        save_centroids(tmp_path / "c.json", torch.tensor([[float("nan"), 0.0, 0.0]]), {})
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        ('{"format": "other"}', "not a centroids file"),
        ('{"format": "mast-colour-centroids", "format_version": 1, "k": 2, "centroids": [[1, 2], [3, 4]]}', r"\(k, 3\)"),
        ('{"format": "mast-colour-centroids", "format_version": 1, "k": 1, "centroids": [[1, "x", 2]]}', "numeric"),
        ('{"format": "mast-colour-centroids", "format_version": 1, "k": 1, "centroids": [[1, NaN, 2]]}', "NaN"),
        ('{"format": "mast-colour-centroids", "format_version": 1, "k": 3, "centroids": [[1, 2, 3]]}', "k=3"),
        ('{"format": "mast-colour-centroids", "format_version": 9, "k": 1, "centroids": [[1, 2, 3]]}', "version"),
    ],
)
def test_load_rejects_bad_files_naming_them(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_centroids(path)
    assert str(path) in str(error.value)


def test_save_writes_through_a_rule_named_temporary(tmp_path: Path, monkeypatch):
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: (renamed.append(Path(source)),
                                                               real_replace(source, target))[1])
    save_centroids(tmp_path / "c.json", _block_lab())
    assert len(renamed) == 1 and is_temporary(renamed[0]) and renamed[0].name.startswith(".c.json.")
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_load_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_centroids(tmp_path / "missing.json")


# -- building ---------------------------------------------------------------------------------------------------


def test_build_recovers_block_colours_and_is_reproducible(block_data: Path, tmp_path: Path):
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    centroids = build_centroids(block_data, first, k=4, num_pixels=2000, seed=5, progress=False)
    assert _match(centroids, _block_lab()) < 0.1
    build_centroids([block_data], second, k=4, num_pixels=2000, seed=5, progress=False)
    assert first.read_bytes() == second.read_bytes()
    loaded, meta = load_centroids(first)
    assert torch.allclose(loaded, centroids, atol=1e-4)
    assert meta["num_videos"] == 2 and meta["k"] == 4 and meta["seed"] == 5 and meta["num_pixels"] == 2000
    build_centroids(block_data, other, k=4, num_pixels=2000, seed=6, progress=False)
    assert json.loads(other.read_text())["meta"]["seed"] == 6


def test_build_on_textured_videos(translating_data: Path, tmp_path: Path):
    centroids = build_centroids(translating_data, tmp_path / "c.json", k=16, num_pixels=3000, progress=False)
    assert centroids.shape == (16, 3) and torch.isfinite(centroids).all()
    assert len(torch.unique(centroids, dim=0)) == 16
    assert (centroids[:, 0] >= 0).all() and (centroids[:, 0] <= 100).all()


def test_build_errors_on_missing_or_empty_data(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_centroids(tmp_path / "nowhere", tmp_path / "c.json", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        build_centroids(tmp_path / "empty", tmp_path / "c.json", progress=False)
    assert not (tmp_path / "c.json").exists()


def test_ensure_builds_once_then_loads(block_data: Path, tmp_path: Path):
    path = tmp_path / "c.json"
    built = ensure_centroids(path, block_data, k=4, num_pixels=500, progress=False)
    assert torch.allclose(ensure_centroids(path, tmp_path / "not-needed", k=4), built, atol=1e-4)
    with pytest.raises(ValueError, match="k=8"):
        ensure_centroids(path, block_data, k=8)


# -- command line -----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mast")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_builds_file_and_prints_table(block_data: Path, tmp_path: Path, capsys):
    out = tmp_path / "centroids.json"
    args = _parser().parse_args(
        ["centroids", "--data", str(block_data), "--k", "4", "--out", str(out), "--pixels", "1500",
         "--frames-per-video", "2", "--seed", "1"]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "4 centroids from 1500 LAB pixels of 2 videos" in printed and str(out) in printed
    assert len([line for line in printed.splitlines() if "#" in line and line.strip()[0].isdigit()]) == 4
    assert "#e61414" in printed  # BLOCK_COLOURS[0] back as RGB hex
    assert load_centroids(out)[1]["frames_per_video"] == 2


def test_cli_removes_temporaries_a_killed_run_left_beside_out(block_data: Path, tmp_path: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".centroids.json.mast-tmp-{dead.pid}-0123abcd.json"
    stale.write_text("{half")
    live = temporary_sibling(tmp_path / "centroids.json")  # this process: still writing
    live.write_text("{")
    out = tmp_path / "centroids.json"
    args = _parser().parse_args(["centroids", "--data", str(block_data), "--k", "4", "--out", str(out),
                                 "--pixels", "500", "--frames-per-video", "1"])
    assert args.func(args) == 0
    assert not stale.exists() and live.exists() and load_centroids(out)[0].shape == (4, 3)


@pytest.mark.parametrize("make_empty", [False, True])
def test_cli_reports_missing_or_empty_data(tmp_path: Path, capsys, make_empty: bool):
    data = tmp_path / "data"
    if make_empty:
        data.mkdir()
    args = _parser().parse_args(["centroids", "--data", str(data), "--out", str(tmp_path / "c.json")])
    assert args.func(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("mast centroids: error:") and str(data) in error


def test_cli_help_and_argument_checks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["centroids", "--help"])
    assert exit_info.value.code == 0
    assert "kmeans-ce" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["centroids", "--data", "x", "--out", "y", "--k", "0"])
    assert exit_info.value.code == 2
