"""Build script of mast's C++/CUDA extension ``mast._C`` (the package's metadata is in pyproject.toml).

The CPU kernels (``kernels/cpu``) always build. Whether the CUDA kernels
(``kernels/cuda``) build, and for which GPU architectures, is decided by
``mast_build.plan_cuda`` (its docstring has the rule) and printed as a
``mast build:`` line. A failed extension build leaves a working package:
a failed CUDA build retries with the CPU kernels only, and a failed CPU build
leaves the pure-PyTorch operators (``mast.ops.backend()`` says which is live).
``MAST_REQUIRE_EXTENSION=1`` turns either failure into an error; it requires
the extension, and its CUDA kernels only where the plan says they can build.
"""
import glob
import os
import sys

from setuptools import setup

try:
    from torch.utils import cpp_extension
except ImportError as error:  # --no-build-isolation builds against the torch already installed
    sys.exit(f"mast's build imports torch, which is missing ({error}): install torch first, e.g. `pip install torch`")

ROOT = os.path.dirname(os.path.abspath(__file__))
# PEP 517 backends do not put the project folder on sys.path, and mast_build lives there.
sys.path.insert(0, ROOT)
import mast_build  # noqa: E402

CUDA_PLAN = mast_build.plan_cuda()
if CUDA_PLAN.build:
    if CUDA_PLAN.arch_list:
        # torch's BuildExtension reads the list from the environment when it compiles.
        os.environ[mast_build.ARCH_ENV] = CUDA_PLAN.arch_list
    # torch reads this module global when it compiles and links; its own guess
    # may be the folder of a wrapper nvcc, without headers or libraries.
    cpp_extension.CUDA_HOME = CUDA_PLAN.cuda_home


def _require_extension() -> bool:
    return os.environ.get("MAST_REQUIRE_EXTENSION", "0") == "1"


def _extension(cuda: bool):
    sources = sorted(glob.glob(os.path.join("kernels", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("kernels", "cpu", "*.cpp")))
    # Edits to the headers trigger a rebuild.
    headers = sorted(glob.glob(os.path.join("kernels", "*.h")) + glob.glob(os.path.join("kernels", "cpu", "*.h")))
    cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is torch's choice
    if cuda:
        sources += sorted(glob.glob(os.path.join("kernels", "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            "mast._C",
            sources,
            define_macros=[("MAST_WITH_CUDA", None)],
            depends=headers,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "mast._C",
        sources,
        depends=headers,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


def _say(message: str) -> None:
    # stderr, unbuffered: pip shows it with -v, and scripts/setup_env.sh greps its log for it.
    sys.stderr.write(f"mast build: {message}\n")
    sys.stderr.flush()


class BuildExtensionOrFallback(cpp_extension.BuildExtension):
    """Builds ``mast._C``; on failure falls back to the CPU kernels, then to pure PyTorch."""

    def run(self):
        _say(("WARNING: " if CUDA_PLAN.warning else "") + CUDA_PLAN.reason)
        try:
            super().run()
            return
        except Exception as error:  # compiler missing or too new, kernel bug, ...
            if _require_extension():
                raise
            failure = error
        if CUDA_PLAN.build:
            _say(
                f"WARNING: building the CUDA kernels failed ({type(failure).__name__}: {failure}); "
                "retrying with the CPU kernels only"
            )
            self.extensions = [_extension(cuda=False)]
            try:
                super().run()
                return
            except Exception as error:
                failure = error
        _say(
            f"WARNING: building the mast._C extension failed ({type(failure).__name__}: {failure}); "
            "mast will run its pure-PyTorch operators instead (slower, more memory). "
            "Set MAST_REQUIRE_EXTENSION=1 to make this an error."
        )


# The metadata (name, version, dependencies, the `mast` command) is in pyproject.toml.
setup(
    ext_modules=[_extension(cuda=CUDA_PLAN.build)],
    cmdclass={"build_ext": BuildExtensionOrFallback},
)
