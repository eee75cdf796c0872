"""Loads the compiled extension ``mast._C`` and reports which path is live."""
from __future__ import annotations

import os
import warnings

import torch

_LOAD_ERROR: str | None = None
_WARNED = False
_C = None

if os.environ.get("MAST_DISABLE_EXTENSION", "0") == "1":
    _LOAD_ERROR = "disabled by MAST_DISABLE_EXTENSION=1"
else:
    try:
        from mast import _C  # importing registers torch.ops.mast.*
    except ImportError as error:
        _LOAD_ERROR = f"{type(error).__name__}: {error}"


def extension_loaded() -> bool:
    """True when ``mast._C`` was imported and its operators are registered."""
    return _LOAD_ERROR is None


OPERATORS = ("local_correlation", "window_sample", "roi_correlation")


def _kernel_device_types() -> dict[str, frozenset[str]]:
    if not extension_loaded():
        return {op: frozenset() for op in OPERATORS}
    capabilities = _C.capabilities()
    compiled = frozenset(("cpu", "cuda") if capabilities["cuda"] else ("cpu",))
    fused_roi = frozenset(device for device, fused in capabilities["fused_roi"].items() if fused)
    return {"local_correlation": compiled, "window_sample": compiled, "roi_correlation": compiled & fused_roi}


# Looked up once: a plain set membership test is also what torch.compile can trace.
_KERNEL_DEVICE_TYPES = _kernel_device_types()


def has_kernel(device_type: str, operator: str = "local_correlation") -> bool:
    """True when the extension has ``operator``'s kernel for ``device_type`` ('cpu', 'cuda')."""
    return device_type in _KERNEL_DEVICE_TYPES[operator]


def backend(device: torch.device | str = "cpu") -> str:
    """Which implementation serves tensors on ``device``.

    Returns:
        ``"extension"`` (compiled kernels) or ``"pytorch"`` (pure-PyTorch
        reference implementations).
    """
    return "extension" if has_kernel(torch.device(device).type) else "pytorch"


def backend_reason(device: torch.device | str = "cpu") -> str:
    """Why :func:`backend` answers as it does for ``device``: the compiled kernels, or what kept them away."""
    device = torch.device(device)
    if has_kernel(device.type):
        return "compiled kernels of mast._C"
    return _LOAD_ERROR or f"the extension was built without {device.type.upper()} kernels"


def warn_fallback_once(device: torch.device) -> None:
    """Warns, once per process, that the slower pure-PyTorch path is running."""
    global _WARNED
    if _WARNED:
        return
    _WARNED = True
    warnings.warn(
        f"mast: compiled operators unavailable ({backend_reason(device)}); using the pure-PyTorch "
        "implementations (slower, more memory). Rebuild with "
        "`bash scripts/setup_env.sh` (docs/setup.md) to get the kernels.",
        RuntimeWarning,
        stacklevel=3,
    )
