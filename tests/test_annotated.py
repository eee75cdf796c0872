"""Videos with masks for the supervised baselines: layouts, the --year rule, clear errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from mast.common.errors import ArgumentError
from mast.common.masks import write_palette_png
from mast.data.annotated import discover_annotated, draw_frames


def _sequence(root, name, frames=4, masked=None, davis=True, size=(16, 24), mask_value=1):
    sub = ("480p",) if davis else ()
    images = root.joinpath("JPEGImages", *sub, name)
    masks = root.joinpath("Annotations", *sub, name)
    images.mkdir(parents=True)
    masks.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        Image.fromarray(np.full((*size, 3), 20 * t % 256, np.uint8)).save(images / f"{t:05d}.jpg")
        if masked is None or t in masked:
            ids = np.zeros(size, np.uint8)
            ids[2:6, 3 + t % 8:9 + t % 8] = mask_value
            write_palette_png(masks / f"{t:05d}.png", ids)


def test_davis_layout_every_frame(tmp_path):
    _sequence(tmp_path, "a")
    _sequence(tmp_path, "b", frames=3)
    videos = discover_annotated(tmp_path)
    assert [(v.name, len(v)) for v in videos] == [("a", 4), ("b", 3)]
    frame, ids = videos[0].read(1)
    assert frame.shape == (3, 16, 24) and ids.dtype == torch.int64 and set(ids.unique().tolist()) == {0, 1}


def test_youtube_vos_layout_uses_only_annotated_frames(tmp_path):
    _sequence(tmp_path, "yt", frames=11, masked={0, 5, 10}, davis=False)
    (video,) = discover_annotated(tmp_path)
    assert [p.stem for p in video.frame_paths] == ["00000", "00005", "00010"]


def test_year_rule_2016_and_void(tmp_path):
    _sequence(tmp_path, "s", mask_value=255)
    assert discover_annotated(tmp_path, year=2016)[0].read_mask(0).max() == 1
    # Read as DAVIS-2017, 0/255 masks hold no object (255 is void): refused up front, naming the year to give.
    with pytest.raises(ArgumentError, match="need year 2016"):
        discover_annotated(tmp_path, year=2017)
    _sequence(tmp_path / "void", "v")
    ids = np.zeros((16, 24), np.uint8)
    ids[:4], ids[-4:] = 1, 255
    write_palette_png(tmp_path / "void" / "Annotations" / "480p" / "v" / "00000.png", ids)
    mask = discover_annotated(tmp_path / "void", year=2017)[0].read_mask(0)
    assert set(mask.unique().tolist()) == {0, 1} and mask[-4:].max() == 0  # 255 is void in DAVIS-2017


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_annotated(tmp_path / "missing")
    (tmp_path / "frames" / "JPEGImages" / "s").mkdir(parents=True)
    with pytest.raises(ValueError, match="no Annotations/"):
        discover_annotated(tmp_path / "frames")
    _sequence(tmp_path / "one", "s", masked={0})
    with pytest.raises(ValueError, match="no sequence has two or more frames with masks"):
        with pytest.warns(RuntimeWarning, match="skipping s"):
            discover_annotated(tmp_path / "one")
    with pytest.raises(ValueError, match="1 frame"):
        discover_annotated(tmp_path / "one", sequences=["s"])
    with pytest.raises(FileNotFoundError, match="'nope' not found"):
        discover_annotated(tmp_path / "one", sequences=["nope"])


def test_a_mask_of_another_size_is_refused_up_front(tmp_path):
    _sequence(tmp_path, "s")
    write_palette_png(tmp_path / "Annotations" / "480p" / "s" / "00000.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="00000.png: mask is 8x8 but its frame 00000.jpg is 24x16"):
        discover_annotated(tmp_path)


def test_draw_frames_is_seeded_and_within_the_gap(tmp_path):
    _sequence(tmp_path, "a", frames=10)
    videos = discover_annotated(tmp_path)
    draws = [draw_frames(videos, 3, 4, torch.Generator().manual_seed(s)) for s in range(50)]
    assert draws == [draw_frames(videos, 3, 4, torch.Generator().manual_seed(s)) for s in range(50)]
    for _, (first, *later) in draws:
        assert all(first < t <= first + 4 for t in later)
