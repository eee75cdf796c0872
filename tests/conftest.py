"""Shared fixtures: operator implementations, devices, the optional shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import mast.ops as ops


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or ``$MAST_SHARED/data``), if present."""
    root = Path(os.environ.get("MAST_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    data = root / "data"
    return data if data.is_dir() else None


requires_extension = pytest.mark.skipif(
    not ops.extension_loaded(), reason="mast._C extension is not built (pure-PyTorch path only)"
)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
requires_cuda_extension = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.backend("cuda") == "extension"),
    reason="no CUDA device or the extension has no CUDA kernels",
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
