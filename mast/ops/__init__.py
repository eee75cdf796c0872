"""The operators at the heart of the reconstruction engine.

``local_correlation``, ``window_sample`` and ``roi_correlation`` (a fusion
of the two for MAST's fine ROI stage) run compiled C++/CUDA kernels
(``mast._C``, built from ``kernels/``) when available and otherwise the
pure-PyTorch references in :mod:`mast.ops.reference`, with a one-time
warning. :func:`backend` reports which path serves a device.
"""
from mast.ops import _registration
from mast.ops._extension import backend, backend_reason, extension_loaded
from mast.ops.correlation import local_correlation
from mast.ops.crops import square_crop
from mast.ops.reference import (
    local_correlation_reference,
    local_correlation_valid_mask,
    roi_correlation_reference,
    window_sample_reference,
)
from mast.ops.roi import has_fused_roi_correlation, roi_correlation
from mast.ops.sampling import window_sample

_registration.register()

__all__ = [
    "backend",
    "backend_reason",
    "extension_loaded",
    "local_correlation",
    "local_correlation_reference",
    "local_correlation_valid_mask",
    "has_fused_roi_correlation",
    "roi_correlation",
    "roi_correlation_reference",
    "square_crop",
    "window_sample",
    "window_sample_reference",
]
