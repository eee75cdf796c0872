"""Fake (meta) kernels and autograd formulas for the compiled ``mast::`` operators.

The C++ side registers forward and backward kernels per device; this module
teaches PyTorch how to differentiate them and how to trace them without data
(``torch.compile``, ``torch.library.opcheck``). The fake kernels check their
arguments as the C++ ones do (``kernels/mast_ops.h``), so a traced program
fails where an eager one would. Backward operators take an ``output_mask``
(the forward's ``ctx.needs_input_grad``) and return None for the gradients
not asked for.
"""
from __future__ import annotations

import torch

from mast.ops import _extension

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _check_map(op: str, name: str, tensor: torch.Tensor, layout: str) -> None:
    torch._check(tensor.dim() == 4, lambda: f"mast::{op}: {name} must be {layout}, got {tuple(tensor.shape)}")
    torch._check(
        tensor.dtype.is_floating_point, lambda: f"mast::{op}: expected a floating point dtype, got {tensor.dtype}"
    )


def _check_like(op: str, names: tuple[str, str], first: torch.Tensor, second: torch.Tensor) -> None:
    pair = f"mast::{op}: {names[0]} and {names[1]}"
    torch._check(
        first.device == second.device,
        lambda: f"{pair} must be on the same device, got {first.device} and {second.device}",
    )
    torch._check(
        first.dtype == second.dtype, lambda: f"{pair} must have the same dtype, got {first.dtype} and {second.dtype}"
    )


def _check_shape(op: str, name: str, tensor: torch.Tensor, expected: tuple) -> None:
    def message() -> str:
        return f"mast::{op}: {name} must have shape {tuple(expected)}, got {tuple(tensor.shape)}"

    torch._check(tensor.dim() == len(expected), message)
    # One check per size: symbolic sizes become runtime asserts, not guards.
    for actual, wanted in zip(tensor.shape, expected):
        torch._check(actual == wanted, message)


def _check_window(op: str, window: int) -> None:
    torch._check(window >= 1, lambda: f"mast::{op}: window must be an odd integer >= 1, got {window}")
    torch._check(window % 2 == 1, lambda: f"mast::{op}: window must be an odd integer >= 1, got {window}")


def _check_local_correlation(op, query, key, window, dilation) -> None:
    _check_map(op, "query", query, "(B, C, H, W)")
    _check_shape(op, "key", key, tuple(query.shape))
    _check_like(op, ("query", "key"), query, key)
    _check_window(op, window)
    torch._check(dilation >= 1, lambda: f"mast::{op}: dilation must be >= 1, got {dilation}")


def _check_window_sample(op, source, centers, window, spacing) -> None:
    _check_map(op, "source", source, "(B, C, Hs, Ws)")
    torch._check(centers.dim() == 4, lambda: f"mast::{op}: centers must be (B, 2, H, W), got {tuple(centers.shape)}")
    _check_shape(op, "centers", centers, (source.shape[0], 2, *centers.shape[2:]))
    torch._check(
        source.device == centers.device,
        lambda: f"mast::{op}: source and centers must be on the same device, got {source.device} and {centers.device}",
    )
    torch._check(
        centers.dtype == source.dtype or (source.dtype in _HALF_DTYPES and centers.dtype == torch.float32),
        lambda: f"mast::{op}: centers must have the dtype of source (or float32 for a float16/bfloat16 "
        f"source), got source {source.dtype} and centers {centers.dtype}",
    )
    _check_window(op, window)
    torch._check(spacing > 0, lambda: f"mast::{op}: spacing must be > 0, got {spacing}")


def _check_roi_correlation(op, query, key, centers, window, spacing) -> None:
    _check_window_sample(op, key, centers, window, spacing)
    _check_shape(op, "query", query, (*key.shape[:2], *centers.shape[2:]))
    _check_like(op, ("query", "key"), query, key)
    torch._check(
        centers.dtype == query.dtype,
        lambda: f"mast::{op}: centers must have the dtype of query, got {centers.dtype} and {query.dtype}",
    )


def _check_grad(op, grad_output, expected, like) -> None:
    _check_shape(op, "grad_output", grad_output, expected)
    _check_like(op, ("grad_output", "the inputs"), grad_output, like)


def _grads(output_mask, *inputs) -> tuple[torch.Tensor | None, ...]:
    """Gradients shaped like ``inputs`` where ``output_mask`` asks for them (the kernels return contiguous ones)."""
    torch._check(len(output_mask) == len(inputs), lambda: f"output_mask must have {len(inputs)} entries")
    return tuple(
        torch.empty_like(t, memory_format=torch.contiguous_format) if needed else None
        for needed, t in zip(output_mask, inputs)
    )


def _local_correlation_fake(query, key, window, dilation):
    _check_local_correlation("local_correlation", query, key, window, dilation)
    batch, _, height, width = query.shape
    return query.new_empty((batch, window * window, height, width))


def _local_correlation_backward_fake(grad_output, query, key, window, dilation, output_mask):
    op = "local_correlation_backward"
    _check_local_correlation(op, query, key, window, dilation)
    batch, _, height, width = query.shape
    _check_grad(op, grad_output, (batch, window * window, height, width), query)
    return _grads(output_mask, query, key)


def _window_sample_fake(source, centers, window, spacing):
    _check_window_sample("window_sample", source, centers, window, spacing)
    batch, channels = source.shape[:2]
    height, width = centers.shape[-2:]
    samples = source.new_empty((batch, channels, window * window, height, width))
    valid = source.new_empty((batch, window * window, height, width), dtype=torch.bool)
    return samples, valid


def _window_sample_backward_fake(grad_output, source, centers, window, spacing, output_mask):
    op = "window_sample_backward"
    _check_window_sample(op, source, centers, window, spacing)
    expected = (*source.shape[:2], window * window, *centers.shape[2:])
    _check_grad(op, grad_output, expected, source)
    return _grads(output_mask, source, centers)


def _roi_correlation_fake(query, key, centers, window, spacing):
    _check_roi_correlation("roi_correlation", query, key, centers, window, spacing)
    batch, _, height, width = query.shape
    return query.new_empty((batch, window * window, height, width))


def _roi_correlation_backward_fake(grad_output, query, key, centers, window, spacing, output_mask):
    op = "roi_correlation_backward"
    _check_roi_correlation(op, query, key, centers, window, spacing)
    batch, _, height, width = query.shape
    _check_grad(op, grad_output, (batch, window * window, height, width), query)
    return _grads(output_mask, query, key, centers)


def _local_correlation_setup(ctx, inputs, output):
    query, key, window, dilation = inputs
    ctx.save_for_backward(query, key)
    ctx.window, ctx.dilation = window, dilation


def _local_correlation_backward(ctx, grad_output):
    query, key = ctx.saved_tensors
    grad_query, grad_key = torch.ops.mast.local_correlation_backward(
        grad_output.contiguous(), query, key, ctx.window, ctx.dilation, ctx.needs_input_grad[:2]
    )
    return grad_query, grad_key, None, None


def _window_sample_setup(ctx, inputs, output):
    source, centers, window, spacing = inputs
    ctx.save_for_backward(source, centers)
    ctx.window, ctx.spacing = window, spacing
    ctx.mark_non_differentiable(output[1])


def _window_sample_backward(ctx, grad_samples, grad_valid):
    source, centers = ctx.saved_tensors
    # No .contiguous(): the CPU kernel reads grad_samples through its strides
    # (autograd often passes an expanded view; a copy would be a second
    # (B, C, P^2, H, W) tensor), and the CUDA wrapper copies when it must.
    grad_source, grad_centers = torch.ops.mast.window_sample_backward(
        grad_samples, source, centers, ctx.window, ctx.spacing, ctx.needs_input_grad[:2]
    )
    return grad_source, grad_centers, None, None


def _roi_correlation_setup(ctx, inputs, output):
    query, key, centers, window, spacing = inputs
    ctx.save_for_backward(query, key, centers)
    ctx.window, ctx.spacing = window, spacing


def _roi_correlation_backward(ctx, grad_scores):
    query, key, centers = ctx.saved_tensors
    grads = torch.ops.mast.roi_correlation_backward(
        grad_scores, query, key, centers, ctx.window, ctx.spacing, ctx.needs_input_grad[:3]
    )
    return *grads, None, None


def register() -> None:
    """Registers fake kernels and autograd; a no-op without the extension."""
    if not _extension.extension_loaded():
        return
    torch.library.register_fake("mast::local_correlation")(_local_correlation_fake)
    torch.library.register_fake("mast::local_correlation_backward")(_local_correlation_backward_fake)
    torch.library.register_fake("mast::window_sample")(_window_sample_fake)
    torch.library.register_fake("mast::window_sample_backward")(_window_sample_backward_fake)
    torch.library.register_autograd(
        "mast::local_correlation", _local_correlation_backward, setup_context=_local_correlation_setup
    )
    torch.library.register_autograd(
        "mast::window_sample", _window_sample_backward, setup_context=_window_sample_setup
    )
    torch.library.register_fake("mast::roi_correlation")(_roi_correlation_fake)
    torch.library.register_fake("mast::roi_correlation_backward")(_roi_correlation_backward_fake)
    torch.library.register_autograd(
        "mast::roi_correlation", _roi_correlation_backward, setup_context=_roi_correlation_setup
    )
