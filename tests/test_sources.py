"""Propagation inputs: one void rule for DAVIS folders and --first-mask, year
mismatches, clipped boxes (tiny synthetic frames and masks in tmp_path)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from mast.data.synthetic import translating_video
from mast.common.masks import write_palette_png
from mast.eval.sources import box_to_ids, davis_inputs, video_input
from tests.test_propagate import make_davis

SIZE = 32


@pytest.fixture
def davis_root(tmp_path):
    """A DAVIS-2017 layout with one 3-frame sequence ``seq`` of 32x32 frames."""
    frames, masks = translating_video(num_frames=3, height=SIZE, width=SIZE)
    make_davis(tmp_path / "davis", {"seq": (frames, masks)})
    return tmp_path / "davis"


def first_annotation(root):
    return root / "Annotations" / "480p" / "seq" / "00000.png"


def frames_of(root):
    return root / "JPEGImages" / "480p" / "seq"


def ids_with_void() -> np.ndarray:
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[2:10, 2:10], ids[20:28, 20:28], ids[:, -2:] = 1, 2, 255
    return ids


def test_void_is_not_an_object_on_both_paths(davis_root, tmp_path):
    ids = ids_with_void()
    write_palette_png(first_annotation(davis_root), ids)
    write_palette_png(tmp_path / "first.png", ids)
    from_davis = davis_inputs(davis_root)[0].first_ids
    from_video = video_input(frames_of(davis_root), first_mask=tmp_path / "first.png").first_ids
    assert np.array_equal(from_davis, from_video)
    assert set(np.unique(from_video)) == {0, 1, 2}
    assert np.array_equal(from_video, np.where(ids == 255, 0, ids))


def test_first_mask_of_only_0_and_255_is_an_error(davis_root, tmp_path):
    Image.fromarray(np.where(ids_with_void() > 0, 255, 0).astype(np.uint8)).save(tmp_path / "binary.png")
    with pytest.raises(ValueError, match=r"binary\.png: holds only 0 and 255, but 255 is void.*as id 1"):
        video_input(frames_of(davis_root), first_mask=tmp_path / "binary.png")


def test_davis2016_masks_under_2017_suggest_year_2016(davis_root):
    binary = np.where(ids_with_void() > 0, 255, 0).astype(np.uint8)
    Image.fromarray(binary).save(first_annotation(davis_root))
    with pytest.raises(ValueError, match=r"seq/00000\.png holds only 0 and 255.*need year 2016"):
        davis_inputs(davis_root)
    (davis_root / "ImageSets" / "2017").rename(davis_root / "ImageSets" / "2016")
    assert np.array_equal(davis_inputs(davis_root, year=2016)[0].first_ids, (binary > 0).astype(np.uint8))


def test_box_partly_outside_warns_with_the_clipped_box(davis_root):
    with pytest.warns(UserWarning, match=r"first box -4,20,10,30 reaches outside the 32x32 frame; clipped to 0,20,6,12"):
        item = video_input(frames_of(davis_root), first_box="-4,20,10,30")
    assert item.first_ids.sum() == 6 * 12 and item.first_ids[20:32, 0:6].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a box inside the frame is not clipped: no warning
        assert box_to_ids((0, 0, 32, 32), SIZE, SIZE).all()
    with pytest.raises(ValueError, match="-9,0,5,5 lies outside the 32x32 frame"):
        box_to_ids((-9, 0, 5, 5), SIZE, SIZE)
