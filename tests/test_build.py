"""The build's CUDA choices (``mast_build``): toolkit, architectures, fallbacks.

What torch reports is faked (a CUDA build, no GPU visible, ...) and nvcc is a
small script, so these run anywhere in milliseconds.
"""
from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

import mast_build  # beside setup.py; pytest.ini puts the root on sys.path

ROOT = Path(__file__).resolve().parents[1]

TORCH_ARCHES = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.14.1+cu130
NVCC_13_CODES = ["sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_100", "sm_110", "sm_120", "sm_121"]


def fake_toolkit(root: Path, release: str = "13.0", codes=NVCC_13_CODES, headers: bool = True, top: str = "") -> Path:
    """A folder with ``bin/nvcc`` answering --version, --list-gpu-code and --dryrun."""
    (root / "bin").mkdir(parents=True)
    if headers:
        (root / "include").mkdir()
        (root / "include" / "cuda_runtime.h").write_text("")
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f'  --version) echo "Cuda compilation tools, release {release}, V{release}.1" ;;\n'
        f'  --list-gpu-code) printf "%s\\n" {" ".join(codes)} ;;\n'
        f'  --dryrun) echo "#$ TOP={top}" >&2 ;;\n'
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return root


@pytest.fixture
def cuda_torch(monkeypatch, tmp_path):
    """torch as a CUDA 13.0 build on a machine with a CUDA 13.0 toolkit and no visible GPU."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(TORCH_ARCHES))
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(fake_toolkit(tmp_path / "cuda")))
    monkeypatch.delenv(mast_build.ARCH_ENV, raising=False)
    return tmp_path


def test_no_gpu_visible_builds_for_torchs_architectures(cuda_torch, monkeypatch):
    plan = mast_build.plan_cuda({})
    assert plan.build and not plan.warning
    assert plan.arch_list == "7.5;8.0;8.6;9.0;10.0;12.0+PTX"
    assert "no GPU is visible" in plan.reason and plan.arch_list in plan.reason
    assert plan.cuda_home == str(cuda_torch / "cuda")
    # The list is one torch's own flag builder accepts; unset, it indexes an empty list (the reported IndexError).
    monkeypatch.setenv(mast_build.ARCH_ENV, plan.arch_list)
    flags = cpp_extension._get_cuda_arch_flags()
    assert "-gencode=arch=compute_75,code=sm_75" in flags
    assert "-gencode=arch=compute_120,code=compute_120" in flags  # PTX for GPUs newer than sm_120
    assert not any("compute_100,code=compute_100" in flag for flag in flags)


def test_architectures_the_local_nvcc_lacks_are_dropped(cuda_torch, monkeypatch):
    older = fake_toolkit(cuda_torch / "older", codes=["sm_75", "sm_80", "sm_86", "sm_90", "sm_100"])
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(older))
    assert mast_build.plan_cuda({}).arch_list == "7.5;8.0;8.6;9.0;10.0+PTX"


def test_nvcc_that_compiles_none_of_torchs_architectures_gives_cpu_kernels(cuda_torch, monkeypatch):
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(fake_toolkit(cuda_torch / "odd", codes=["sm_50"])))
    plan = mast_build.plan_cuda({})
    assert not plan.build and plan.warning
    assert "TORCH_CUDA_ARCH_LIST" in plan.reason and "CPU kernels only" in plan.reason


def test_arch_list_env_is_honoured(cuda_torch):
    plan = mast_build.plan_cuda({"TORCH_CUDA_ARCH_LIST": "8.6"})
    assert plan.build and plan.arch_list is None  # torch reads the variable itself
    assert "TORCH_CUDA_ARCH_LIST=8.6" in plan.reason


def test_native_with_no_gpu_visible_falls_back_to_torchs_architectures(cuda_torch):
    assert mast_build.plan_cuda({"TORCH_CUDA_ARCH_LIST": "native"}).arch_list == "7.5;8.0;8.6;9.0;10.0;12.0+PTX"


def test_visible_gpu_leaves_the_choice_to_torch(cuda_torch, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: [(8, 6), (9, 0)][index])
    plan = mast_build.plan_cuda({})
    assert plan.build and plan.arch_list is None
    assert "visible GPUs (8.6;9.0)" in plan.reason


def test_toolkit_of_another_cuda_major_gives_cpu_kernels_and_names_both(cuda_torch, monkeypatch):
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(fake_toolkit(cuda_torch / "cuda12", release="12.4")))
    plan = mast_build.plan_cuda({})
    assert not plan.build and plan.warning
    assert "CUDA 12.4" in plan.reason and "CUDA 13.0" in plan.reason and "MAST_FORCE_CPU=1" in plan.reason


def test_no_toolkit_gives_cpu_kernels_with_a_warning(cuda_torch, monkeypatch):
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    plan = mast_build.plan_cuda({})
    assert not plan.build and plan.warning and "CUDA_HOME" in plan.reason


def test_cpu_torch_and_force_cpu_build_cpu_kernels_quietly(cuda_torch, monkeypatch):
    forced = mast_build.plan_cuda({"MAST_FORCE_CPU": "1"})
    assert not forced.build and not forced.warning and "MAST_FORCE_CPU=1" in forced.reason
    monkeypatch.setattr(torch.version, "cuda", None)
    cpu = mast_build.plan_cuda({})
    assert not cpu.build and not cpu.warning and "not a CUDA build" in cpu.reason


def test_wrapper_nvcc_resolves_to_the_real_toolkit(cuda_torch, monkeypatch):
    # torch's guess is the parent of the nvcc on PATH; here that nvcc is a wrapper with no headers beside it.
    real = cuda_torch / "cuda"
    wrapper = fake_toolkit(cuda_torch / "usr-local", headers=False, top=f"{real}/bin/..")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(wrapper))
    assert mast_build.plan_cuda({}).cuda_home == str(real)
    assert mast_build.find_cuda_home(str(wrapper), {"CUDA_HOME": "/opt/chosen"}) == "/opt/chosen"


def test_torch_arch_names_convert():
    assert mast_build.arch_list_from_torch(["sm_90a", "compute_120", "sm_120", "sm_75", "sm_75"]) == ["7.5", "12.0+PTX"]
    assert mast_build.arch_list_from_torch([]) == []


def test_pyproject_declares_the_build_requirements():
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    names = {requirement.split(">")[0].split("=")[0].strip() for requirement in build_system["requires"]}
    assert {"setuptools", "wheel", "torch"} <= names
    assert build_system["build-backend"] == "setuptools.build_meta"
