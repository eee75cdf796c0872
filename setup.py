"""Build script for mast and its C++/CUDA extension ``mast._C``.

The CPU kernels (``kernels/cpu``) always build; the CUDA kernels
(``kernels/cuda``) build only when torch itself is a CUDA build and a CUDA
toolkit is found. A failed extension build leaves a working package that
runs the pure-PyTorch operators (``mast.ops.backend()`` says which is live),
unless ``MAST_REQUIRE_EXTENSION=1``, which turns the failure into an error.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

import torch
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    if os.environ.get("MAST_FORCE_CPU", "0") == "1":
        return False
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _extension():
    sources = sorted(glob.glob(os.path.join("kernels", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("kernels", "cpu", "*.cpp")))
    # Edits to the headers trigger a rebuild.
    headers = sorted(glob.glob(os.path.join("kernels", "*.h")) + glob.glob(os.path.join("kernels", "cpu", "*.h")))
    cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is torch's choice
    define_macros = []
    if _want_cuda():
        sources += sorted(glob.glob(os.path.join("kernels", "cuda", "*.cu")))
        define_macros.append(("MAST_WITH_CUDA", None))
        return cpp_extension.CUDAExtension(
            "mast._C",
            sources,
            define_macros=define_macros,
            depends=headers,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "mast._C",
        sources,
        define_macros=define_macros,
        depends=headers,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


class BuildExtensionOrFallback(cpp_extension.BuildExtension):
    """Builds ``mast._C``; on failure warns and falls back to pure PyTorch."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # compiler missing, toolkit mismatch, ...
            if os.environ.get("MAST_REQUIRE_EXTENSION", "0") == "1":
                raise
            sys.stderr.write(
                "\nWARNING: building the mast._C extension failed "
                f"({type(error).__name__}: {error}).\n"
                "mast will run its pure-PyTorch operators instead (slower, more memory).\n"
                "Set MAST_REQUIRE_EXTENSION=1 to make this an error.\n\n"
            )


def _version() -> str:
    with open(os.path.join(ROOT, "mast", "_version.py")) as f:
        scope: dict = {}
        exec(f.read(), scope)
        return scope["__version__"]


setup(
    name="mast",
    version=_version(),
    description="Self-supervised dense correspondence learning from raw video (MAST, CorrFlow)",
    long_description=open(os.path.join(ROOT, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mast", "mast.*"]),
    package_data={"mast": ["configs/*.yaml"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtensionOrFallback},
    # torch is deliberately unpinned: a library must not choose the user's torch build.
    install_requires=[
        "torch",
        "numpy",
        "kornia",
        "scikit-learn",
        "scikit-image",
        "opencv-python-headless",
        "pillow",
        "pyyaml",
        "tqdm",
        "tensorboard",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["mast=mast.cli.main:main"]},
)
