"""Damaged inputs are refused by name: truncated frame files, lost frames, damaged video files."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.data.synthetic import translating_video
from mast.data.video import (
    FrameFolderSource,
    VideoFileSource,
    _native_stderr,
    _to_float_rgb,
    discover_videos,
    read_image,
)
from mast.data.frames import missing_frames
from mast.common.masks import write_palette_png


def textured(height: int = 48, width: int = 64, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """A deterministic noisy image, so that cutting its file cuts pixel data."""
    top = np.iinfo(dtype).max
    image = np.random.default_rng(0).integers(0, top, (height, width, channels), dtype=dtype, endpoint=True)
    return image[:, :, 0] if channels == 1 else image


def written(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# ---------------------------------------------------------------- truncated frame files


@pytest.mark.parametrize("ext, reason", [("jpg", "end-of-image marker"), ("png", "IEND")])
def test_frame_cut_to_sixty_percent_is_refused_naming_the_file(tmp_path, ext, reason):
    path = cut(written(tmp_path / f"00003.{ext}", textured()), 0.6)
    with pytest.raises(ValueError, match=rf"00003\.{ext}.*{reason}"):
        read_image(path)


def test_jpeg_missing_only_its_end_marker_is_refused(tmp_path):
    path = written(tmp_path / "frame.jpg", textured())
    path.write_bytes(path.read_bytes()[:-2])  # OpenCV's file reader decodes this with a warning only
    with pytest.raises(ValueError, match=r"frame\.jpg.*truncated JPEG"):
        read_image(path)


def cut_from_the_middle(path: Path) -> Path:
    """``path`` with the middle third of its image data (after the start-of-scan marker) removed:
    its headers are whole and it still ends with its end-of-image marker."""
    data = path.read_bytes()
    scan = data.rindex(b"\xff\xda")
    third = (len(data) - 2 - scan) // 3
    path.write_bytes(data[: scan + third] + data[scan + 2 * third :])
    assert path.read_bytes().endswith(b"\xff\xd9")
    return path


def test_jpeg_cut_in_the_middle_that_still_ends_in_its_marker_is_refused(tmp_path, capfd):
    intact = written(tmp_path / "intact.jpg", textured(96, 128))
    path = cut_from_the_middle(written(tmp_path / "00007.jpg", textured(96, 128)))
    # OpenCV decodes it with most of the frame grey, saying so only on stderr.
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR).shape == (96, 128, 3)
    capfd.readouterr()
    with pytest.raises(ValueError, match=r"corrupt frame .*00007\.jpg: truncated JPEG: its image data ends"):
        read_image(path)
    assert read_image(intact).shape == (3, 96, 128)
    os.write(2, b"stderr still works\n")
    assert capfd.readouterr().err == "stderr still works\n"  # libjpeg's line became the error, nothing else


def test_what_native_code_prints_while_a_frame_decodes_still_reaches_stderr(capfd):
    with _native_stderr(held_back=("premature end of jpeg file",)) as printed:
        os.write(2, b"libfoo: a word\nCorrupt JPEG data: Premature end of JPEG file\n")
    assert printed == ["libfoo: a word", "Corrupt JPEG data: Premature end of JPEG file"]
    assert capfd.readouterr().err == "libfoo: a word\n"  # the held-back line is the caller's to report


def test_data_appended_after_a_jpeg_and_empty_files_are_refused(tmp_path):
    path = written(tmp_path / "frame.jpg", textured())
    path.write_bytes(path.read_bytes() + b"appended data")
    with pytest.raises(ValueError, match=r"frame\.jpg.*end-of-image marker"):
        read_image(path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png.*empty file"):
        read_image(tmp_path / "empty.png")


@pytest.mark.parametrize(
    "name, image, padding",
    [
        ("colour.jpg", textured(), b""),
        ("nul_padded.jpg", textured(), b"\0" * 64),
        ("ff_padded.jpg", textured(), b"\xff" * 3),
        ("colour.png", textured(), b""),
        ("deep.png", textured(dtype=np.uint16), b""),
        ("gray.png", textured(channels=1), b""),
        ("alpha.png", textured(channels=4), b""),
        ("colour.bmp", textured(), b""),
    ],
)
def test_intact_frames_read_exactly_as_opencv_decodes_the_file(tmp_path, name, image, padding):
    path = written(tmp_path / name, image)
    path.write_bytes(path.read_bytes() + padding)
    expected = _to_float_rgb(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), name)
    assert torch.equal(read_image(path), expected)


# ---------------------------------------------------------------- lost frames


def names(*stems: str, ext: str = ".jpg") -> list[Path]:
    return [Path("seq") / f"{stem}{ext}" for stem in stems]


def test_missing_frames_follow_the_folders_own_step():
    assert missing_frames(names("00000", "00001", "00003", "00006")) == ["00002.jpg", "00004.jpg", "00005.jpg"]
    # YouTube-VOS train folders hold every 5th frame: that is their step, not a gap.
    assert missing_frames(names("00000", "00005", "00010", "00015")) == []
    assert missing_frames(names("00000", "00005", "00015", "00020")) == ["00010.jpg"]
    assert missing_frames(names("frame_8", "frame_10", "frame_9", "frame_12", ext=".png")) == ["frame_11.png"]
    # A stray date-named file implies 20 million lost frames: only the first few are named.
    assert missing_frames(names("00000", "00001", "00002", "20240131"), limit=2) == ["00003.jpg", "00004.jpg"]


def test_names_without_a_common_numbering_are_not_checked():
    assert missing_frames(names("a", "b", "d")) == []
    assert missing_frames(names("cam1_00000", "cam2_00002", "cam1_00003")) == []
    assert missing_frames(names("00000", "00010", "00020", "00027")) == []  # 7 is no multiple of the step


def frame_folder(folder: Path, stems: list[str]) -> Path:
    folder.mkdir(parents=True)
    for stem in stems:
        written(folder / f"{stem}.jpg", textured(8, 8))
    return folder


def test_frame_folder_with_a_gap_is_an_error_by_default_and_a_warning_for_training(tmp_path):
    folder = frame_folder(tmp_path / "bear", ["00000", "00001", "00003"])
    with pytest.raises(ValueError, match=r"frame folder .*bear .*missing 00002\.jpg"):
        FrameFolderSource.from_folder(folder)
    with pytest.warns(RuntimeWarning, match=r"bear .*missing 00002\.jpg"):
        source = FrameFolderSource.from_folder(folder, on_gap="warn")
    assert source.num_frames == 3
    with pytest.warns(RuntimeWarning, match=r"missing 00002\.jpg"):
        report = discover_videos(tmp_path)
    assert [s.name for s in report] == ["bear"] and report.num_skipped == 0
    with pytest.raises(ValueError, match="on_gap"):
        FrameFolderSource.from_folder(folder, on_gap="ignore")


def test_long_gap_message_lists_the_first_missing_files(tmp_path):
    folder = frame_folder(tmp_path / "seq", ["00000", "00001", "00012"])
    with pytest.raises(ValueError, match=r"missing 00002\.jpg, 00003\.jpg, 00004\.jpg, 00005\.jpg, 00006\.jpg, \.\.\."):
        FrameFolderSource.from_folder(folder)


def test_youtube_vos_stride_five_folder_reads_without_a_word(tmp_path, recwarn):
    folder = frame_folder(tmp_path / "ytvos" / "JPEGImages" / "0a1b", ["00000", "00005", "00010"])
    assert FrameFolderSource.from_folder(folder).num_frames == 3
    assert [s.num_frames for s in discover_videos(tmp_path / "ytvos")] == [3]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ---------------------------------------------------------------- mast propagate end to end


def tiny_davis(root: Path, num_frames: int = 5) -> Path:
    """``root`` as a DAVIS-2017 layout with one sequence ``blob`` in the ``val`` split."""
    frames, masks = translating_video(num_frames=num_frames, height=48, width=48)
    folder = root / "JPEGImages" / "480p" / "blob"
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        written(folder / f"{t:05d}.jpg", (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8))
    write_palette_png(root / "Annotations" / "480p" / "blob" / "00000.png", masks[0].numpy().astype(np.uint8))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("blob\n")
    return folder


def propagate(root: Path, out: Path) -> int:
    return main(["propagate", "--davis", str(root), "--year", "2017", "--split", "val", "--out", str(out)])


def test_propagate_refuses_a_sequence_with_a_missing_frame(tmp_path, capsys):
    folder = tiny_davis(tmp_path / "davis")
    (folder / "00002.jpg").unlink()
    assert propagate(tmp_path / "davis", tmp_path / "out") == 2
    assert "missing 00002.jpg" in capsys.readouterr().err
    assert not (tmp_path / "out" / "blob").exists()


@pytest.mark.parametrize("damage", [lambda path: cut(path, 0.6), cut_from_the_middle], ids=["end", "middle"])
def test_propagate_refuses_a_truncated_frame(tmp_path, capsys, damage):
    folder = tiny_davis(tmp_path / "davis")
    damage(folder / "00003.jpg")
    assert propagate(tmp_path / "davis", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "00003.jpg" in error and "truncated JPEG" in error
    assert not (tmp_path / "out" / "blob").exists()


def test_tiny_davis_propagates_when_intact(tmp_path):
    tiny_davis(tmp_path / "davis")
    assert propagate(tmp_path / "davis", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out" / "blob").iterdir()) == [f"{t:05d}.png" for t in range(5)]


# ---------------------------------------------------------------- damaged video files


def moving_square_mp4(path: Path, num_frames: int = 40) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for t in range(num_frames):
        frame = np.zeros((96, 128, 3), np.uint8)
        frame[..., 2] = 20 + 5 * t
        frame[2 * t : 2 * t + 20, 10:40] = 255
        writer.write(frame)
    writer.release()
    return path


def test_damage_inside_a_video_file_is_an_error_not_an_early_end(tmp_path):
    path = moving_square_mp4(tmp_path / "clip.mp4")
    assert len(list(VideoFileSource.open(path).iter_frames())) == 40
    data = bytearray(path.read_bytes())
    start, stop = len(data) * 45 // 100, len(data) * 55 // 100
    data[start:stop] = bytes(stop - start)  # FFmpeg fails on a few frames, then decodes the rest again
    path.write_bytes(bytes(data))
    source = VideoFileSource.open(path)
    with pytest.raises(ValueError, match=r"clip\.mp4: frame \d+ does not decode but a later one does"):
        list(source.iter_frames())
    with pytest.raises(ValueError, match=r"clip\.mp4.*damaged data inside the file"):
        source.read([source.num_frames - 1])
