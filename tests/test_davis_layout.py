"""One owner of a DAVIS / YouTube-VOS folder (mast.data.davis.DavisDataset): layout, splits, numbering, mask ids."""
from __future__ import annotations

import numpy as np
import pytest

from mast.common.errors import ArgumentError
from mast.common.masks import write_palette_png
from mast.data.davis import DavisDataset, read_ids
from mast.data.frames import missing_frames
from mast.data.video import discover_videos


def write_sequence(root, name, stems, nested=True, ids=None, year=2017):
    """Frames (empty JPEG-named PNG files are not decoded here) and masks of one sequence."""
    frames = root / "JPEGImages" / ("480p" if nested else "") / name
    masks = root / "Annotations" / ("480p" if nested else "") / name
    frames.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        write_palette_png(frames / f"{stem}.png", np.zeros((4, 4), np.uint8))
        write_palette_png(masks / f"{stem}.png", np.zeros((4, 4), np.uint8) if ids is None else ids)
    (root / "ImageSets" / str(year)).mkdir(parents=True, exist_ok=True)
    return frames, masks


def test_the_layout_is_found_davis_480p_or_youtube_vos_flat(tmp_path):
    frames, masks = write_sequence(tmp_path / "davis", "bear", ["00000", "00001"])
    davis = DavisDataset.at(tmp_path / "davis")
    assert (davis.frames_dir("bear"), davis.masks_dir("bear")) == (frames, masks)
    assert davis.mask_path("bear", "00001") == masks / "00001.png"
    frames, masks = write_sequence(tmp_path / "ytvos", "cat", ["00000", "00005"], nested=False)
    ytvos = DavisDataset.at(tmp_path / "ytvos")
    assert ytvos.resolution is None and ytvos.frames_dir("cat") == frames and ytvos.masks_dir("cat") == masks
    assert [p.name for p in ytvos.frame_paths("cat")] == ["00000.png", "00005.png"]


def test_splits_in_both_formats(tmp_path):
    davis = DavisDataset(tmp_path, 2016)
    davis.split_file("val").parent.mkdir(parents=True)
    davis.split_file("val").write_text("bear\n\n# comment\nblackswan\nbear\n")
    assert davis.sequences("val") == ["bear", "blackswan"]
    davis.split_file("val").write_text(
        "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png\n"
        "/JPEGImages/480p/bear/00001.jpg /Annotations/480p/bear/00001.png\n"
        "/JPEGImages/480p/dog/00000.jpg /Annotations/480p/dog/00000.png\n"
    )
    assert davis.sequences("val") == ["bear", "dog"]
    davis.split_file("val").write_text("\n")
    with pytest.raises(ArgumentError, match="no sequences"):
        davis.sequences("val")
    with pytest.raises(FileNotFoundError, match="split file not found"):
        davis.sequences("train")


@pytest.mark.parametrize("stems, gap", [
    (["00000", "00001", "00003"], "00002.png"),     # DAVIS: step 1
    (["00000", "00005", "00010", "00020"], "00015.png"),  # YouTube-VOS: step 5
])
def test_one_numbering_rule_a_regular_step_with_its_gaps(tmp_path, stems, gap):
    write_sequence(tmp_path, "seq", stems)
    davis = DavisDataset.at(tmp_path)
    with pytest.raises(ValueError, match=f"missing {gap}"):
        davis.frame_paths("seq")
    with pytest.warns(RuntimeWarning, match=gap):
        assert len(davis.frame_paths("seq", on_gap="warn")) == len(stems)
    assert missing_frames(["00000.png", "00005.png", "00010.png"]) == []


def test_evaluation_reads_ground_truth_by_the_same_rule(tmp_path):
    """Ground truth without frames: a +5 numbering has no gap for the evaluator either."""
    from mast.eval.davis import score_davis

    ids = np.zeros((4, 4), np.uint8)
    ids[1:3, 1:3] = 1
    root = tmp_path / "ytvos"
    for stem in ("00000", "00005", "00010"):
        write_palette_png(root / "Annotations" / "480p" / "seq" / f"{stem}.png", ids)
        write_palette_png(tmp_path / "results" / "seq" / f"{stem}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("seq\n")
    table, _ = score_davis(root, tmp_path / "results", processes=1)
    assert table["J&F-Mean"] == 1.0
    (root / "Annotations" / "480p" / "seq" / "00010.png").rename(root / "Annotations" / "480p" / "seq" / "00015.png")
    write_palette_png(root / "Annotations" / "480p" / "seq" / "00020.png", ids)
    with pytest.raises(FileNotFoundError, match=r"seq/00010\.png \(a gap in the numbering"):
        score_davis(root, tmp_path / "results", processes=1)


def test_mask_ids_by_year(tmp_path):
    ids = np.array([[0, 1, 255], [2, 0, 255]], np.uint8)
    binary = np.array([[0, 255], [255, 0]], np.uint8)
    write_palette_png(tmp_path / "ids.png", ids)
    write_palette_png(tmp_path / "binary.png", binary)
    assert read_ids(tmp_path / "ids.png", 2017).tolist() == [[0, 1, 0], [2, 0, 0]]  # void is background
    assert read_ids(tmp_path / "binary.png", 2016).tolist() == [[0, 1], [1, 0]]      # > 127 is the object
    assert read_ids(tmp_path / "binary.png", 2017).tolist() == [[0, 0], [0, 0]]
    assert read_ids(tmp_path / "binary.png", None).tolist() == [[0, 1], [1, 0]]      # year unknown: a 0/255 mask
    assert read_ids(tmp_path / "ids.png", None).tolist() == [[0, 1, 0], [2, 0, 0]]
    davis = DavisDataset(tmp_path, 2017)
    with pytest.raises(ArgumentError, match="binary.png holds only 0 and 255.*need year 2016") as error:
        davis.read_first_ids(tmp_path / "binary.png")
    assert error.value.argument == "year"
    assert DavisDataset(tmp_path, 2016).read_first_ids(tmp_path / "binary.png").tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ArgumentError, match="year: must be 2016 or 2017"):
        DavisDataset(tmp_path, 2018)


def test_discovered_dataset_roots_keep_their_masks(tmp_path):
    ids = np.zeros((4, 4), np.uint8)
    ids[:2] = 255
    write_sequence(tmp_path, "seq", ["00000", "00001"], ids=ids)
    (source,) = discover_videos(tmp_path)
    assert source.name == "seq" and source.read_masks([1]).tolist() == [[[1] * 4] * 2 + [[0] * 4] * 2]


def test_the_year_hint_points_both_ways(tmp_path):
    ids = np.array([[0, 1], [2, 0]], np.uint8)
    write_palette_png(tmp_path / "ids.png", ids)
    with pytest.raises(ArgumentError, match=r"ids.png holds object ids 1, 2 and no value above 127.*need year 2017"):
        DavisDataset(tmp_path, 2016).read_first_ids(tmp_path / "ids.png")
    write_palette_png(tmp_path / "empty.png", np.zeros((2, 2), np.uint8))
    assert not DavisDataset(tmp_path, 2016).read_first_ids(tmp_path / "empty.png").any()  # no hint to give
    (tmp_path / "ImageSets" / "2016").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2016" / "val.txt").write_text("bear\n")
    with pytest.raises(FileNotFoundError, match=r"2017/val.txt \(this folder lists it under ImageSets/2016: give "
                                                 r"year 2016\)") as error:
        DavisDataset(tmp_path, 2017).sequences("val")
    from mast.cli import error_text

    assert error_text(error.value).endswith("give --year 2016)")
    with pytest.raises(FileNotFoundError, match=r"2016/train.txt$"):
        DavisDataset(tmp_path, 2016).sequences("train")
