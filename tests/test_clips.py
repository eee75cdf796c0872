"""Training clips (pairs / memory modes), determinism, the DataLoader, augmentation."""
from __future__ import annotations

import pickle
import warnings
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

from mast.data.augment import AugmentParams, ClipAugment
from mast.data.clips import ClipDataset, ClipSampler, collate_clips, item_generator, make_loader
from mast.data.synthetic import translating_video
from mast.data.video import FrameFolderSource, TensorVideoSource
from mast.common.references import ReferencePolicy


def draws(sampler: ClipSampler, count: int, seed: int = 0) -> list[tuple[int, list[int]]]:
    return [sampler.sample(item_generator(seed, 0, i)) for i in range(count)]


def index_video(num_frames: int, height: int = 8, width: int = 8, name: str = "v") -> TensorVideoSource:
    """Frame ``i`` is the constant ``i / 100``, so a frame's value names it."""
    values = torch.arange(num_frames, dtype=torch.float32) / 100
    return TensorVideoSource(name, values.view(-1, 1, 1, 1).expand(num_frames, 3, height, width).clone())


def gradient_video(num_frames: int, height: int = 40, width: int = 56) -> torch.Tensor:
    """``(T, 3, H, W)``: one spatial pattern, plus ``0.01 * t`` in frame ``t``."""
    ys, xs = torch.meshgrid(torch.linspace(0, 0.5, height), torch.linspace(0, 0.4, width), indexing="ij")
    pattern = torch.stack([xs, ys, xs * ys])
    return pattern + 0.01 * torch.arange(num_frames).view(-1, 1, 1, 1)


# ---------------------------------------------------------------- sampler


def test_pairs_mode_gaps_and_frequencies():
    sampler = ClipSampler((60, 40), mode="pairs")
    gaps = Counter()
    for _, (reference, query) in draws(sampler, 3000):
        assert 0 <= reference < query
        gaps[query - reference] += 1
    assert set(gaps) == {2, 5, 8}
    for gap, prob in [(2, 0.4), (5, 0.4), (8, 0.2)]:
        assert gaps[gap] / 3000 == pytest.approx(prob, abs=0.04)


def test_pairs_mode_custom_gaps():
    sampler = ClipSampler((30,), mode="pairs", pair_gaps=(1, 10), pair_gap_probs=(3, 1))
    gaps = Counter(q - r for _, (r, q) in draws(sampler, 1000))
    assert set(gaps) == {1, 10} and gaps[1] / 1000 == pytest.approx(0.75, abs=0.05)
    with pytest.raises(ValueError, match="must match"):
        ClipSampler((30,), pair_gaps=(1, 2), pair_gap_probs=(1.0,))


@pytest.mark.parametrize("policy", [ReferencePolicy.mast(), ReferencePolicy.crw(4)])
def test_memory_mode_references_follow_the_policy(policy):
    sampler = ClipSampler((40, 25), mode="memory", policy=policy)
    first = max(max(policy.long_term) + 1, policy.max_offset)
    for video, indices in draws(sampler, 300):
        query = indices[-1]
        assert first <= query < (40, 25)[video]
        assert indices[:-1] == policy.references(query)


def test_short_videos_are_clamped_or_skipped():
    pairs = ClipSampler((1, 4), mode="pairs")
    for video, (reference, query) in draws(pairs, 200):
        assert video == 1  # a 1-frame video is never sampled
        assert query - reference in (2, 3)  # gap 5 and 8 clamp to num_frames - 1 = 3
    memory = ClipSampler((4,), mode="memory")
    for _, indices in draws(memory, 100):
        assert 1 <= indices[-1] <= 3 and indices[:-1] == memory.policy.references(indices[-1])
    skipping = ClipSampler((4, 30), mode="memory", short_videos="skip")
    assert {video for video, _ in draws(skipping, 50)} == {1}
    with pytest.raises(ValueError, match="long enough"):
        ClipSampler((1, 1))
    with pytest.raises(ValueError, match="long enough"):
        ClipSampler((4,), mode="memory", short_videos="skip")


def test_length_weighted_video_choice():
    uniform = Counter(v for v, _ in draws(ClipSampler((10, 90)), 1000))
    weighted = Counter(v for v, _ in draws(ClipSampler((10, 90), video_weighting="length"), 1000))
    assert uniform[1] / 1000 == pytest.approx(0.5, abs=0.06)
    assert weighted[1] / 1000 == pytest.approx(0.9, abs=0.04)


# ---------------------------------------------------------------- dataset


def test_dataset_items_hold_the_frames_their_indices_name():
    dataset = ClipDataset([index_video(30)], samples_per_epoch=20, transform=None, mode="memory")
    for i in range(20):
        item = dataset[i]
        indices = item["indices"]
        assert item["frames"].shape == (len(indices), 3, 8, 8) and item["video"] == "v"
        assert indices.dtype == torch.long and torch.all(indices[:-1] < indices[-1])
        assert torch.allclose(item["frames"][:, 0, 0, 0], indices.float() / 100)


def test_dataset_is_deterministic_per_seed_and_epoch():
    frames, _ = translating_video(num_frames=12, height=32, width=32)
    sources = [TensorVideoSource("a", frames), TensorVideoSource("b", frames.flip(-1))]

    def epoch_items(seed: int, epoch: int) -> list[dict]:
        dataset = ClipDataset(sources, samples_per_epoch=6, transform=ClipAugment((16, 16)), seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i] for i in range(6)]

    first, again = epoch_items(0, 0), epoch_items(0, 0)
    for a, b in zip(first, again):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["indices"], b["indices"])
    for other in (epoch_items(1, 0), epoch_items(0, 1)):
        assert any(not torch.equal(a["frames"], b["frames"]) for a, b in zip(first, other))


def test_collate_pads_short_memory_clips_at_the_front():
    sources = [index_video(4, name="short"), index_video(30, name="long")]
    dataset = ClipDataset(sources, samples_per_epoch=16, transform=None, mode="memory")
    batch = collate_clips([dataset[i] for i in range(16)])
    frames, indices, valid = batch["frames"], batch["indices"], batch["valid"]
    assert frames.shape[:2] == indices.shape == valid.shape and frames.shape[2:] == (3, 8, 8)
    assert torch.equal(valid, indices >= 0) and bool(valid[:, -1].all())
    assert not bool(valid.all())  # some clip of the short video is padded
    assert bool((frames[~valid] == 0).all())


def test_dataloader_with_two_workers(tmp_path):
    for name, num_frames in [("a", 10), ("b", 7)]:
        folder = tmp_path / name
        folder.mkdir()
        for i in range(num_frames):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((20, 24, 3), 10 * i, np.uint8))
    sources = [FrameFolderSource.from_folder(tmp_path / name) for name in ("a", "b")]
    dataset = ClipDataset(sources, samples_per_epoch=8, transform=ClipAugment((16, 16)), mode="pairs")
    batches = list(make_loader(dataset, batch_size=4, num_workers=2))
    assert len(batches) == 2
    for batch in batches:
        assert batch["frames"].shape == (4, 2, 3, 16, 16) and batch["indices"].shape == (4, 2)
        assert len(batch["video"]) == 4
    assert pickle.loads(pickle.dumps(dataset)).sampler == dataset.sampler  # 'spawn' workers need this
    serial = list(make_loader(dataset, batch_size=4, num_workers=0))
    for parallel, single in zip(batches, serial):  # the workers do not change the draws
        assert torch.equal(parallel["frames"], single["frames"])


# ---------------------------------------------------------------- augmentation


def test_augment_output_size_and_identical_crop_across_frames():
    frames = gradient_video(5)
    augment = ClipAugment((24, 32), scale=(0.2, 0.6), hflip_prob=0.5, rotate90=True)
    for seed in range(6):
        out = augment(frames, torch.Generator().manual_seed(seed))
        assert out.shape == (5, 3, 24, 32)
        # Same crop/flip/rotation on every frame: frames differ only by their offset 0.01 * t.
        offsets = out - out[:1]
        expected = 0.01 * torch.arange(5).view(-1, 1, 1, 1)
        assert torch.allclose(offsets, expected.expand_as(offsets), atol=1e-5)


def test_per_frame_augmentation_differs_between_frames():
    frames = gradient_video(4)
    out = ClipAugment((16, 16), scale=(0.1, 0.3), per_frame=True)(frames, torch.Generator().manual_seed(0))
    offsets = out - out[:1]
    assert out.shape == (4, 3, 16, 16)
    assert not torch.allclose(offsets[1:], 0.01 * torch.arange(1, 4).view(-1, 1, 1, 1).expand_as(offsets[1:]), atol=1e-3)


def test_flip_and_rotation_apply_to_every_frame():
    frames = torch.rand(3, 3, 16, 16)
    augment = ClipAugment((16, 16))
    flipped = augment.apply(frames, AugmentParams(0, 0, 16, 16, flip=True))
    assert torch.equal(flipped, frames.flip(-1))
    turned = augment.apply(frames, AugmentParams(0, 0, 16, 16, quarter_turns=1))
    assert torch.equal(turned, torch.rot90(frames, 1, dims=(-2, -1)))
    always = ClipAugment((16, 16), scale=(1, 1), ratio=(1, 1), hflip_prob=1.0)
    assert torch.equal(always(frames, torch.Generator().manual_seed(0)), frames.flip(-1))


def test_augment_handles_small_and_elongated_inputs():
    augment = ClipAugment((32, 32))
    assert augment(torch.rand(2, 3, 10, 12)).shape == (2, 3, 32, 32)  # upsampled
    assert augment(torch.rand(2, 3, 4, 300)).shape == (2, 3, 32, 32)  # central-crop fallback
    with pytest.raises(ValueError, match="scale"):
        ClipAugment(scale=(0.5, 2.0))


def test_masks_follow_the_frames_through_augmentation():
    from mast.data.augment import ClipAugment

    height, width = 40, 60
    xs = torch.arange(width).float().view(1, 1, 1, width).expand(3, 3, height, width)
    frames = xs / (width - 1)  # every pixel's colour encodes its column
    masks = torch.arange(width).view(1, 1, width).expand(3, height, width).clone()
    augment = ClipAugment(output_size=(16, 16), scale=(0.3, 1.0), hflip_prob=0.5, rotate90=True)
    for seed in range(5):
        out, out_masks = augment(frames, torch.Generator().manual_seed(seed), masks=masks)
        assert out.shape == (3, 3, 16, 16) and out_masks.shape == (3, 16, 16) and out_masks.dtype == torch.long
        # nearest-neighbour masks land within a couple of columns of the bilinear frames
        assert (out[:, 0] * (width - 1) - out_masks.float()).abs().max() <= 3.0


# ---------------------------------------------------------------- unreadable frames


def _frame_folder(folder, num_frames: int, broken: tuple[int, ...] = ()) -> FrameFolderSource:
    """Frames of value ``10 * i``; the ``broken`` ones are garbage bytes under an image name."""
    folder.mkdir()
    for i in range(num_frames):
        if i in broken:
            (folder / f"{i:03d}.jpg").write_bytes(b"\xff\xd8 not a jpeg " * 8)
        else:
            cv2.imwrite(str(folder / f"{i:03d}.jpg"), np.full((12, 12, 3), 10 * i, np.uint8))
    return FrameFolderSource.from_folder(folder)


def _items(dataset: ClipDataset, count: int) -> tuple[list[dict], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for i in range(count)]
    return items, [str(w.message) for w in caught if "skipping training samples" in str(w.message)]


def _draws_reading(dataset: ClipDataset, count: int, video: int, frame: int) -> int:
    """How many draws of items ``0..count-1`` read ``frame`` of ``video`` before one that does not."""
    total = 0
    for index in range(count):
        for attempt in range(100):
            drawn, indices = dataset.sampler.sample(item_generator(0, 0, index, attempt))
            if drawn != video or frame not in indices:
                break
            total += 1
    return total


def test_unreadable_frames_are_replaced_deterministically_with_a_counted_warning(tmp_path):
    sources = [_frame_folder(tmp_path / "a", 12, broken=(5,)), _frame_folder(tmp_path / "b", 12)]
    dataset = ClipDataset(sources, samples_per_epoch=24, transform=None, mode="pairs")
    items, messages = _items(dataset, 24)
    assert len(messages) == 1 and "a/005.jpg" in messages[0]  # the damaged file is named once
    assert sum(item["skipped_clips"] for item in items) == _draws_reading(dataset, 24, video=0, frame=5) > 0
    for i, item in enumerate(items):
        assert not (item["video"] == "a" and 5 in item["indices"].tolist())
        if item["skipped_clips"] == 0:  # the clips that read fine are the ones drawn before
            assert item["indices"].tolist() == dataset.sampler.sample(item_generator(0, 0, i))[1]
    again, _ = _items(ClipDataset(sources, samples_per_epoch=24, transform=None, mode="pairs"), 24)
    for a, b in zip(items, again):
        assert torch.equal(a["frames"], b["frames"]) and a["skipped_clips"] == b["skipped_clips"]
    loaded = ClipDataset(sources, samples_per_epoch=24, transform=ClipAugment((8, 8)), mode="pairs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = list(make_loader(loaded, batch_size=8, num_workers=0))
        parallel = list(make_loader(loaded, batch_size=8, num_workers=2))  # the workers do not change the draws
    assert sum(batch["skipped_clips"] for batch in serial) == sum(item["skipped_clips"] for item in items)
    for one, two in zip(serial, parallel):
        assert torch.equal(one["frames"], two["frames"]) and one["skipped_clips"] == two["skipped_clips"]


def test_a_video_of_broken_frames_gives_up_with_a_clear_error(tmp_path):
    source = _frame_folder(tmp_path / "a", 8, broken=tuple(range(1, 8)))  # frame 0 passes discovery
    dataset = ClipDataset([source], samples_per_epoch=4, transform=None, max_replacements=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"6 draws of training sample 0 in a row failed .*a/00\d\.jpg.*"
                                             r"check the training videos"):
            dataset[0]


def test_a_jpeg_cut_in_the_middle_is_replaced_like_any_unreadable_frame(tmp_path):
    from tests.test_corrupt_frames import cut_from_the_middle

    folder = tmp_path / "a"
    folder.mkdir()
    for i, frame in enumerate(gradient_video(8, 48, 64)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), (frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    cut_from_the_middle(folder / "004.jpg")  # still ends in FF D9
    dataset = ClipDataset([FrameFolderSource.from_folder(folder)], samples_per_epoch=16, transform=None, mode="pairs")
    items, messages = _items(dataset, 16)
    assert messages and all("a/004.jpg" in message and "truncated JPEG" in message for message in messages)
    assert all(4 not in item["indices"].tolist() for item in items)
