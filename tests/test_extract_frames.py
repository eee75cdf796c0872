"""``mast extract-frames``: one decode per video into JPEG folders, resumable, never writing over others' files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch

from mast.cli.main import main
from mast.data.video import FrameFolderSource, VideoFileSource, discover_videos
from tests.test_corrupt_frames import moving_square_mp4
from tests.test_video_data import red_code, red_values, write_video


def extract(*args) -> int:
    return main(["extract-frames", *map(str, args)])


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_video_becomes_a_folder_of_its_frames_in_order(tmp_path):
    clip = write_video(tmp_path / "in" / "clip.mp4", 12)
    walk = write_video(tmp_path / "in" / "walk.avi", 5, fourcc="MJPG")
    out = tmp_path / "frames"
    assert extract(clip, walk, "--out", out) == 0
    assert sorted(p.name for p in (out / "clip").iterdir()) == [f"{i:05d}.jpg" for i in range(12)]
    report = discover_videos(out)
    assert [(s.name, s.num_frames) for s in report] == [("clip", 12), ("walk", 5)]
    folder = FrameFolderSource.from_folder(out / "clip")
    # The same frames as the video gives (JPEG at quality 95 moves a flat colour by a level or two).
    assert torch.allclose(folder.read(range(12)), VideoFileSource.open(clip).read(range(12)), atol=3 / 255)
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "extract-frames"
    assert record["settings"] == {"size": None, "fps": None, "quality": 95}


def test_size_keeps_the_aspect_and_fps_keeps_every_nth_frame(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 20, height=48, width=64)  # 10 frames/s
    out = tmp_path / "frames"
    assert extract(clip, "--out", out, "--size", 24, "--fps", 5) == 0
    source = FrameFolderSource.from_folder(out / "clip")
    frames = source.read(range(source.num_frames))
    assert frames.shape == (10, 3, 24, 32)
    assert red_values(frames) == pytest.approx([red_code(i) for i in range(0, 20, 2)], abs=6)


def test_a_rerun_skips_finished_videos_and_redoes_a_changed_one(tmp_path, capsys):
    first = write_video(tmp_path / "a.mp4", 6)
    second = write_video(tmp_path / "b.mp4", 4)
    out = tmp_path / "frames"
    assert extract(first, "--out", out) == 0
    before = snapshot(out / "a")
    assert extract(first, second, "--out", out) == 0
    assert "skipping 1 video(s) already extracted" in capsys.readouterr().out
    assert snapshot(out / "a") == before  # not rewritten
    assert FrameFolderSource.from_folder(out / "b").num_frames == 4
    write_video(first, 9)  # the same file, re-encoded longer: its frames are stale
    assert extract(first, second, "--out", out) == 0
    assert FrameFolderSource.from_folder(out / "a").num_frames == 9
    assert "skipping 1 video(s)" in capsys.readouterr().out


def test_other_settings_are_refused_unless_overwrite(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", 6)
    out = tmp_path / "frames"
    assert extract(clip, "--out", out) == 0
    before = snapshot(out)
    assert extract(clip, "--out", out, "--size", 16) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == before
    assert extract(clip, "--out", out, "--size", 16, "--overwrite") == 0
    assert cv2.imread(str(out / "clip" / "00000.jpg")).shape == (16, 21, 3)


def test_another_video_with_a_finished_stem_is_refused(tmp_path, capsys):
    out = tmp_path / "frames"
    assert extract(write_video(tmp_path / "one" / "clip.mp4", 6), "--out", out) == 0
    before = snapshot(out)
    assert extract(write_video(tmp_path / "two" / "clip.mp4", 3), "--out", out) == 2
    assert "holds the frames of" in capsys.readouterr().err
    assert snapshot(out) == before


def test_everything_is_checked_before_the_first_write(tmp_path, capsys):
    good = write_video(tmp_path / "in" / "clip.mp4", 6)
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    twin = write_video(tmp_path / "other" / "clip.mkv", 3, fourcc="MJPG")
    out = tmp_path / "frames"
    cases = {
        (good, tmp_path / "missing.mp4"): "not found",
        (good, broken): "broken.mp4",
        (good, tmp_path / "in"): "not a video file",
        (good, twin): "share the stem 'clip'",
    }
    for videos, message in cases.items():
        assert extract(*videos, "--out", out) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert extract(good, "--out", tmp_path / "in") == 2  # beside its own input
    assert "contains the input VIDEO" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["broken.mp4", "clip.mp4"]


def test_a_folder_of_the_users_own_files_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "notes.txt").write_text("mine")
    assert extract(write_video(tmp_path / "clip.mp4", 4), "--out", out) == 2
    assert "mast did not write" in capsys.readouterr().err
    assert (out / "clip" / "notes.txt").read_text() == "mine" and len(list(out.rglob("*"))) == 2


def test_options_are_checked_by_the_parser(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", 4)
    for option in (["--size", "0"], ["--fps", "-1"], ["--quality", "101"]):
        with pytest.raises(SystemExit):
            extract(clip, "--out", tmp_path / "frames", *option)
        assert option[0] in capsys.readouterr().err
    assert not (tmp_path / "frames").exists()


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["extract-frames", "--help"])
    text = capsys.readouterr().out
    assert "Examples:" in text and "--fps" in text and "--size" in text


def test_nothing_is_left_half_written_when_a_video_breaks_midway(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", 6)
    damaged = moving_square_mp4(tmp_path / "damaged.mp4")
    data = bytearray(damaged.read_bytes())
    start, stop = len(data) * 45 // 100, len(data) * 55 // 100
    data[start:stop] = bytes(stop - start)  # a few frames no longer decode, later ones do
    damaged.write_bytes(bytes(data))
    out = tmp_path / "frames"
    assert extract(clip, damaged, "--out", out) == 2
    assert "damaged data inside the file" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["clip", "run.json"]  # no half folder
    assert extract(clip, "--out", out) == 0  # the finished video stays finished
    assert "skipping 1 video(s)" in capsys.readouterr().out
    assert len(json.loads((out / "run.json").read_text())["files"]) == 6
