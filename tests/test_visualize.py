"""Overlay pictures, per-sequence videos and the index page."""
import cv2
import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.common.masks import write_palette_png
from mast.eval.visualize import overlay, visualize


def test_overlay_tints_objects_and_leaves_background():
    frame = np.full((20, 30, 3), 100, np.uint8)
    ids = np.zeros((20, 30), np.uint8)
    ids[5:15, 5:15] = 1
    picture = overlay(frame, ids)
    assert (picture[0, 0] == 100).all()  # background untouched
    assert picture[10, 10, 0] > picture[10, 10, 1]  # id 1 is DAVIS red
    with pytest.raises(ValueError, match="differ"):
        overlay(frame, ids[:10])


def test_visualize_writes_frames_video_and_index(tmp_path):
    frames = [(f"{t:05d}", torch.rand(3, 32, 48)) for t in range(4)]
    for stem, _ in frames[:3]:  # the last frame has no result: skipped
        ids = np.zeros((32, 48), np.uint8)
        ids[8:20, 10:30] = 2
        write_palette_png(tmp_path / "results" / "seq" / f"{stem}.png", ids)
    index = visualize([("seq", iter(frames))], tmp_path / "results", tmp_path / "pictures")
    assert sorted(p.name for p in (tmp_path / "pictures" / "seq").iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    capture = cv2.VideoCapture(str(tmp_path / "pictures" / "seq.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    html = index.read_text()
    assert "seq.mp4" in html and "seq/00000.jpg" in html
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["index.html", "run.json", "seq", "seq.mp4"]


def test_visualize_without_results_names_the_folder(tmp_path):
    (tmp_path / "results" / "seq").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="seq"):
        visualize([("seq", iter([("00000", torch.rand(3, 8, 8))]))], tmp_path / "results", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["run.json"]  # no temporaries left


def test_cli_propagate_with_overlay_then_evaluate(tmp_path, capsys):
    """The whole user path on a generated DAVIS-2017-layout dataset."""
    from tests.test_propagate import make_davis
    from mast.data.synthetic import translating_video

    videos = {"a": translating_video(6, 96, 96, num_objects=2), "b": translating_video(5, 64, 96, seed=1)}
    make_davis(tmp_path / "davis", videos)
    for name, (_, masks) in videos.items():  # ground truth for every frame, for the evaluation
        for t, mask in enumerate(masks):
            write_palette_png(tmp_path / "davis" / "Annotations" / "480p" / name / f"{t:05d}.png", mask.numpy().astype(np.uint8))
    out = tmp_path / "results"
    assert main(["propagate", "--davis", str(tmp_path / "davis"), "--out", str(out), "--overlay", "--window", "7"]) == 0
    assert (out / "overlays" / "index.html").is_file() and (out / "overlays" / "a.mp4").is_file()
    assert main(["evaluate", "--davis", str(tmp_path / "davis"), "--results", str(out), "--processes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and "a_2" in printed
    assert (out / "global_results-val.csv").is_file()
