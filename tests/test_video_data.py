"""The video reading layer: frame folders, video files, dataset layouts, discovery errors."""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mast.data import video_cache
from tests.test_corrupt_frames import moving_square_mp4
from mast.data.augment import ClipAugment
from mast.data.clips import ClipDataset, collate_clips
from mast.data.video import (
    DiscoveryReport,
    FrameFolderSource,
    TensorVideoSource,
    VideoFileSource,
    VideoSource,
    discover_videos,
    read_image,
)


def _shared_data() -> Path | None:
    root = Path(os.environ.get("MAST_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return root / "data" if (root / "data").is_dir() else None


SHARED = _shared_data()
requires_shared = pytest.mark.skipif(SHARED is None, reason="shared sample data (../shared/data or $MAST_SHARED) absent")


def red_code(index: int) -> int:
    """The red value frame ``index`` carries (steps of 10 survive lossy codecs)."""
    return 20 + 10 * index


def encoded_frame(index: int, height: int = 24, width: int = 32) -> np.ndarray:
    """A flat BGR frame: red = ``red_code(index)``, green 100, blue 200."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (200, 100, red_code(index))
    return frame


def write_frames(folder: Path, num_frames: int, ext: str = "png", height: int = 24, width: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        assert cv2.imwrite(str(folder / f"{i:05d}.{ext}"), encoded_frame(i, height, width))
    return folder


def write_video(path: Path, num_frames: int, fourcc: str = "mp4v", height: int = 48, width: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for i in range(num_frames):
        writer.write(encoded_frame(i, height, width))
    writer.release()
    return path


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    """Each test starts from an empty decoded-video cache, dropped after it (no memory kept)."""
    monkeypatch.setattr(video_cache, "_process_cache", None)


def red_values(frames: torch.Tensor) -> list[float]:
    """Mean red of each ``(T, 3, H, W)`` frame in 8-bit units."""
    return (frames[:, 0].mean(dim=(1, 2)) * 255).tolist()


# ---------------------------------------------------------------- frame folders


def test_frame_folder_reads_selected_frames_in_requested_order(tmp_path):
    folder = write_frames(tmp_path / "seq", 6)
    report = discover_videos(folder)
    assert isinstance(report, DiscoveryReport) and len(report) == 1 and report.num_skipped == 0
    source = report[0]
    assert isinstance(source, FrameFolderSource) and isinstance(source, VideoSource)
    assert source.name == "seq" and source.num_frames == 6
    frames = source.read([4, 1, 4])
    assert frames.shape == (3, 3, 24, 32) and frames.dtype == torch.float32
    assert red_values(frames) == pytest.approx([red_code(4), red_code(1), red_code(4)])
    assert frames[:, 1].mean().item() == pytest.approx(100 / 255)  # RGB order, not BGR
    assert frames[:, 2].mean().item() == pytest.approx(200 / 255)
    with pytest.raises(IndexError, match="out of range"):
        source.read([6])


def test_sixteen_bit_and_grayscale_frames_become_float_rgb(tmp_path):
    deep = tmp_path / "deep"
    deep.mkdir()
    for i in range(3):
        image = np.full((8, 10, 3), 1000 * (i + 1), np.uint16)
        assert cv2.imwrite(str(deep / f"{i}.png"), image)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(gray / f"{i}.png"), np.full((8, 10), 50 * i, np.uint8))

    frames = FrameFolderSource.from_folder(deep).read([2])
    assert frames.shape == (1, 3, 8, 10)
    assert torch.allclose(frames, torch.full_like(frames, 3000 / 65535))
    frames = FrameFolderSource.from_folder(gray).read([0, 2])
    assert frames.shape == (2, 3, 8, 10)
    assert torch.allclose(frames[1], torch.full_like(frames[1], 100 / 255))


def test_unreadable_frame_file_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")


# ---------------------------------------------------------------- layouts


def test_directory_of_frame_folders_and_videos(tmp_path):
    write_frames(tmp_path / "b_jpg", 4, ext="jpg")
    write_frames(tmp_path / "a_png", 5)
    write_video(tmp_path / "c.avi", 6, fourcc="MJPG")
    report = discover_videos([tmp_path])
    assert [s.name for s in report] == ["a_png", "b_jpg", "c"]
    assert [s.num_frames for s in report] == [5, 4, 6]
    assert report.total_frames == 15


def test_davis_root_uses_480p_frames_and_ignores_annotations(tmp_path):
    root = tmp_path / "DAVIS"
    write_frames(root / "JPEGImages" / "480p" / "bear", 3, ext="jpg")
    write_frames(root / "JPEGImages" / "480p" / "dog", 4, ext="jpg")
    write_frames(root / "Annotations" / "480p" / "bear", 3)
    report = discover_videos(root)
    assert [(s.name, s.num_frames) for s in report] == [("bear", 3), ("dog", 4)]
    assert all("JPEGImages" in str(s.frame_paths[0]) for s in report)


def test_youtube_vos_and_per_sequence_layouts(tmp_path):
    write_frames(tmp_path / "ytvos" / "train" / "JPEGImages" / "0a1b", 3, ext="jpg")
    write_frames(tmp_path / "ytvos" / "train" / "Annotations" / "0a1b", 3)
    write_frames(tmp_path / "samples" / "caps" / "JPEGImages", 2, ext="jpg")
    write_frames(tmp_path / "samples" / "caps" / "Annotations", 2)
    report = discover_videos([tmp_path / "ytvos", tmp_path / "samples"])
    assert [(s.name, s.num_frames) for s in report] == [("0a1b", 3), ("caps", 2)]


# ---------------------------------------------------------------- video files


@pytest.mark.parametrize("fourcc, ext", [("mp4v", "mp4"), ("MJPG", "avi")])
def test_video_file_reads_selected_frames(tmp_path, fourcc, ext):
    path = write_video(tmp_path / f"clip.{ext}", 20, fourcc)
    (source,) = discover_videos(path)
    assert isinstance(source, VideoFileSource) and source.name == "clip" and source.num_frames == 20
    frames = source.read([15, 2, 7, 2])
    assert frames.shape == (4, 3, 48, 64)
    assert red_values(frames) == pytest.approx([red_code(i) for i in (15, 2, 7, 2)], abs=6)


def test_video_file_seeking_matches_decoding_through(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 20)
    decoding = VideoFileSource.open(path)
    seeking = VideoFileSource.open(path)
    seeking.max_decode_gap = 0  # every forward jump seeks
    indices = [3, 11, 19]
    assert torch.equal(decoding.read(indices), seeking.read(indices))


class CountingCapture:
    """OpenCV's own VideoCapture, counting how many are opened (how often a file is decoded from its start)."""

    opened = 0

    def __new__(cls, *args):
        cls.opened += 1
        return REAL_CAPTURE(*args)


REAL_CAPTURE = cv2.VideoCapture


def test_a_video_file_is_decoded_once_then_every_clip_comes_from_memory(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", 22)
    source = VideoFileSource.open(path)
    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    CountingCapture.opened = 0
    clips = [[20, 3], [0, 5, 15, 17, 19, 20], [21], [18, 2]]
    frames = [source.read(clip) for clip in clips]
    assert CountingCapture.opened == 1  # before: one capture (and its seeks) per clip
    for clip, read in zip(clips, frames):
        assert red_values(read) == pytest.approx([red_code(i) for i in clip], abs=6)
    assert video_cache.decoded_videos().bytes == 22 * 48 * 64 * 3


def test_cached_reads_equal_reads_by_seeking(tmp_path, monkeypatch):
    path = moving_square_mp4(tmp_path / "clip.mp4", 40)
    clips = [[39, 1], [0, 5, 15, 17, 19, 20], [33, 7, 7], [12]]
    cached = [VideoFileSource.open(path, frame_stride=2).read([i // 2 for i in clip]) for clip in clips]
    monkeypatch.setenv(video_cache.ENVIRONMENT_VARIABLE, "0")  # no cache: every read seeks
    monkeypatch.setattr(video_cache, "_process_cache", None)
    seeking = VideoFileSource.open(path, frame_stride=2)
    seeking.max_decode_gap = 0
    for clip, frames in zip(clips, cached):
        assert torch.equal(frames, seeking.read([i // 2 for i in clip]))
    assert video_cache.decoded_videos().bytes == 0


def test_a_rewritten_video_file_is_decoded_again(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 10)
    source = VideoFileSource.open(path)
    assert red_values(source.read([9])) == pytest.approx([red_code(9)], abs=6)
    os.replace(write_video(tmp_path / "other.mp4", 10, height=24, width=32), path)
    assert source.read([9]).shape == (1, 3, 24, 32)


def frames_of(count: int, nbytes: int = 10) -> list[np.ndarray]:
    return [np.zeros(nbytes, np.uint8) for _ in range(count)]


def test_the_cache_drops_the_least_recently_used_video_within_its_bound():
    cache = video_cache.DecodedVideos(bound=50)
    decodes = Counter()

    def decoder(key: str, count: int):
        def decode():
            decodes[key] += 1
            return frames_of(count)
        return decode

    assert len(cache.frames("a", decoder("a", 2))) == 2
    assert len(cache.frames("b", decoder("b", 2))) == 2
    cache.frames("a", decoder("a", 2))  # a is now the most recent
    with pytest.warns(RuntimeWarning, match="cache .*is full"):
        cache.frames("c", decoder("c", 2))  # 60 bytes > 50: b goes
    assert cache.bytes == 40
    cache.frames("a", decoder("a", 2))
    cache.frames("b", decoder("b", 2))  # decoded again; c goes, without a second warning
    assert decodes == {"a": 1, "b": 2, "c": 1}
    assert cache.frames("huge", decoder("huge", 6)) is None  # 60 bytes alone: not kept, not retried
    assert cache.frames("huge", decoder("huge", 6)) is None and decodes["huge"] == 1
    assert cache.bytes <= 50


def test_a_damaged_video_is_not_decoded_whole_again():
    cache = video_cache.DecodedVideos(bound=1000)

    def damaged():
        yield from frames_of(2)
        raise ValueError("damaged data inside the file")

    with pytest.raises(ValueError, match="damaged"):
        cache.frames("x", damaged)
    assert cache.frames("x", damaged) is None and cache.bytes == 0


def test_the_cache_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(video_cache.ENVIRONMENT_VARIABLE, "64")
    assert video_cache.bound_from_environment() == 64 << 20
    monkeypatch.setenv(video_cache.ENVIRONMENT_VARIABLE, "lots")
    with pytest.warns(RuntimeWarning, match="MAST_VIDEO_CACHE_MB='lots' is not a whole number"):
        assert video_cache.bound_from_environment() == video_cache.DEFAULT_MEGABYTES << 20
    monkeypatch.delenv(video_cache.ENVIRONMENT_VARIABLE)
    assert video_cache.bound_from_environment() == video_cache.DEFAULT_MEGABYTES << 20


def test_frame_stride_on_a_video_file(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 20)
    (source,) = discover_videos(path, frame_stride=3)
    assert source.num_frames == math.ceil(20 / 3)  # file frames 0, 3, ..., 18
    frames = source.read([1, 4, 6])
    assert red_values(frames) == pytest.approx([red_code(3), red_code(12), red_code(18)], abs=6)


def test_iter_frames_streams_every_frame(tmp_path):
    video = VideoFileSource.open(write_video(tmp_path / "clip.mp4", 7), frame_stride=3)
    assert red_values(torch.stack(list(video.iter_frames()))) == pytest.approx([red_code(i) for i in (0, 3, 6)], abs=6)
    folder = FrameFolderSource.from_folder(write_frames(tmp_path / "seq", 3))
    assert torch.equal(torch.stack(list(folder.iter_frames())), folder.read([0, 1, 2]))


def test_overstated_frame_count_is_clamped_with_a_warning(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 8)
    source = VideoFileSource("clip", path, num_frames=12)  # as a lying container would report
    with pytest.warns(RuntimeWarning, match="only 8 decode"):
        frames = source.read([2, 11])
    assert source.num_frames == 8
    assert red_values(frames) == pytest.approx([red_code(2), red_code(7)], abs=6)


def test_dataset_redraws_clips_of_a_video_found_shorter(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 8)
    source = VideoFileSource("clip", path, num_frames=30)  # as a lying container would report
    dataset = ClipDataset([source], samples_per_epoch=6, transform=None, mode="memory")
    with pytest.warns(RuntimeWarning, match="only 8 decode"):
        items = [dataset[i] for i in range(6)]
    for item in items:
        assert int(item["indices"].max()) < 8
        assert red_values(item["frames"]) == pytest.approx([red_code(int(i)) for i in item["indices"]], abs=6)


def test_verified_frame_count(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 9)
    (source,) = discover_videos(path, frame_stride=2, verify_frame_counts=True)
    assert source.num_frames == 5


# ---------------------------------------------------------------- errors


def test_corrupt_video_is_skipped_with_a_warning_and_counted(tmp_path):
    write_video(tmp_path / "good.mp4", 5)
    (tmp_path / "x.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.warns(RuntimeWarning, match="x.mp4"):
        report = discover_videos(tmp_path)
    assert [s.name for s in report] == ["good"]
    assert report.num_skipped == 1 and report.skipped[0][0] == tmp_path / "x.mp4"


def test_all_corrupt_videos_is_a_clear_error(tmp_path):
    for name in ("x.mp4", "y.avi"):
        (tmp_path / name).write_bytes(np.random.default_rng(1).bytes(2048))
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="no usable video.*x.mp4"):
        discover_videos(tmp_path)


def test_missing_or_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_videos(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found in directory .*empty"):
        discover_videos(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="notes.txt is not a video"):
        discover_videos(tmp_path / "notes.txt")


def test_mixed_resolutions_in_one_dataset(tmp_path):
    small = FrameFolderSource.from_folder(write_frames(tmp_path / "small", 3, height=12, width=16))
    large = FrameFolderSource.from_folder(write_frames(tmp_path / "large", 3, height=40, width=60))
    dataset = ClipDataset(
        [small, large], samples_per_epoch=8, transform=ClipAugment((16, 16)), pair_gaps=(2,), pair_gap_probs=(1.0,)
    )
    items = [dataset[i] for i in range(8)]
    assert {item["video"] for item in items} == {"small", "large"}
    batch = collate_clips(items)
    assert batch["frames"].shape == (8, 2, 3, 16, 16)


def test_tensor_source_checks_its_shape():
    source = TensorVideoSource("t", torch.rand(4, 3, 5, 6))
    assert source.read([3, 0]).shape == (2, 3, 5, 6)
    with pytest.raises(ValueError, match="T, 3, H, W"):
        TensorVideoSource("bad", torch.rand(4, 5, 6))


# ---------------------------------------------------------------- real sample data


@requires_shared
def test_real_mp4_with_frame_stride():
    path = SHARED / "raw_videos" / "05_default_juggle.mp4"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    source = VideoFileSource.open(path, frame_stride=2)
    assert source.num_frames == math.ceil(247 / 2)
    frames = source.read([0, 1, 2])
    assert frames.shape == (3, 3, 720, 1280)
    assert 0 <= frames.min() and frames.max() <= 1
    capture = cv2.VideoCapture(str(path))  # frame 1 of the stride-2 source is file frame 2
    for _ in range(3):
        ok, image = capture.read()
    capture.release()
    assert ok and torch.allclose(frames[1], torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1) / 255)


@requires_shared
def test_real_davis_root_discovery():
    root = SHARED / "davis2016"
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    report = discover_videos(root)
    names = [s.name for s in report]
    assert "blackswan" in names and "bmx-trees" in names and report.num_skipped == 0
    assert dict(zip(names, (s.num_frames for s in report)))["blackswan"] == 50
