"""The pure-PyTorch references against independent formulations."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mast.ops.reference import (
    local_correlation_reference,
    local_correlation_valid_mask,
    roi_correlation_reference,
    window_offsets,
    window_sample_reference,
)


def test_window_offsets_row_major():
    dy, dx = window_offsets(3, 1.0, torch.zeros(1))
    assert dy.tolist() == [-1, -1, -1, 0, 0, 0, 1, 1, 1]
    assert dx.tolist() == [-1, 0, 1, -1, 0, 1, -1, 0, 1]


@pytest.mark.parametrize("window,dilation", [(1, 1), (3, 1), (5, 2), (3, 4)])
def test_local_correlation_matches_explicit_loops(window, dilation):
    query = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    key = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    out = local_correlation_reference(query, key, window, dilation)
    radius = window // 2
    for b in range(2):
        for p in range(window * window):
            dy, dx = (p // window - radius) * dilation, (p % window - radius) * dilation
            for y in range(5):
                for x in range(7):
                    if 0 <= y + dy < 5 and 0 <= x + dx < 7:
                        expected = (query[b, :, y, x] * key[b, :, y + dy, x + dx]).sum()
                        assert torch.isclose(out[b, p, y, x], expected)
                    else:
                        assert out[b, p, y, x] == float("-inf")


def test_valid_mask_counts():
    valid = local_correlation_valid_mask(4, 6, 3, 1)
    assert valid.shape == (9, 4, 6)
    assert valid[4].all()  # the centre offset is always inside
    assert valid.sum(0)[0, 0] == 4 and valid.sum(0)[1, 1] == 9


@pytest.mark.parametrize("spacing", [1.0, 0.5, 2.3])
def test_window_sample_matches_grid_sample(spacing):
    batch, channels, src_h, src_w, height, width, window = 2, 3, 7, 9, 4, 5, 5
    source = torch.randn(batch, channels, src_h, src_w, dtype=torch.float64)
    scale = torch.tensor([src_w + 6.0, src_h + 6.0], dtype=torch.float64).view(1, 2, 1, 1)
    centers = torch.rand(batch, 2, height, width, dtype=torch.float64) * scale - 3
    samples, valid = window_sample_reference(source, centers, window, spacing)

    dy, dx = window_offsets(window, spacing, centers)
    sample_x = centers[:, 0:1] + dx.view(1, -1, 1, 1)
    sample_y = centers[:, 1:2] + dy.view(1, -1, 1, 1)
    grid = torch.stack((sample_x / (src_w - 1) * 2 - 1, sample_y / (src_h - 1) * 2 - 1), dim=-1)
    expected = F.grid_sample(source, grid.reshape(batch, -1, width, 2), align_corners=True)
    torch.testing.assert_close(samples, expected.reshape(samples.shape))
    inside = (sample_x >= 0) & (sample_x <= src_w - 1) & (sample_y >= 0) & (sample_y <= src_h - 1)
    assert torch.equal(valid, inside)


def test_window_sample_non_finite_centres_read_nothing():
    source = torch.randn(1, 2, 5, 5)
    centers = torch.full((1, 2, 2, 2), 2.0)
    centers[0, 0, 0, 0] = float("nan")
    centers[0, 1, 1, 1] = float("inf")
    samples, valid = window_sample_reference(source, centers, 3)
    assert torch.isfinite(samples).all()
    assert not valid[0, :, 0, 0].any() and not valid[0, :, 1, 1].any()
    assert (samples[0, :, :, 0, 0] == 0).all()


def test_without_the_extension_the_api_falls_back_and_warns_once():
    import os
    import subprocess
    import sys

    code = (
        "import warnings, torch\n"
        "warnings.simplefilter('always')\n"
        "import mast.ops as ops\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    q = torch.randn(1, 2, 5, 5)\n"
        "    for _ in range(3):\n"
        "        ops.local_correlation(q, q, 3)\n"
        "        ops.window_sample(q, torch.zeros(1, 2, 4, 4), 3)\n"
        "print(ops.backend('cpu'), sum('pure-PyTorch' in str(w.message) for w in caught))\n"
    )
    env = dict(os.environ, MAST_DISABLE_EXTENSION="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pytorch", "1"]


class OperatorNamespaces(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.namespace)
        return func(*args, **(kwargs or {}))


def test_references_are_pure_pytorch():
    """The ground truth the kernels are tested against must not run them."""
    query = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    key = torch.randn(1, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    centers = (torch.rand(1, 2, 4, 5, dtype=torch.float64) * 6).requires_grad_()
    with OperatorNamespaces() as mode:
        scores = roi_correlation_reference(query, key, centers, 3, 0.5)
        samples, _ = window_sample_reference(key, centers, 3, 0.5)
        correlation = local_correlation_reference(query, query, 3, 2)
        total = sum(t.masked_fill(torch.isinf(t), 0).sum() for t in (scores, samples, correlation))
        total.backward()
    assert mode.seen and mode.seen <= {"aten", "prim", "prims"}
