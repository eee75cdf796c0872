"""How the compiled operators are registered: gradient masks, fake kernels, capabilities."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import mast.ops as ops
from mast.models.engine import EngineConfig, ReconstructionEngine
from mast.models.memory import Reference
from tests.conftest import requires_cuda_extension, requires_extension
from tests.test_ops_kernels import random_centers

DEVICES = [
    pytest.param("cpu", marks=requires_extension),
    pytest.param("cuda", marks=requires_cuda_extension),
]


def backward_cases(device):
    """Per backward operator, its arguments before ``output_mask`` (float64, gradients away from cell borders)."""
    f64 = dict(dtype=torch.float64, device=device)
    query, key = torch.randn(2, 3, 5, 6, **f64), torch.randn(2, 3, 5, 6, **f64)
    source = torch.randn(2, 3, 6, 7, **f64)
    centers = random_centers(2, 5, 6, 6, 7, torch.float64, device)
    return {
        "local_correlation_backward": (torch.randn(2, 9, 5, 6, **f64), query, key, 3, 2),
        "window_sample_backward": (torch.randn(2, 3, 9, 5, 6, **f64), source, centers, 3, 0.7),
        "roi_correlation_backward": (torch.randn(2, 9, 5, 6, **f64), query, source, centers, 3, 0.7),
    }


def masks(count):
    return [list(mask) for mask in itertools.product((False, True), repeat=count)]


def gradient_count(name):
    return 3 if name == "roi_correlation_backward" else 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["local_correlation_backward", "window_sample_backward", "roi_correlation_backward"])
def test_backward_returns_exactly_the_gradients_asked_for(device, name):
    if name == "roi_correlation_backward" and not ops.has_fused_roi_correlation(device):
        pytest.skip("no fused roi_correlation kernel on this device")
    op = getattr(torch.ops.mast, name)
    args = backward_cases(device)[name]
    count = gradient_count(name)
    full = op(*args, [True] * count)
    for mask in masks(count):
        got = op(*args, mask)
        for needed, grad, expected in zip(mask, got, full):
            if needed:
                # Skipping the other gradients leaves this one's arithmetic alone.
                assert torch.equal(grad, expected), (mask, name)
            else:
                assert grad is None, (mask, name)


@requires_extension
@pytest.mark.parametrize("name", ["local_correlation_backward", "window_sample_backward", "roi_correlation_backward"])
def test_backward_opcheck_for_every_mask(name):
    args = [a.float() if isinstance(a, torch.Tensor) else a for a in backward_cases("cpu")[name]]
    for mask in masks(gradient_count(name)):
        torch.library.opcheck(getattr(torch.ops.mast, name).default, (*args, mask))


@requires_extension
def test_forward_opcheck_for_every_set_of_differentiable_inputs():
    query, key = torch.randn(2, 3, 5, 6), torch.randn(2, 3, 5, 6)
    source = torch.randn(2, 3, 6, 7)
    centers = random_centers(2, 5, 6, 6, 7, torch.float32, "cpu")
    cases = [
        ("local_correlation", (query, key), (3, 2)),
        ("window_sample", (source, centers), (3, 0.5)),
        ("roi_correlation", (query, source, centers), (3, 0.5)),
    ]
    for name, tensors, rest in cases:
        for mask in masks(len(tensors)):
            inputs = [t.clone().requires_grad_(needed) for t, needed in zip(tensors, mask)]
            torch.library.opcheck(getattr(torch.ops.mast, name).default, (*inputs, *rest))


class BackwardCalls(TorchDispatchMode):
    """Records the output mask and the results of every mast backward operator call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "mast" and "backward" in func.name():
            self.calls.append((func.name().split("::")[1].split(".")[0], list(args[-1]), out))
        return out


@requires_extension
@pytest.mark.parametrize("source_grad,centers_grad", [(False, True), (True, False), (True, True)])
def test_autograd_asks_only_for_the_gradients_of_inputs_that_require_them(source_grad, centers_grad):
    source = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=source_grad)
    centers = random_centers(1, 4, 5, 6, 7, torch.float64, "cpu").requires_grad_(centers_grad)
    query = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=centers_grad)
    with BackwardCalls() as recorded:
        samples, _ = ops.window_sample(source, centers, 3, 1.0)
        scores = ops.roi_correlation(query, source, centers, 3, 1.0)
        (samples.sum() + scores.masked_fill(torch.isinf(scores), 0).sum()).backward()
    expected = {
        "window_sample_backward": [source_grad, centers_grad],
        "roi_correlation_backward": [centers_grad, source_grad, centers_grad],
    }
    assert sorted(name for name, _, _ in recorded.calls) == sorted(expected)
    for name, mask, grads in recorded.calls:
        assert mask == expected[name], name
        assert [g is not None for g in grads] == mask, name


@requires_extension
def test_engine_backward_never_computes_value_gradients():
    """Values are read out, not learnt: window_sample's backward computes the
    centre gradient of far references only."""
    query = torch.randn(2, 4, 7, 6, requires_grad=True)
    references = [
        Reference(torch.randn(2, 4, 7, 6, requires_grad=True), torch.randn(2, 3, 7, 6), distance)
        for distance in (1, 20, [3, 40])
    ]
    engine = ReconstructionEngine(EngineConfig(window=3))
    with BackwardCalls() as recorded:
        engine(query, references).square().sum().backward()
    masks_seen = [mask for name, mask, _ in recorded.calls if name == "window_sample_backward"]
    assert masks_seen == [[False, True], [False, True]]


def fake_and_real(op, make_args):
    """Errors of ``op`` on real tensors and under FakeTensorMode (None when it runs)."""
    errors = []
    for mode in (None, FakeTensorMode()):
        try:
            if mode is None:
                op(*make_args())
            else:
                with mode:
                    op(*make_args())
            errors.append(None)
        except RuntimeError as error:
            errors.append(str(error))
    return errors


def f32(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


BAD_CALLS = {
    "key shape": ("local_correlation", lambda: (f32(1, 2, 4, 5), f32(1, 2, 4, 6), 3, 1), "key"),
    "key dtype": ("local_correlation", lambda: (f32(1, 2, 4, 5), f32(1, 2, 4, 5, dtype=torch.float64), 3, 1), "dtype"),
    "query rank": ("local_correlation", lambda: (f32(2, 4, 5), f32(2, 4, 5), 3, 1), "query"),
    "even window": ("local_correlation", lambda: (f32(1, 2, 4, 5), f32(1, 2, 4, 5), 4, 1), "window"),
    "dilation": ("local_correlation", lambda: (f32(1, 2, 4, 5), f32(1, 2, 4, 5), 3, 0), "dilation"),
    "integer features": (
        "local_correlation", lambda: (torch.ones(1, 2, 4, 5, dtype=torch.long),) * 2 + (3, 1), "floating point",
    ),
    "correlation grad shape": (
        "local_correlation_backward",
        lambda: (f32(1, 4, 4, 5), f32(1, 2, 4, 5), f32(1, 2, 4, 5), 3, 1, [True, True]),
        "grad_output",
    ),
    "centers rank": ("window_sample", lambda: (f32(1, 2, 4, 5), f32(1, 2, 3), 3, 1.0), "centers"),
    "centers channels": ("window_sample", lambda: (f32(1, 2, 4, 5), f32(1, 3, 3, 3), 3, 1.0), "centers"),
    "centers batch": ("window_sample", lambda: (f32(1, 2, 4, 5), f32(2, 2, 3, 3), 3, 1.0), "centers"),
    "centers dtype": (
        "window_sample", lambda: (f32(1, 2, 4, 5), f32(1, 2, 3, 3, dtype=torch.float64), 3, 1.0), "centers",
    ),
    "spacing": ("window_sample", lambda: (f32(1, 2, 4, 5), f32(1, 2, 3, 3), 3, 0.0), "spacing"),
    "sample grad shape": (
        "window_sample_backward",
        lambda: (f32(1, 2, 4, 3, 3), f32(1, 2, 4, 5), f32(1, 2, 3, 3), 3, 1.0, [True, True]),
        "grad_output",
    ),
    "mask length": (
        "window_sample_backward",
        lambda: (f32(1, 2, 9, 3, 3), f32(1, 2, 4, 5), f32(1, 2, 3, 3), 3, 1.0, [True, True, True]),
        "",
    ),
    "roi query channels": (
        "roi_correlation", lambda: (f32(1, 3, 3, 3), f32(1, 2, 4, 5), f32(1, 2, 3, 3), 3, 1.0), "query",
    ),
    "roi query size": (
        "roi_correlation", lambda: (f32(1, 2, 3, 4), f32(1, 2, 4, 5), f32(1, 2, 3, 3), 3, 1.0), "query",
    ),
    "roi centers dtype": (
        "roi_correlation",
        lambda: (f32(1, 2, 3, 3, dtype=torch.float64), f32(1, 2, 4, 5, dtype=torch.float64), f32(1, 2, 3, 3), 3, 1.0),
        "centers",
    ),
    "roi grad shape": (
        "roi_correlation_backward",
        lambda: (f32(1, 9, 3, 4), f32(1, 2, 3, 3), f32(1, 2, 4, 5), f32(1, 2, 3, 3), 3, 1.0, [True] * 3),
        "grad_output",
    ),
}


@requires_extension
@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_fake_kernels_reject_what_the_kernels_reject(case):
    name, make_args, match = BAD_CALLS[case]
    real, fake = fake_and_real(getattr(torch.ops.mast, name), make_args)
    assert real is not None, "the compiled kernel accepted it"
    assert fake is not None, "the fake kernel accepted it"
    assert match in fake


@requires_extension
def test_capabilities_describe_the_registered_kernels():
    from mast import _C

    capabilities = _C.capabilities()
    assert set(capabilities) == {"cuda", "fused_roi"} and set(capabilities["fused_roi"]) == {"cpu", "cuda"}

    def registered(op, key):
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"mast::{op}", key)

    for op in ("local_correlation", "window_sample", "local_correlation_backward", "window_sample_backward"):
        assert registered(op, "CPU") and registered(op, "CUDA") == capabilities["cuda"], op
    for op in ("roi_correlation", "roi_correlation_backward"):
        for device, key in (("cpu", "CPU"), ("cuda", "CUDA")):
            assert registered(op, key) == capabilities["fused_roi"][device], (op, device)
            assert ops.has_fused_roi_correlation(device) == capabilities["fused_roi"][device]
    assert ops.backend("cuda") == ("extension" if capabilities["cuda"] else "pytorch")
