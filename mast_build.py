"""Build-time choices for ``setup.py``: whether ``mast._C`` gets its CUDA
kernels, with which toolkit, and for which GPU architectures.

It lives beside ``setup.py`` rather than in it because ``setup.py`` runs
``setup()`` when imported; tests import this module instead. It is not part
of the installed package.

The rule (``plan_cuda``):

1. No CUDA kernels when ``MAST_FORCE_CPU=1``, when torch is not a CUDA build,
   when no CUDA toolkit is found, or when the toolkit's CUDA major version
   differs from torch's (torch refuses to build against it). Only the CPU
   kernels are built then, with a warning in the last three cases.
2. ``TORCH_CUDA_ARCH_LIST``, when set, is used as given (but ``native`` with
   no GPU visible, which torch cannot resolve, goes to rule 4).
3. Otherwise, with a GPU visible, torch's own default applies: the
   architectures of the visible GPUs.
4. Otherwise (a login node, a container build) the architectures the torch
   build itself ships kernels for (``torch.cuda.get_arch_list()``), less those
   the local nvcc cannot compile, with ``+PTX`` on the newest so that GPUs
   newer than all of them still run the kernels (JIT-compiled by the driver).
   Without this torch indexes an empty list and the build dies. All of the
   list rather than a subset: on two cores nvcc spends about 340 CPU-seconds
   on torch 2.14.1+cu130's six architectures against 155 on one, once per
   install, and a build on a login node is meant for every GPU of the cluster.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ARCH_ENV = "TORCH_CUDA_ARCH_LIST"


@dataclass(frozen=True)
class CudaPlan:
    """What ``setup.py`` does about the CUDA kernels.

    Attributes:
        build: compile ``kernels/cuda``.
        arch_list: value for ``TORCH_CUDA_ARCH_LIST``; None leaves it to torch
            (the variable as the user set it, or the visible GPUs).
        cuda_home: the toolkit root to build with (None when not building).
        reason: one line saying what was chosen and why.
        warning: True when torch is a CUDA build that gets no CUDA kernels.
    """

    build: bool
    arch_list: str | None
    cuda_home: str | None
    reason: str
    warning: bool = False


def arch_list_from_torch(torch_arches: Iterable[str], nvcc_codes: Iterable[str] | None = None) -> list[str]:
    """``['sm_75', 'sm_90', 'compute_90']`` -> ``['7.5', '9.0+PTX']``.

    Only plain ``sm_XY`` entries count: ``compute_*`` is torch's own PTX
    (replaced by ``+PTX`` on the newest kept entry) and arch-specific ones
    (``sm_90a``) would run on one GPU family only; the kernels use no
    family-specific instructions. With ``nvcc_codes`` (what
    ``nvcc --list-gpu-code`` prints), entries the local nvcc cannot compile
    are dropped.
    """
    allowed = None if nvcc_codes is None else set(nvcc_codes)
    numbers = set()
    for arch in torch_arches:
        match = re.fullmatch(r"sm_(\d+)", arch.strip())
        if match and (allowed is None or arch.strip() in allowed):
            numbers.add(int(match.group(1)))
    arches = [f"{number // 10}.{number % 10}" for number in sorted(numbers)]
    if arches:
        arches[-1] += "+PTX"
    return arches


def choose_arch_list(
    env_value: str | None,
    visible_capabilities: Iterable[tuple[int, int]],
    torch_arches: Iterable[str],
    nvcc_codes: Iterable[str] | None = None,
) -> tuple[str | None, str]:
    """Rules 2-4 of the module docstring, on given facts.

    Returns:
        ``(arch_list, reason)``; ``arch_list`` is None when torch's own choice
        (the environment variable or the visible GPUs) stands, and ``""``
        when nothing is left to build for.
    """
    capabilities = sorted(set(visible_capabilities))
    env_value = (env_value or "").strip()
    # torch reads "native" as "the visible GPUs", which fails the same way with none visible.
    if env_value and not (env_value == "native" and not capabilities):
        return None, f"{ARCH_ENV}={env_value}, as set"
    if capabilities:
        shown = ";".join(f"{major}.{minor}" for major, minor in capabilities)
        return None, f"the visible GPUs ({shown}), torch's default; {ARCH_ENV} overrides"
    torch_arches = list(torch_arches)
    arches = arch_list_from_torch(torch_arches, nvcc_codes)
    listed = " ".join(torch_arches) or "none"
    if not arches:
        return "", f"no GPU is visible and this nvcc compiles none of torch's architectures ({listed}); set {ARCH_ENV}"
    return ";".join(arches), (
        f"{';'.join(arches)}: no GPU is visible, so torch's own architectures ({listed}) "
        f"that this nvcc compiles; {ARCH_ENV} overrides"
    )


def _run(command: list[str]) -> str | None:
    """stdout and stderr of ``command``, None when it cannot run or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout + done.stderr


def _has_headers(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))


def find_cuda_home(torch_guess: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The CUDA toolkit root: ``CUDA_HOME``/``CUDA_PATH`` if set, else torch's guess.

    torch guesses the parent of the folder of the ``nvcc`` on ``PATH``. When
    that ``nvcc`` is a wrapper script (``/usr/local/bin/nvcc`` execing the
    real one; module systems on clusters) the guess has no headers or
    libraries and linking fails (``cannot find -lcudart``), so the root that
    nvcc itself reports (``TOP`` in ``nvcc --dryrun``) replaces it.
    """
    explicit = environ.get("CUDA_HOME") or environ.get("CUDA_PATH")
    if explicit:
        return explicit
    if torch_guess is None or _has_headers(torch_guess):
        return torch_guess
    dryrun = _run([os.path.join(torch_guess, "bin", "nvcc"), "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull])
    match = re.search(r"^#\$ TOP=(.+)$", dryrun or "", re.MULTILINE)
    if match and _has_headers(match.group(1).strip()):
        return os.path.normpath(match.group(1).strip())
    return torch_guess


def nvcc_version(cuda_home: str) -> str | None:
    """``"13.0"`` from ``nvcc --version``, None when nvcc does not answer."""
    output = _run([os.path.join(cuda_home, "bin", "nvcc"), "--version"])
    match = re.search(r"release (\d+\.\d+)", output or "")
    return match.group(1) if match else None


def nvcc_gpu_codes(cuda_home: str) -> list[str] | None:
    """``nvcc --list-gpu-code`` (``sm_75``, ...); None for an nvcc without the flag."""
    output = _run([os.path.join(cuda_home, "bin", "nvcc"), "--list-gpu-code"])
    return output.split() if output else None


def plan_cuda(environ: Mapping[str, str] = os.environ) -> CudaPlan:
    """Applies the module docstring's rule to this machine's torch and toolkit."""
    import torch
    from torch.utils import cpp_extension

    if environ.get("MAST_FORCE_CPU", "0") == "1":
        return CudaPlan(False, None, None, "CPU kernels only: MAST_FORCE_CPU=1")
    if torch.version.cuda is None:
        return CudaPlan(False, None, None, f"CPU kernels only: torch {torch.__version__} is not a CUDA build")
    cpu_only = (
        "; building the CPU kernels only (CUDA tensors will use the pure-PyTorch operators; "
        "MAST_FORCE_CPU=1 makes this choice without the warning)"
    )
    cuda_home = find_cuda_home(cpp_extension.CUDA_HOME, environ)
    toolkit = nvcc_version(cuda_home) if cuda_home else None
    if toolkit is None:
        return CudaPlan(
            False, None, None,
            f"torch {torch.__version__} is a CUDA {torch.version.cuda} build but no CUDA toolkit (nvcc) "
            f"was found (set CUDA_HOME){cpu_only}",
            warning=True,
        )
    if toolkit.split(".")[0] != torch.version.cuda.split(".")[0]:
        return CudaPlan(
            False, None, None,
            f"the CUDA toolkit at {cuda_home} is CUDA {toolkit} but torch {torch.__version__} was built "
            f"with CUDA {torch.version.cuda}; torch cannot build extensions across CUDA major versions "
            f"(install a CUDA {torch.version.cuda.split('.')[0]}.x toolkit and point CUDA_HOME at it){cpu_only}",
            warning=True,
        )
    visible = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    arch_list, reason = choose_arch_list(
        environ.get(ARCH_ENV), visible, torch.cuda.get_arch_list(), nvcc_gpu_codes(cuda_home)
    )
    if arch_list == "":
        return CudaPlan(False, None, None, f"{reason}{cpu_only}", warning=True)
    return CudaPlan(True, arch_list, cuda_home, f"CUDA kernels for {reason} (CUDA {toolkit} toolkit at {cuda_home})")
