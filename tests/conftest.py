"""Shared fixtures: operator implementations, devices, the optional shared data, scripts."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny networks gain nothing from more, and two OpenMP
    threads on a busy 2-core machine mostly wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
