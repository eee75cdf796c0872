"""Nothing outside an output folder is ever deleted or written, and inputs are read as they are named
(issue 25: crafted records, sequence names that are paths, evaluation CSVs written into the dataset,
unpadded frame numbers, symbolic-link loops in training data)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from mast.cli.main import main
from mast.common.errors import ArgumentError
from mast.common.masks import write_palette_png
from mast.common.outputs import OutputConflict, OutputFolder
from mast.data.davis import DavisDataset
from mast.data.frames import image_files
from mast.data.video import FrameFolderSource, discover_videos
from mast.eval import davis as davis_eval
from tests.test_evaluate import SHAPE, draw, write_dataset
from tests.test_output_safety import davis, propagate, tree_digest  # noqa: F401 (davis: a fixture)
from tests.test_video_data import red_values, write_frames

# -- 1. nothing outside OUT -----------------------------------------------------


def _victims(tmp_path: Path) -> list[Path]:
    """A relative and an absolute path outside every output folder, both existing files."""
    victims = [tmp_path / "victim.txt", tmp_path / "elsewhere" / "absolute.txt"]
    for victim in victims:
        victim.parent.mkdir(parents=True, exist_ok=True)
        victim.write_text("not mast's")
    return victims


def _add_to_record(folder: Path, key: str, names: list[str]) -> None:
    record = json.loads((folder / "run.json").read_text())
    record[key] = record.get(key, []) + names
    (folder / "run.json").write_text(json.dumps(record))


@pytest.mark.parametrize("key", ["derived", "files"])
def test_a_propagate_record_naming_files_outside_out_is_refused(davis, tmp_path, key, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out) == 0
    relative, absolute = _victims(tmp_path)
    _add_to_record(out, key, ["../victim.txt", str(absolute)])
    before = tree_digest(out)
    capsys.readouterr()  # the first run's output
    for flags in ([], ["--overwrite", "--temperature", "0.5"]):  # a plain rerun, and one replacing the run
        assert propagate(davis, out, *flags) == 2
        error = capsys.readouterr().err
        assert "--out" in error and "victim.txt" in error and error.count("\n") == 1
        assert relative.is_file() and absolute.is_file() and tree_digest(out) == before


def test_a_visualize_record_naming_files_outside_out_is_refused(davis, tmp_path, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out) == 0
    assert main(["visualize", "--davis", str(davis), "--results", str(out)]) == 0
    relative, absolute = _victims(tmp_path)
    _add_to_record(out / "overlays", "derived", ["../../victim.txt", str(absolute)])
    assert main(["visualize", "--davis", str(davis), "--results", str(out)]) == 2
    assert "victim.txt" in capsys.readouterr().err
    assert relative.is_file() and absolute.is_file()


def test_a_record_in_a_sub_folder_naming_files_outside_it_is_refused(tmp_path):
    out = tmp_path / "out"
    folder = OutputFolder(out, "propagate", {"a": 1}).check()
    folder.start()
    (out / "a").mkdir()
    (out / "a" / "run.json").write_text(json.dumps({"format": 1, "files": ["../../victim.txt"]}))
    relative, _ = _victims(tmp_path)
    with pytest.raises(OutputConflict, match="victim.txt"):
        OutputFolder(out, "propagate", {"a": 2}, overwrite=True).check()
    assert relative.is_file()


@pytest.mark.parametrize("name", ["../480p/a", "a/../b", "..", ".", ""])
def test_a_sequence_name_is_a_name_not_a_path(tmp_path, name):
    dataset = DavisDataset(tmp_path)
    for method in (dataset.frames_dir, dataset.masks_dir):
        with pytest.raises(ArgumentError) as raised:
            method(name)
        assert raised.value.argument == "sequences"
    folder = OutputFolder(tmp_path / "out", "propagate", {}).check()
    with pytest.raises(OutputConflict):
        folder.check_entry(name)


def test_propagate_writes_no_sequence_outside_out(davis, tmp_path, capsys):
    out = tmp_path / "results" / "out"
    assert propagate(davis, out, "--sequences", "../480p/a") == 2
    assert "--sequences" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_evaluate_writes_no_csv_into_the_dataset(davis, capsys):
    before = tree_digest(davis)
    results = davis / "Annotations" / "480p"
    assert main(["evaluate", "--davis", str(davis), "--results", str(results), "--processes", "1"]) == 2
    error = capsys.readouterr().err
    assert "--results" in error and "--davis" in error
    assert tree_digest(davis) == before


# -- 4. inputs read as they are named ----------------------------------------------


def _unpadded(folder: Path, count: int) -> list[str]:
    """Renames ``00000.png ...`` to ``f1.png ... f<count>.png``; returns the stems in frame order."""
    stems = [f"f{t + 1}" for t in range(count)]
    for t, stem in enumerate(stems):
        (folder / f"{t:05d}.png").rename(folder / f"{stem}.png")
    return stems


def test_unpadded_frame_numbers_are_read_in_number_order(tmp_path):
    folder = write_frames(tmp_path / "clip", 12)
    stems = _unpadded(folder, 12)
    assert [p.stem for p in image_files(folder)] == stems
    source = FrameFolderSource.from_folder(folder)
    assert red_values(source.read(range(12))) == red_values(FrameFolderSource.from_folder(
        write_frames(tmp_path / "padded", 12)).read(range(12)))


def test_names_without_one_numbering_keep_name_order(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("b2.png", "a10.png", "a9.png", "c.png"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in image_files(folder)] == ["a10.png", "a9.png", "b2.png", "c.png"]


def test_unpadded_ground_truth_is_scored_in_number_order(tmp_path):
    """Only the last frame, f12, is predicted wrong: unscored in number order, scored in name order."""
    gts = [draw(SHAPE, {1: (10, 10 + t, 30, 30)}) for t in range(12)]
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_dataset(root, {"seq": gts})
    stems = _unpadded(root / "Annotations" / "480p" / "seq", 12)
    for stem, ids in zip(stems, gts[:-1] + [draw(SHAPE, {})]):
        write_palette_png(results / "seq" / f"{stem}.png", ids)
    table, _ = davis_eval.evaluate_davis(root, results, processes=1)
    assert table["J-Mean"] == 1.0


@pytest.fixture
def deadline():
    """Fails a test still running after 20 s (a walk that never ends) instead of hanging."""
    def expire(*_):
        raise TimeoutError("still walking after 20 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_links_back_into_the_data_are_walked_once(tmp_path, deadline):
    data = tmp_path / "data"
    for name in ("one", "two"):
        write_frames(data / name, 3)
    os.symlink(".", data / "x")
    os.symlink(".", data / "y")
    report = discover_videos(data)
    assert sorted(source.name for source in report) == ["one", "two"]


def test_a_link_out_of_the_data_is_skipped_with_a_warning(tmp_path, deadline):
    data = tmp_path / "data"
    write_frames(data / "one", 3)
    write_frames(tmp_path / "private", 3)
    os.symlink("..", data / "up")
    with pytest.warns(RuntimeWarning, match="up"):
        report = discover_videos(data)
    assert [source.name for source in report] == ["one"]


def test_a_folder_given_twice_or_inside_another_is_read_once(tmp_path):
    data = tmp_path / "data"
    for name in ("one", "two"):
        write_frames(data / name, 3)
    report = discover_videos([data, data / "one", data])
    assert sorted(source.name for source in report) == ["one", "two"]


def test_annotated_training_frames_are_in_number_order_too(tmp_path):
    from mast.data.annotated import discover_annotated

    for t in range(1, 13):
        write_palette_png(tmp_path / "JPEGImages" / "seq" / f"f{t}.png", np.zeros((8, 8), np.uint8))
        write_palette_png(tmp_path / "Annotations" / "seq" / f"f{t}.png", np.ones((8, 8), np.uint8))
    (video,) = discover_annotated(tmp_path, year=2017)
    assert [path.stem for path in video.frame_paths] == [f"f{t}" for t in range(1, 13)]


def test_a_stride_change_between_equal_widths_maps_to_an_identity_shortcut(tmp_path):
    import torch

    from mast.models.backbone import BackboneConfig, ResNetBackbone
    from mast.train.checkpoint import read_backbone_init

    ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)).save(tmp_path / "b.pt")
    config, state = read_backbone_init(tmp_path / "b.pt", output_stride=8)
    backbone = ResNetBackbone(config)
    backbone.load_state_dict(state)
    features = torch.randn(1, 8, 16, 16)
    shortcut = backbone.eval().layers[2][0].shortcut(features)  # the source added its input unchanged
    torch.testing.assert_close(shortcut, features[:, :, ::2, ::2], atol=1e-4, rtol=0)
