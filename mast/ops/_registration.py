"""Fake (meta) kernels and autograd formulas for the compiled ``mast::`` operators.

The C++ side registers forward and backward kernels per device; this module
teaches PyTorch how to differentiate them and how to trace them without data
(``torch.compile``, ``torch.library.opcheck``).
"""
from __future__ import annotations

import torch

from mast.ops import _extension


def _local_correlation_fake(query, key, window, dilation):
    batch, _, height, width = query.shape
    return query.new_empty((batch, window * window, height, width))


def _local_correlation_backward_fake(grad_output, query, key, window, dilation):
    return torch.empty_like(query), torch.empty_like(key)


def _window_sample_fake(source, centers, window, spacing):
    batch, channels = source.shape[:2]
    height, width = centers.shape[-2:]
    samples = source.new_empty((batch, channels, window * window, height, width))
    valid = source.new_empty((batch, window * window, height, width), dtype=torch.bool)
    return samples, valid


def _window_sample_backward_fake(grad_output, source, centers, window, spacing):
    return torch.empty_like(source), torch.empty_like(centers)


def _roi_correlation_fake(query, key, centers, window, spacing):
    batch, _, height, width = query.shape
    return query.new_empty((batch, window * window, height, width))


def _roi_correlation_backward_fake(grad_output, query, key, centers, window, spacing):
    return torch.empty_like(query), torch.empty_like(key), torch.empty_like(centers)


def _local_correlation_setup(ctx, inputs, output):
    query, key, window, dilation = inputs
    ctx.save_for_backward(query, key)
    ctx.window, ctx.dilation = window, dilation


def _local_correlation_backward(ctx, grad_output):
    query, key = ctx.saved_tensors
    grad_query, grad_key = torch.ops.mast.local_correlation_backward(
        grad_output.contiguous(), query, key, ctx.window, ctx.dilation
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
        grad_samples, source, centers, ctx.window, ctx.spacing
    )
    return grad_source, grad_centers, None, None


def _roi_correlation_setup(ctx, inputs, output):
    query, key, centers, window, spacing = inputs
    ctx.save_for_backward(query, key, centers)
    ctx.window, ctx.spacing = window, spacing


def _roi_correlation_backward(ctx, grad_scores):
    query, key, centers = ctx.saved_tensors
    grads = torch.ops.mast.roi_correlation_backward(grad_scores, query, key, centers, ctx.window, ctx.spacing)
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
