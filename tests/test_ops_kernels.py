"""Compiled kernels (CPU and CUDA) against the pure-PyTorch references."""
from __future__ import annotations

import pytest
import torch

import mast.ops as ops
from mast.ops import local_correlation, roi_correlation, window_sample
from mast.ops.reference import local_correlation_reference, roi_correlation_reference, window_sample_reference
from tests.conftest import requires_cuda_extension, requires_extension

DEVICES = [
    pytest.param("cpu", marks=requires_extension),
    pytest.param("cuda", marks=requires_cuda_extension),
]

CORRELATION_CASES = [
    # (B, C, H, W, window, dilation)
    (2, 3, 7, 9, 1, 1),
    (2, 3, 7, 9, 5, 1),
    (1, 5, 11, 4, 5, 3),
    (1, 4, 13, 17, 13, 1),
    (3, 2, 9, 8, 13, 2),
    (1, 16, 6, 5, 3, 4),
]

SAMPLE_CASES = [
    # (B, C, Hs, Ws, H, W, window, spacing)
    (2, 3, 7, 9, 7, 9, 1, 1.0),
    (2, 3, 7, 9, 5, 6, 5, 1.0),
    (1, 5, 11, 4, 3, 8, 5, 0.5),
    (1, 4, 13, 17, 13, 17, 13, 1.0),
    (3, 2, 9, 8, 4, 4, 13, 2.3),
    (1, 16, 6, 5, 9, 2, 3, 0.75),
]


def random_centers(batch, height, width, src_h, src_w, dtype, device, margin=3.0):
    """Centres scattered over the source and up to ``margin`` pixels outside it."""
    scale = torch.tensor([src_w - 1 + 2 * margin, src_h - 1 + 2 * margin], dtype=dtype, device=device)
    return torch.rand(batch, 2, height, width, dtype=dtype, device=device) * scale.view(1, 2, 1, 1) - margin


def correlation_grads(fn, query, key, window, dilation, grad_output):
    query, key = query.clone().requires_grad_(), key.clone().requires_grad_()
    out = fn(query, key, window, dilation)
    finite = torch.isfinite(out)
    (out.masked_fill(~finite, 0) * grad_output).sum().backward()
    return out, query.grad, key.grad


def sample_grads(fn, source, centers, window, spacing, grad_output):
    source, centers = source.clone().requires_grad_(), centers.clone().requires_grad_()
    samples, valid = fn(source, centers, window, spacing)
    (samples * grad_output).sum().backward()
    return samples, valid, source.grad, centers.grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CORRELATION_CASES)
def test_local_correlation_matches_reference(device, dtype, case):
    batch, channels, height, width, window, dilation = case
    query = torch.randn(batch, channels, height, width, dtype=dtype, device=device)
    key = torch.randn(batch, channels, height, width, dtype=dtype, device=device)
    grad_output = torch.randn(batch, window * window, height, width, dtype=dtype, device=device)
    got = correlation_grads(local_correlation, query, key, window, dilation, grad_output)
    expected = correlation_grads(local_correlation_reference, query, key, window, dilation, grad_output)
    assert torch.equal(torch.isinf(got[0]), torch.isinf(expected[0]))
    for name, a, b in zip(("output", "grad_query", "grad_key"), got, expected):
        a, b = torch.nan_to_num(a, neginf=0.0), torch.nan_to_num(b, neginf=0.0)
        assert (a - b).abs().max().item() <= 1e-4, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", SAMPLE_CASES)
def test_window_sample_matches_reference(device, dtype, case):
    batch, channels, src_h, src_w, height, width, window, spacing = case
    source = torch.randn(batch, channels, src_h, src_w, dtype=dtype, device=device)
    centers = random_centers(batch, height, width, src_h, src_w, dtype, device)
    grad_output = torch.randn(batch, channels, window * window, height, width, dtype=dtype, device=device)
    got = sample_grads(window_sample, source, centers, window, spacing, grad_output)
    expected = sample_grads(window_sample_reference, source, centers, window, spacing, grad_output)
    assert got[1].dtype == torch.bool and torch.equal(got[1], expected[1])
    for name, a, b in zip(("samples", "grad_source", "grad_centers"), got[::2] + got[3:], expected[::2] + expected[3:]):
        assert (a - b).abs().max().item() <= 1e-4, name


def roi_grads(fn, query, key, centers, window, spacing, grad_output):
    query, key, centers = (t.clone().requires_grad_() for t in (query, key, centers))
    out = fn(query, key, centers, window, spacing)
    (out.masked_fill(torch.isinf(out), 0) * grad_output).sum().backward()
    return out, query.grad, key.grad, centers.grad


@pytest.mark.parametrize("device", DEVICES)  # CUDA: composed from window_sample
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", SAMPLE_CASES + [(1, 64, 12, 13, 10, 11, 13, 1.0), (2, 9, 5, 6, 5, 6, 25, 0.5)])
def test_roi_correlation_matches_reference(device, dtype, case):
    batch, channels, src_h, src_w, height, width, window, spacing = case
    query = torch.randn(batch, channels, height, width, dtype=dtype, device=device)
    key = torch.randn(batch, channels, src_h, src_w, dtype=dtype, device=device)
    centers = random_centers(batch, height, width, src_h, src_w, dtype, device)
    grad_output = torch.randn(batch, window * window, height, width, dtype=dtype, device=device)
    got = roi_grads(roi_correlation, query, key, centers, window, spacing, grad_output)
    expected = roi_grads(roi_correlation_reference, query, key, centers, window, spacing, grad_output)
    assert torch.equal(torch.isinf(got[0]), torch.isinf(expected[0]))
    for name, a, b in zip(("scores", "grad_query", "grad_key", "grad_centers"), got, expected):
        a, b = torch.nan_to_num(a, neginf=0.0), torch.nan_to_num(b, neginf=0.0)
        assert (a - b).abs().max().item() <= 1e-4, name


@pytest.mark.parametrize("device", DEVICES)  # CUDA: composed from window_sample
@pytest.mark.parametrize("spacing", [1.0, 0.6, 1.7])
def test_roi_correlation_gradcheck(device, spacing):
    query = torch.randn(2, 3, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    key = torch.randn(2, 3, 6, 7, dtype=torch.float64, device=device, requires_grad=True)
    centers = random_centers(2, 4, 3, 6, 7, torch.float64, device, margin=2.0).requires_grad_()

    def fn(q, k, c):
        out = roi_correlation(q, k, c, 3, spacing)
        return out.masked_fill(torch.isinf(out), 0.0)

    assert torch.autograd.gradcheck(fn, (query, key, centers))


@requires_extension
def test_roi_correlation_without_a_fused_kernel_composes_window_sample(monkeypatch):
    """The CUDA path (compiled window_sample, then the reference's scoring), run on the CPU."""
    batch, channels, src_h, src_w, height, width, window, spacing = 2, 5, 7, 8, 4, 6, 5, 0.8
    query = torch.randn(batch, channels, height, width, dtype=torch.float64)
    key = torch.randn(batch, channels, src_h, src_w, dtype=torch.float64)
    centers = random_centers(batch, height, width, src_h, src_w, torch.float64, "cpu")
    grad_output = torch.randn(batch, window * window, height, width, dtype=torch.float64)
    fused = roi_grads(roi_correlation, query, key, centers, window, spacing, grad_output)
    monkeypatch.setitem(ops._extension._KERNEL_DEVICE_TYPES, "roi_correlation", frozenset())
    assert not ops.has_fused_roi_correlation("cpu")
    composed = roi_grads(roi_correlation, query, key, centers, window, spacing, grad_output)
    expected = roi_grads(roi_correlation_reference, query, key, centers, window, spacing, grad_output)
    names = ("scores", "grad_query", "grad_key", "grad_centers")
    for name, got, fused_value, reference_value in zip(names, composed, fused, expected):
        torch.testing.assert_close(got, reference_value, msg=name)
        torch.testing.assert_close(got, fused_value, msg=name)


@requires_extension
def test_roi_correlation_opcheck_and_compile():
    query = torch.randn(2, 3, 4, 5, requires_grad=True)
    key = torch.randn(2, 3, 6, 7, requires_grad=True)
    centers = random_centers(2, 4, 5, 6, 7, torch.float32, "cpu").requires_grad_()
    torch.library.opcheck(torch.ops.mast.roi_correlation.default, (query, key, centers, 3, 0.5))
    compiled = torch.compile(lambda q, k, c: roi_correlation(q, k, c, 3, 1.0), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(query, key, centers), roi_correlation(query, key, centers, 3, 1.0))


@pytest.mark.parametrize("device", DEVICES)
def test_local_correlation_gradcheck(device):
    query = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=device, requires_grad=True)
    key = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=device, requires_grad=True)
    for window, dilation in ((3, 1), (3, 2), (5, 1)):
        def fn(q, k):
            out = local_correlation(q, k, window, dilation)
            return out.masked_fill(torch.isinf(out), 0.0)

        assert torch.autograd.gradcheck(fn, (query, key))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spacing", [1.0, 0.6, 1.7])
def test_window_sample_gradcheck_source_and_centers(device, spacing):
    source = torch.randn(2, 3, 6, 7, dtype=torch.float64, device=device, requires_grad=True)
    centers = random_centers(2, 4, 3, 6, 7, torch.float64, device, margin=2.0).requires_grad_()
    assert torch.autograd.gradcheck(lambda s, c: window_sample(s, c, 3, spacing)[0], (source, centers))


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    query = torch.randn(2, 6, 9, 3, device=device).transpose(1, 3)  # (2, 3, 9, 6), non-contiguous
    key = torch.randn(2, 3, 9, 12, device=device)[..., ::2]
    assert not query.is_contiguous() and not key.is_contiguous()
    torch.testing.assert_close(
        local_correlation(query, key, 5, 2), local_correlation_reference(query.contiguous(), key.contiguous(), 5, 2)
    )
    source = torch.randn(2, 8, 3, 7, device=device).permute(0, 2, 3, 1)  # (2, 3, 7, 8)
    centers = random_centers(2, 4, 5, 7, 8, torch.float32, device).transpose(2, 3)
    got, got_valid = window_sample(source, centers, 3, 1.5)
    expected, expected_valid = window_sample_reference(source.contiguous(), centers.contiguous(), 3, 1.5)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got_valid, expected_valid)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["expanded", "permuted", "sliced"])
@pytest.mark.parametrize("output_mask", [[True, True], [False, True], [True, False]])
def test_window_sample_backward_takes_strided_gradients(device, layout, output_mask):
    """Autograd hands the backward views (a broadcast scalar, a permutation,
    a slice); the kernel reads them in place and must agree with the reference,
    whichever gradients it is asked for."""
    B, C, H, W, window = 2, 3, 5, 6, 3
    source = torch.randn(B, C, 7, 8, dtype=torch.float64, device=device)
    centers = random_centers(B, H, W, 7, 8, torch.float64, device)
    if layout == "expanded":
        grad = torch.tensor(0.7, dtype=torch.float64, device=device).expand(B, C, window**2, H, W)
    elif layout == "permuted":
        grad = torch.randn(B, H, W, C, window**2, dtype=torch.float64, device=device).permute(0, 3, 4, 1, 2)
    else:
        grad = torch.randn(B, C, window**2, H, 2 * W, dtype=torch.float64, device=device)[..., ::2]
    assert not grad.is_contiguous()
    got = torch.ops.mast.window_sample_backward(grad, source, centers, window, 1.5, output_mask)
    expected = sample_grads(window_sample_reference, source, centers, window, 1.5, grad)[2:]
    for needed, got_grad, expected_grad in zip(output_mask, got, expected):
        if needed:
            torch.testing.assert_close(got_grad, expected_grad)
        else:
            assert got_grad is None


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    query = torch.randn(2, 3, 5, 6, device=device, requires_grad=True)
    key = torch.randn(2, 3, 5, 6, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.mast.local_correlation.default, (query, key, 3, 2))
    source = torch.randn(2, 3, 6, 7, device=device, requires_grad=True)
    centers = random_centers(2, 4, 3, 6, 7, torch.float32, device).requires_grad_()
    torch.library.opcheck(torch.ops.mast.window_sample.default, (source, centers, 3, 0.5))


@requires_extension
def test_torch_compile_matches_eager():
    def attend(query, key, centers):
        scores = local_correlation(query, key, 3, 1)
        samples, valid = window_sample(key, centers, 3, 1.0)
        return torch.softmax(scores, dim=1).sum() + (samples * valid.unsqueeze(1)).sum()

    query, key = torch.randn(1, 4, 6, 7), torch.randn(1, 4, 6, 7)
    centers = random_centers(1, 6, 7, 6, 7, torch.float32, "cpu")
    compiled = torch.compile(attend, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(query, key, centers), attend(query, key, centers))


def test_backend_reports_a_known_path():
    assert ops.backend("cpu") in ("extension", "pytorch")
    assert ops.backend("cuda") in ("extension", "pytorch")
