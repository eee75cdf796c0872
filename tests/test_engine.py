"""The reconstruction engine against brute-force attention on tiny examples."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mast.models.engine import EngineConfig, FarPlan, NearPlan, ReconstructionEngine, pixel_grid
from mast.models.memory import Reference
from mast.ops import local_correlation, roi_correlation, window_sample


def make_references(distances, batch=1, channels=4, height=6, width=7, values=3, dtype=torch.float64):
    return [
        Reference(
            torch.randn(batch, channels, height, width, dtype=dtype),
            torch.randn(batch, values, height, width, dtype=dtype),
            distance,
        )
        for distance in distances
    ]


def dense_window_attention(query, references, window, temperature=1.0):
    """Full (HW x HW) affinity per reference, masked to the window, one softmax."""
    batch, _, height, width = query.shape
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ys, xs = torch.tensor(ys.ravel()), torch.tensor(xs.ravel())
    in_window = ((ys[:, None] - ys[None, :]).abs() <= window // 2) & ((xs[:, None] - xs[None, :]).abs() <= window // 2)
    q = query.flatten(2)  # (B, C, HW)
    affinities = [torch.einsum("bcp,bcq->bpq", q, r.features.flatten(2)) for r in references]
    affinity = torch.cat([a.masked_fill(~in_window, float("-inf")) for a in affinities], dim=2)
    attention = torch.softmax(affinity / temperature, dim=2)  # (B, HW, refs*HW)
    values = torch.cat([r.values.flatten(2) for r in references], dim=2)  # (B, K, refs*HW)
    return torch.einsum("bpq,bkq->bkp", attention, values).reshape(batch, -1, height, width)


def bilinear(image, x, y):
    """Zero-padded bilinear read of image (C, H, W) at real (x, y)."""
    _, height, width = image.shape
    x0, y0 = math.floor(x), math.floor(y)
    total = np.zeros(image.shape[0])
    for cy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for cx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= cx < width and 0 <= cy < height:
                total += wy * wx * image[:, cy, cx]
    return total


def brute_force(query, references, config):
    """Per-pixel loops over every reference, near or far (Eq. 4.1-4.3)."""
    query = query.numpy()
    refs = [(r.features.numpy(), r.values.numpy(), r.distance) for r in references]
    batch, _, height, width = query.shape
    radius = config.window // 2
    out = np.zeros((batch, refs[0][1].shape[1], height, width))
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                q = query[b, :, y, x]
                scores, values = [], []
                for keys, vals, distance in refs:
                    if config.is_far(distance):
                        d = config.dilation(distance)
                        coarse, positions = [], []
                        for dy in range(-radius, radius + 1):
                            for dx in range(-radius, radius + 1):
                                yy, xx = y + dy * d, x + dx * d
                                if 0 <= yy < height and 0 <= xx < width:
                                    coarse.append(q @ keys[b, :, yy, xx] / config.temperature)
                                    positions.append((xx, yy))
                        weights = np.exp(np.array(coarse) - max(coarse))
                        weights /= weights.sum()
                        cx, cy = (weights[:, None] * np.array(positions, dtype=float)).sum(0)
                        for dy in range(-radius, radius + 1):
                            for dx in range(-radius, radius + 1):
                                sx, sy = cx + dx, cy + dy
                                if 0 <= sx <= width - 1 and 0 <= sy <= height - 1:
                                    scores.append(q @ bilinear(keys[b], sx, sy))
                                    values.append(bilinear(vals[b], sx, sy))
                    else:
                        for dy in range(-radius, radius + 1):
                            for dx in range(-radius, radius + 1):
                                yy, xx = y + dy, x + dx
                                if 0 <= yy < height and 0 <= xx < width:
                                    scores.append(q @ keys[b, :, yy, xx])
                                    values.append(vals[b, :, yy, xx])
                scores = np.array(scores) / config.temperature
                if config.topk is not None:
                    keep = np.argsort(-scores, kind="stable")[: config.topk]
                    scores, values = scores[keep], [values[i] for i in keep]
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                out[b, :, y, x] = (weights[:, None] * np.array(values)).sum(0)
    return torch.from_numpy(out)


def test_near_references_equal_dense_masked_attention():
    query = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    references = make_references([1, 3, 5], batch=2)
    engine = ReconstructionEngine(EngineConfig(window=3))
    expected = dense_window_attention(query, references, window=3)
    torch.testing.assert_close(engine(query, references), expected)


@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(window=3),
        EngineConfig(window=5, temperature=0.5),
        EngineConfig(window=3, topk=7),
        EngineConfig(window=3, near_range=2, max_dilation=3),
    ],
)
def test_engine_equals_brute_force_with_far_references(config):
    query = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    references = make_references([1, 2, 6, 17, 40])
    assert any(config.is_far(r.distance) for r in references)
    torch.testing.assert_close(ReconstructionEngine(config)(query, references), brute_force(query, references, config))


def every_window_then_topk(engine, query, references):
    """The top-k read the slow way: sample all ``R x P^2`` values, then gather the best."""
    config, scores, values = engine.config, [], []
    for reference in references:
        plan = engine.plan(query, reference)
        score, centers = plan.rows(query, config.window, 0)
        if reference.valid is not None:
            score = score.masked_fill(~reference.valid.view(-1, 1, 1, 1), float("-inf"))
        scores.append(score)
        values.append(window_sample(reference.values, centers, config.window)[0])
    scores, index = (torch.cat(scores, dim=1) / config.temperature).topk(config.topk, dim=1)
    values = torch.cat(values, dim=2)
    values = values.gather(2, index.unsqueeze(1).expand(-1, values.shape[1], -1, -1, -1))
    return torch.einsum("bnhw,bknhw->bkhw", torch.softmax(scores, dim=1), values)


def test_topk_samples_only_the_selected_values_with_the_same_result_and_gradients():
    query = torch.randn(2, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    references = make_references([1, 4, 20], batch=2)
    references[2] = Reference(references[2].features.requires_grad_(), references[2].values, [3, 20])
    references[1] = replace(references[1], valid=torch.tensor([True, False]))
    engine = ReconstructionEngine(EngineConfig(window=3, near_range=2, topk=5, temperature=0.5))
    fast, slow = engine(query, references), every_window_then_topk(engine, query, references)
    torch.testing.assert_close(fast, slow)
    inputs = (query, references[2].features)
    for fast_grad, slow_grad in zip(torch.autograd.grad(fast.square().sum(), inputs),
                                    torch.autograd.grad(slow.square().sum(), inputs)):
        torch.testing.assert_close(fast_grad, slow_grad)


def test_cosine_normalisation_equals_normalised_features():
    query = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    references = make_references([1, 20])
    normalised = [
        Reference(torch.nn.functional.normalize(r.features, dim=1), r.values, r.distance) for r in references
    ]
    cosine = ReconstructionEngine(EngineConfig(window=3, normalize=True))(query, references)
    dot = ReconstructionEngine(EngineConfig(window=3))(torch.nn.functional.normalize(query, dim=1), normalised)
    torch.testing.assert_close(cosine, dot)


def test_tiling_does_not_change_the_result():
    query = torch.randn(2, 8, 11, 9, dtype=torch.float64)
    references = make_references([1, 5, 30], batch=2, channels=8, height=11, width=9)
    whole = ReconstructionEngine(EngineConfig(window=5))(query, references)
    tiled_engine = ReconstructionEngine(EngineConfig(window=5, tile_elements=500))
    assert tiled_engine._rows_per_tile(query, references) == 1
    torch.testing.assert_close(tiled_engine(query, references), whole)


def test_gradients_reach_query_keys_and_roi_centres():
    query = torch.randn(1, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    far_keys = torch.randn(1, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    values = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    engine = ReconstructionEngine(EngineConfig(window=3))
    out = engine(query, [Reference(far_keys, values, 30)])
    out.pow(2).sum().backward()
    assert query.grad.abs().sum() > 0 and far_keys.grad.abs().sum() > 0

    # The ROI centre itself is differentiable: its gradient is not zero.
    centers = engine.roi_centers(query, far_keys, engine.config.dilation(30))
    grad = torch.autograd.grad(centers.sum(), far_keys)[0]
    assert grad.abs().sum() > 0


def test_gradcheck_through_far_reference():
    query = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    values = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    engine = ReconstructionEngine(EngineConfig(window=3))
    assert torch.autograd.gradcheck(lambda q, k: engine(q, [Reference(k, values, 20)]), (query, keys))


def test_values_of_any_width_and_float32():
    query = torch.randn(1, 4, 6, 7)
    references = make_references([1, 16], values=11, dtype=torch.float32)
    out = ReconstructionEngine(EngineConfig(window=5))(query, references)
    assert out.shape == (1, 11, 6, 7) and out.dtype == torch.float32


def test_probabilities_stay_probabilities():
    query = torch.randn(1, 4, 6, 7)
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 3, (1, 6, 7)), 3).permute(0, 3, 1, 2).float()
    references = [Reference(torch.randn(1, 4, 6, 7), one_hot, d) for d in (1, 3, 25)]
    out = ReconstructionEngine(EngineConfig(window=5))(query, references)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 6, 7))


@pytest.mark.parametrize(
    "references,match",
    [
        ([], "at least one reference"),
        ([Reference(torch.randn(1, 4, 5, 7), torch.randn(1, 2, 6, 7), 1)], "features has shape"),
        ([Reference(torch.randn(1, 4, 6, 7), torch.randn(1, 2, 5, 7), 1)], "values has shape"),
        ([Reference(torch.randn(1, 4, 6, 7), torch.randn(1, 2, 6, 7), 0)], "distance"),
        (
            [Reference(torch.randn(1, 4, 6, 7), torch.randn(1, 2, 6, 7), 1),
             Reference(torch.randn(1, 4, 6, 7), torch.randn(1, 3, 6, 7), 2)],
            "same K",
        ),
    ],
)
def test_bad_references_are_named(references, match):
    with pytest.raises(ValueError, match=match):
        ReconstructionEngine()(torch.randn(1, 4, 6, 7), references)


def test_config_rejects_even_window():
    with pytest.raises(ValueError, match="window"):
        EngineConfig(window=4)


def test_per_sample_distances_equal_running_each_sample_alone():
    """Training clips drawn at different query frames: one reference can be
    near for one sample and far (at various dilations) for others."""
    batch = 4
    query = torch.randn(batch, 4, 9, 8, dtype=torch.float64)
    features = torch.randn(batch, 4, 9, 8, dtype=torch.float64)
    values = torch.randn(batch, 2, 9, 8, dtype=torch.float64)
    distances = [3, 20, 31, 20]
    near = Reference(torch.randn(batch, 4, 9, 8, dtype=torch.float64), torch.randn(batch, 2, 9, 8, dtype=torch.float64), 1)
    engine = ReconstructionEngine(EngineConfig(window=3))
    together = engine(query, [Reference(features, values, distances), near])
    for i, distance in enumerate(distances):
        alone = engine(query[i : i + 1], [
            Reference(features[i : i + 1], values[i : i + 1], distance),
            Reference(near.features[i : i + 1], near.values[i : i + 1], 1),
        ])
        torch.testing.assert_close(together[i : i + 1], alone)
    with pytest.raises(ValueError, match="entries for a batch"):
        engine(query, [Reference(features, values, [1, 2])])


def test_invalid_reference_samples_get_no_attention():
    query = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    kept, padding = make_references([1, 3], batch=2)
    padding.valid = torch.tensor([True, False])
    engine = ReconstructionEngine(EngineConfig(window=3))
    both = engine(query, [kept, padding])
    only_kept = engine(query[1:], [Reference(kept.features[1:], kept.values[1:], 1)])
    torch.testing.assert_close(both[1:], only_kept)
    assert not torch.allclose(both[:1], engine(query[:1], [Reference(kept.features[:1], kept.values[:1], 1)]))


def test_each_reference_gets_one_plan_near_scores_or_far_centres():
    query = torch.randn(3, 4, 6, 7, dtype=torch.float64)
    near, far, mixed = make_references([2, 20, [1, 40, 20]], batch=3)
    engine = ReconstructionEngine(EngineConfig(window=3))

    plan = engine.plan(query, near)
    assert isinstance(plan, NearPlan) and plan.reference is near
    assert torch.equal(plan.scores, local_correlation(query, near.features, 3, 1))

    plan = engine.plan(query, far)
    assert isinstance(plan, FarPlan) and plan.reference is far
    assert torch.equal(plan.centers, engine.roi_centers(query, far.features, engine.config.dilation(20)))

    # Per-sample distances: the near sample reads around itself, each far one
    # around its ROI centre at its own dilation.
    plan = engine.plan(query, mixed)
    assert isinstance(plan, FarPlan)
    assert torch.equal(plan.centers[:1], pixel_grid(1, 6, 7, query))
    for i, distance in ((1, 40), (2, 20)):
        expected = engine.roi_centers(query[i : i + 1], mixed.features[i : i + 1], engine.config.dilation(distance))
        assert torch.equal(plan.centers[i : i + 1], expected)

    crw = ReconstructionEngine(EngineConfig(window=3, roi_localisation=False))
    assert isinstance(crw.plan(query, far), NearPlan)


def tile_by_tile(config, query, references, rows):
    """The engine's algorithm written out op by op: near window scores and far
    ROI centres over the whole frame, then per tile of ``rows`` query rows the
    far scores, the sampled values and one softmax over all keys."""
    engine = ReconstructionEngine(config)
    batch, _, height, width = query.shape
    window = config.window
    whole_frame = []
    for r in references:
        if config.is_far(r.distance):
            whole_frame.append((None, engine.roi_centers(query, r.features, config.dilation(r.distance))))
        else:
            grid = pixel_grid(batch, height, width, query)
            whole_frame.append((local_correlation(query, r.features, window, 1), grid))
    tiles = []
    for top in range(0, height, rows):
        query_rows = query[:, :, top : top + rows]
        scores, values = [], []
        for r, (near_scores, centers) in zip(references, whole_frame):
            centers = centers[:, :, top : top + rows]
            if near_scores is None:
                scores.append(roi_correlation(query_rows, r.features, centers, window))
            else:
                scores.append(near_scores[:, :, top : top + rows])
            values.append(window_sample(r.values, centers, window)[0])
        attention = torch.softmax(torch.cat(scores, dim=1) / config.temperature, dim=1)
        tiles.append(torch.einsum("bnhw,bknhw->bkhw", attention, torch.cat(values, dim=2)))
    return torch.cat(tiles, dim=-2)


@pytest.mark.parametrize("window", [3, 5])
def test_mixed_near_and_far_memory_is_tiled_bit_for_bit(window):
    """Bit for bit the algorithm, tiled or not. (A tiled run need not equal an
    untiled one bit for bit: softmax rounds differently in and out of vector lanes.)"""
    query = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    references = make_references([1, 6, 17, 40], batch=2, height=9, width=7)
    config = EngineConfig(window=window)
    tiny_tiles = replace(config, tile_elements=1)
    assert ReconstructionEngine(tiny_tiles)._rows_per_tile(query, references) == 1
    assert torch.equal(ReconstructionEngine(tiny_tiles)(query, references), tile_by_tile(config, query, references, 1))
    whole = ReconstructionEngine(config)(query, references)
    assert torch.equal(whole, tile_by_tile(config, query, references, 9))
    torch.testing.assert_close(whole, brute_force(query, references, config))
