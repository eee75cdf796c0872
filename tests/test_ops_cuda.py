"""CUDA-only behaviour: half precision with float32 accumulation, autocast, devices."""
from __future__ import annotations

import pytest
import torch

from mast.ops import local_correlation, window_sample
from mast.ops.reference import local_correlation_reference, window_sample_reference
from tests.conftest import requires_cuda, requires_cuda_extension
from tests.test_ops_kernels import random_centers


@requires_cuda_extension
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_correlation_accumulates_in_float32(dtype):
    query = torch.randn(2, 64, 30, 41, device="cuda")
    key = torch.randn(2, 64, 30, 41, device="cuda")
    got = local_correlation(query.to(dtype), key.to(dtype), 13, 2)
    assert got.dtype == dtype
    expected = local_correlation_reference(query.to(dtype).float(), key.to(dtype).float(), 13, 2)
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got))
    # Output rounding only: accumulating 64 products in half would be far worse.
    tolerance = 0.02 if dtype == torch.float16 else 0.1
    assert (got.float()[finite] - expected[finite]).abs().max() <= tolerance * expected[finite].abs().max()


@requires_cuda_extension
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_window_sample_and_backward(dtype):
    source = torch.randn(2, 16, 40, 50, device="cuda")
    centers = random_centers(2, 20, 25, 40, 50, torch.float32, "cuda")
    half_source = source.to(dtype).requires_grad_()
    got, valid = window_sample(half_source, centers.clone().requires_grad_(), 5, 1.5)
    assert got.dtype == dtype
    expected, expected_valid = window_sample_reference(source.to(dtype).float(), centers, 5, 1.5)
    assert torch.equal(valid, expected_valid)
    assert (got.float() - expected).abs().max() <= 0.05 * expected.abs().max()
    got.float().sum().backward()
    assert half_source.grad.dtype == dtype and torch.isfinite(half_source.grad.float()).all()


@requires_cuda_extension
def test_autocast_training_step_runs():
    query = torch.randn(2, 8, 16, 16, device="cuda", requires_grad=True)
    key = torch.randn(2, 8, 16, 16, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.float16):
        projected_q = torch.nn.functional.conv2d(query, torch.eye(8, device="cuda").view(8, 8, 1, 1))
        projected_k = torch.nn.functional.conv2d(key, torch.eye(8, device="cuda").view(8, 8, 1, 1))
        scores = local_correlation(projected_q, projected_k, 5, 1)
    torch.softmax(scores.float(), dim=1).pow(2).sum().backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(key.grad).all()


@requires_cuda
def test_mixed_devices_rejected():
    with pytest.raises(ValueError, match="key"):
        local_correlation(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3, device="cuda"), 3)
    with pytest.raises(ValueError, match="centers"):
        window_sample(torch.randn(1, 2, 3, 3, device="cuda"), torch.zeros(1, 2, 3, 3), 3)
