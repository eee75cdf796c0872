"""Label propagation: synthetic videos with known motion, inputs, bad input."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mast.data.synthetic import translating_video
from mast.common.masks import read_mask, write_palette_png
from mast.eval.propagate import label_lookup, propagate_to_folder
from mast.eval.sources import box_to_ids, davis_inputs, parse_box, video_input
from mast.models.extractors import PixelExtractor
from mast.models.propagation import Propagator
from mast.models.protocol import PropagationConfig, PropagationKnobs

PIXEL = PixelExtractor.knobs


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    union = (pred | truth).sum()
    return 1.0 if union == 0 else (pred & truth).sum() / union


def propagate(frames, first, preset="mast"):
    config = PropagationConfig.preset(preset, PIXEL)
    return [labels.numpy() for labels in Propagator(PixelExtractor(), config).run(iter(frames), first)]


@pytest.mark.parametrize("preset", ["mast", "crw"])
def test_known_translation_is_recovered(preset):
    frames, masks = translating_video(num_frames=16, height=192, width=192)
    predictions = propagate(frames, masks[0], preset)
    scores = [jaccard(p > 0, m.numpy() > 0) for p, m in zip(predictions, masks[1:])]
    assert len(predictions) == 15
    assert min(scores) > 0.9, scores


def test_multiple_objects_keep_their_ids():
    frames, masks = translating_video(num_frames=10, height=192, width=192, num_objects=3)
    predictions = propagate(frames, masks[0])
    for prediction, truth in zip(predictions, masks[1:]):
        for object_id in (1, 2, 3):
            assert jaccard(prediction == object_id, truth.numpy() == object_id) > 0.75


def test_far_references_use_roi_localisation_and_still_track():
    frames, masks = translating_video(num_frames=24, height=128, width=128, velocity=(1.0, 0.5))
    config = PropagationConfig.preset("mast", PIXEL, PropagationKnobs(near_range=4))  # frames 0 and 5 become far
    predictions = [p.numpy() for p in Propagator(PixelExtractor(), config).run(iter(frames), masks[0])]
    assert jaccard(predictions[-1] > 0, masks[-1].numpy() > 0) > 0.8


def test_non_contiguous_ids_map_back():
    ids, lookup = label_lookup(np.array([[0, 2], [7, 7]], dtype=np.uint8), "mask.png")
    assert ids.tolist() == [0, 2, 7] and lookup[[0, 2, 7]].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="no object"):
        label_lookup(np.zeros((2, 2), np.uint8), "empty.png")


def write_frames(folder: Path, frames: torch.Tensor, prefix="") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in enumerate(frames):
        path = folder / f"{prefix}{t:05d}.jpg"
        cv2.imwrite(str(path), (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8))
        paths.append(path)
    return paths


def test_video_folder_with_mask_writes_palette_pngs_named_like_frames(tmp_path):
    frames, masks = translating_video(num_frames=6, height=96, width=96, num_objects=2)
    write_frames(tmp_path / "clip", frames, prefix="frame_")
    first = masks[0].numpy().astype(np.uint8) * 3  # ids {0, 3, 6}: not contiguous
    write_palette_png(tmp_path / "first.png", first)
    item = video_input(tmp_path / "clip", first_mask=tmp_path / "first.png")
    config = PropagationConfig.preset("mast", PIXEL)
    folder = propagate_to_folder(item, Propagator(PixelExtractor(), config), tmp_path / "out")
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame_{t:05d}.png" for t in range(6)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip", "run.json"]
    last = read_mask(folder / "frame_00005.png")
    assert set(np.unique(last)) <= {0, 3, 6} and (last == 6).any()


def test_first_box_initialisation(tmp_path):
    frames, masks = translating_video(num_frames=5, height=128, width=128)
    write_frames(tmp_path / "clip", frames)
    ys, xs = np.nonzero(masks[0].numpy())
    box = f"{xs.min()},{ys.min()},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}"
    item = video_input(tmp_path / "clip", first_box=box)
    assert item.first_ids.sum() == (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
    config = PropagationConfig.preset("mast", PIXEL)
    folder = propagate_to_folder(item, Propagator(PixelExtractor(), config), tmp_path / "out")
    last = read_mask(folder / "00004.png") > 0
    assert jaccard(last, masks[4].numpy() > 0) > 0.6  # a box is a rough start, but it must follow


def test_box_parsing_and_errors():
    assert parse_box("10,20,30,40") == (10, 20, 30, 40)
    with pytest.warns(UserWarning, match="clipped to 0,0,5,5"):
        assert box_to_ids((-5, -5, 10, 10), 8, 8).sum() == 25
    with pytest.raises(ValueError, match="x,y,w,h"):
        parse_box("10,20,30")
    with pytest.raises(ValueError, match="> 0"):
        parse_box("1,2,0,4")
    with pytest.raises(ValueError, match="outside"):
        box_to_ids((50, 50, 5, 5), 10, 10)


def write_video(path: Path, frames: torch.Tensor, fourcc: str) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (frames.shape[-1], frames.shape[-2]))
    for frame in frames:
        writer.write((frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8))
    writer.release()


def test_video_file_input(tmp_path):
    frames, masks = translating_video(num_frames=6, height=96, width=96)
    path = tmp_path / "clip.avi"
    write_video(path, frames, "MJPG")
    write_palette_png(tmp_path / "first.png", masks[0].numpy().astype(np.uint8))
    item = video_input(path, first_mask=tmp_path / "first.png")
    config = PropagationConfig.preset("mast", PIXEL)
    folder = propagate_to_folder(item, Propagator(PixelExtractor(), config), tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == [f"{t:05d}.png" for t in range(6)]


def make_davis(root: Path, sequences: dict[str, tuple[torch.Tensor, torch.Tensor]], year: int = 2017) -> None:
    for name, (frames, masks) in sequences.items():
        write_frames(root / "JPEGImages" / "480p" / name, frames)
        write_palette_png(root / "Annotations" / "480p" / name / "00000.png", masks[0].numpy().astype(np.uint8))
    (root / "ImageSets" / str(year)).mkdir(parents=True)
    (root / "ImageSets" / str(year) / "val.txt").write_text("\n".join(sequences) + "\n")


def test_bad_inputs_name_the_file_and_leave_nothing_behind(tmp_path):
    frames, masks = translating_video(num_frames=4, height=64, width=64)
    make_davis(tmp_path / "davis", {"seq": (frames, masks)})
    (tmp_path / "davis" / "Annotations" / "480p" / "seq" / "00000.png").unlink()
    with pytest.raises(FileNotFoundError, match="00000.png"):
        davis_inputs(tmp_path / "davis")

    write_palette_png(tmp_path / "small.png", np.ones((32, 32), np.uint8))
    with pytest.raises(ValueError, match="small.png"):
        video_input(tmp_path / "davis" / "JPEGImages" / "480p" / "seq", first_mask=tmp_path / "small.png")

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        video_input(tmp_path / "empty", first_box="1,1,4,4")

    with pytest.raises(ValueError, match="exactly one"):
        video_input(tmp_path / "davis" / "JPEGImages" / "480p" / "seq")

    # An unreadable frame midway: a clear error, and no half-written result folder.
    write_palette_png(tmp_path / "first.png", masks[0].numpy().astype(np.uint8))
    item = video_input(tmp_path / "davis" / "JPEGImages" / "480p" / "seq", first_mask=tmp_path / "first.png")
    (tmp_path / "davis" / "JPEGImages" / "480p" / "seq" / "00002.jpg").write_bytes(b"broken")
    config = PropagationConfig.preset("mast", PIXEL)
    with pytest.raises(ValueError, match="00002.jpg"):
        propagate_to_folder(item, Propagator(PixelExtractor(), config), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["run.json"]  # no sequence, no temporaries


def test_rgb_coded_first_mask_is_converted(tmp_path):
    from PIL import Image

    frames, masks = translating_video(num_frames=3, height=64, width=64)
    write_frames(tmp_path / "clip", frames)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[masks[0].numpy() == 1] = (128, 0, 0)  # DAVIS colour of id 1
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    item = video_input(tmp_path / "clip", first_mask=tmp_path / "rgb.png")
    assert set(np.unique(item.first_ids)) == {0, 1}


def test_streaming_memory_is_bounded_on_a_long_video():
    """Frames stream through; the bank never holds more than the policy's capacity
    and resident memory does not grow with the number of frames."""
    frames, masks = translating_video(num_frames=2, height=192, width=192)
    config = PropagationConfig.preset("mast", PIXEL, PropagationKnobs(window=5))
    propagator = Propagator(PixelExtractor(), config)

    def long_video(count):
        for t in range(count):
            yield frames[t % 2]

    def rss_mib() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    bank_sizes, rss = [], {}
    for t, _ in enumerate(propagator.run(long_video(500), masks[0]), start=1):
        bank_sizes.append(len(propagator.bank))
        if t in (100, 499):
            rss[t] = rss_mib()
    assert max(bank_sizes) <= config.policy.capacity
    assert rss[499] - rss[100] < 30, rss  # keeping 400 more frames' 192x192 labels would take > 110 MiB


def write_mp4_promising_more(path: Path, frames: torch.Tensor, keep: float) -> None:
    """An MP4 whose header lists every frame but whose data ends after about ``keep`` of them:
    OpenCV writes the header (``moov``) after the data, so it is moved before it (its chunk
    offsets shifted) and the file's tail cut off, as in an interrupted download."""
    write_video(path, frames, "mp4v")
    data, boxes, at = path.read_bytes(), {}, 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        boxes[kind], at = data[at:at + size], at + size
    header = bytearray(boxes.pop(b"moov"))
    table = header.find(b"stco")
    for entry in range(struct.unpack(">I", header[table + 8:table + 12])[0]):
        offset = table + 12 + 4 * entry
        header[offset:offset + 4] = struct.pack(">I", struct.unpack(">I", header[offset:offset + 4])[0] + len(header))
    ftyp = boxes.pop(b"ftyp")
    moved = ftyp + bytes(header) + b"".join(boxes.values())
    path.write_bytes(moved[:int(len(moved) * keep)])


def test_an_mp4_promising_more_frames_warns_and_records_both_counts(tmp_path, capsys):
    from mast.cli.main import main

    frames, _ = translating_video(num_frames=12, height=64, width=64)
    video = tmp_path / "clip.mp4"
    write_mp4_promising_more(video, frames, keep=0.6)
    capture = cv2.VideoCapture(str(video))
    promised, decoded = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while capture.grab():
        decoded += 1
    capture.release()
    assert promised == 12 and 2 <= decoded < promised

    out = tmp_path / "out"
    flags = ["propagate", "--video", str(video), "--first-box", "8,8,16,16", "--out", str(out), "--preset", "quick"]
    assert main(flags) == 0
    captured = capsys.readouterr()
    assert (f"mast propagate: warning: {video}: the container's frame count promised 12 frames but only "
            f"{decoded} decode") in captured.err
    assert f"{decoded - 1}/{decoded - 1}" in captured.err  # the progress total is the real count
    entry = json.loads((out / "run.json").read_text())["entries"]["clip"]
    assert (entry["frames_promised"], entry["frames_decoded"], entry["frames"]) == (12, decoded, decoded)
    assert len(list((out / "clip").glob("*.png"))) == decoded

    assert main(flags) == 0  # the same file again: skipped, not decoded again
    assert "skipped 1 sequence(s)" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["cut short", "other size"])
def test_a_bad_frame_in_the_last_sequence_is_found_before_anything_is_written(tmp_path, capsys, damage):
    from mast.cli.main import main

    make_davis(tmp_path / "davis", {"a": translating_video(4, 48, 48), "b": translating_video(4, 48, 48, seed=1)})
    frame = tmp_path / "davis" / "JPEGImages" / "480p" / "b" / "00002.jpg"
    if damage == "cut short":
        frame.write_bytes(frame.read_bytes()[:frame.stat().st_size // 2])
        expected = str(frame)
    else:
        cv2.imwrite(str(frame), np.zeros((32, 40, 3), np.uint8))
        expected = f"{frame.parent}: frame 00002 is 40x32"
    out = tmp_path / "out"
    assert main(["propagate", "--davis", str(tmp_path / "davis"), "--out", str(out), "--preset", "quick"]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1, error
    assert not out.exists()  # a, listed first, was not written either
