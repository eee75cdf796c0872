"""Overlay pictures, per-sequence videos and the index page."""
import re
import shutil

import cv2
import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.common.masks import write_palette_png
from mast.eval import visualize as visualize_module
from mast.eval.visualize import check_results, overlay, visualize


def test_overlay_tints_objects_and_leaves_background():
    frame = np.full((20, 30, 3), 100, np.uint8)
    ids = np.zeros((20, 30), np.uint8)
    ids[5:15, 5:15] = 1
    picture = overlay(frame, ids)
    assert (picture[0, 0] == 100).all()  # background untouched
    assert picture[10, 10, 0] > picture[10, 10, 1]  # id 1 is DAVIS red
    with pytest.raises(ValueError, match="differ"):
        overlay(frame, ids[:10])


def _results(root, name, masks):
    """Result PNGs ``root/name/00000.png, ...`` of ``masks`` ``(T, H, W)``."""
    for t, mask in enumerate(masks):
        write_palette_png(root / name / f"{t:05d}.png", np.asarray(mask, np.uint8))


def _read_all(path):
    """Frames a video file decodes to, and its codec tag (container frame counts of WebM are estimates)."""
    capture = cv2.VideoCapture(str(path))
    codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    frames = 0
    while capture.read()[0]:
        frames += 1
    return frames, codec


def test_visualize_writes_frames_vp9_webm_and_index(tmp_path):
    frames = [(f"{t:05d}", torch.rand(3, 32, 48)) for t in range(4)]
    ids = np.zeros((4, 32, 48), np.uint8)
    ids[:, 8:20, 10:30] = 2
    _results(tmp_path / "results", "seq", ids)
    index = visualize([("seq", iter(frames))], tmp_path / "results", tmp_path / "pictures")
    assert sorted(p.name for p in (tmp_path / "pictures" / "seq").iterdir()) == [f"{t:05d}.jpg" for t in range(4)]
    assert _read_all(tmp_path / "pictures" / "seq.webm") == (4, "VP90")
    html = index.read_text()
    assert "seq/00000.jpg" in html
    video = re.search(r"<video ([^>]*)><source src='([^']*)' type='([^']*)'>", html)
    assert set(video.group(1).split()) >= {"controls", "muted", "loop", "playsinline"}
    assert video.group(2, 3) == ("seq.webm", "video/webm")
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["index.html", "run.json", "seq", "seq.webm"]


def test_writing_a_video_prints_no_codec_tag_notice(tmp_path, capfd):
    """OpenCV prints that WebM has no place for the VP90 tag (on file descriptor 2) and
    writes VP9 anyway: the notice would read as a failure, so it is dropped."""
    _results(tmp_path / "results", "seq", np.zeros((2, 16, 16), np.uint8))
    visualize([("seq", iter([(f"{t:05d}", torch.rand(3, 16, 16)) for t in range(2)]))],
              tmp_path / "results", tmp_path / "pictures")
    assert "not supported" not in capfd.readouterr().err


def test_a_frame_without_result_is_an_error_naming_its_file(tmp_path):
    _results(tmp_path / "results", "seq", np.zeros((2, 16, 16), np.uint8))
    frames = [(f"{t:05d}", torch.rand(3, 16, 16)) for t in range(3)]
    with pytest.raises(FileNotFoundError, match=r"seq/00002\.png is missing"):
        check_results([("seq", iter(frames))], tmp_path / "results")


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
        _results(tmp_path / "davis" / "Annotations" / "480p", name, masks.numpy())
    out = tmp_path / "results"
    assert main(["propagate", "--davis", str(tmp_path / "davis"), "--out", str(out), "--overlay", "--window", "7"]) == 0
    assert (out / "overlays" / "index.html").is_file() and (out / "overlays" / "a.webm").is_file()
    assert main(["evaluate", "--davis", str(tmp_path / "davis"), "--results", str(out), "--processes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and "a_2" in printed
    assert (out / "global_results-val.csv").is_file()


def _davis_with_results(tmp_path):
    """A 2-sequence DAVIS-layout dataset and a results folder holding each frame's true mask."""
    from tests.test_propagate import make_davis
    from mast.data.synthetic import translating_video

    videos = {"a": translating_video(4, 32, 48), "b": translating_video(5, 32, 48, seed=1)}
    make_davis(tmp_path / "davis", videos)
    for name, (_, masks) in videos.items():
        _results(tmp_path / "results", name, masks.numpy())
    return tmp_path / "davis", tmp_path / "results"


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:60])


def _shrink(path):
    write_palette_png(path, np.zeros((16, 16), np.uint8))


@pytest.mark.parametrize("fault, named", [(lambda path: path.unlink(), "b/00003.png is missing"),
                                          (_truncate, "b/00003.png"),
                                          (_shrink, "b/00003.png is 16x16 but the frames of 'b' are 48x32")])
def test_cli_checks_every_result_before_the_first_write(tmp_path, capsys, fault, named):
    """A bad result in the last sequence is found before the first sequence's pictures are written."""
    davis, results = _davis_with_results(tmp_path)
    fault(results / "b" / "00003.png")
    before = _files(results)
    assert main(["visualize", "--davis", str(davis), "--results", str(results)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("mast visualize: error: ") and named in error
    assert _files(results) == before  # no RESULTS/overlays, not even a record


def test_cli_refuses_a_missing_sequence_folder_before_writing(tmp_path, capsys):
    davis, results = _davis_with_results(tmp_path)
    shutil.rmtree(results / "b")
    assert main(["visualize", "--davis", str(davis), "--results", str(results), "--out", str(tmp_path / "o")]) == 2
    assert "no results for the sequence 'b'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_without_vp9_says_so_before_writing(tmp_path, capsys, monkeypatch):
    """An OpenCV that cannot write the videos (here: asked for a codec WebM cannot hold) is
    found by the probe, in a temporary folder, before OUT is made."""
    davis, results = _davis_with_results(tmp_path)
    monkeypatch.setattr(visualize_module, "_VIDEO_CODEC", "XVID")
    assert main(["visualize", "--davis", str(davis), "--results", str(results), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "cannot write VP9 WebM videos" in lines[-1] and len([l for l in lines if "error" in l]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_draws_every_sequence(tmp_path, capsys):
    davis, results = _davis_with_results(tmp_path)
    assert main(["visualize", "--davis", str(davis), "--results", str(results)]) == 0
    assert _read_all(results / "overlays" / "b.webm") == (5, "VP90")
    assert "b.webm" in (results / "overlays" / "index.html").read_text()


def test_demo_without_vp9_stops_before_training(tmp_path, capsys, monkeypatch):
    """The demo draws its pictures last: the probe runs before its first write, not after training."""
    monkeypatch.setattr(visualize_module, "_VIDEO_CODEC", "XVID")
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "cannot write VP9 WebM videos" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
