"""The operators at the heart of the reconstruction engine.

``local_correlation`` and ``window_sample`` run compiled C++/CUDA kernels
(``mast._C``, built from ``kernels/``) when available and otherwise the
pure-PyTorch references in :mod:`mast.ops.reference`, with a one-time
warning. :func:`backend` reports which path serves a device.
"""
from mast.ops import _registration
from mast.ops._extension import backend, extension_loaded
from mast.ops.correlation import local_correlation
from mast.ops.reference import (
    local_correlation_reference,
    local_correlation_valid_mask,
    window_sample_reference,
)
from mast.ops.sampling import window_sample

_registration.register()

__all__ = [
    "backend",
    "extension_loaded",
    "local_correlation",
    "local_correlation_reference",
    "local_correlation_valid_mask",
    "window_sample",
    "window_sample_reference",
]
