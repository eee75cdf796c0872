"""``mast info``: what this installation runs on, for bug reports and for checking a set-up.

Prints the versions of mast, Python, torch and CUDA, the devices torch sees,
which implementation of the operators serves each device type and why
(``mast.ops.backend`` / ``backend_reason``), the threads torch uses, and the
backbones shipped with the package (``--checkpoint cpu-hour``) with their size.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions, devices, the operators' backend and threads",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run)


def report() -> list[tuple[str, str]]:
    """``(what, value)`` lines of the report."""
    import os
    import platform

    import torch

    import mast.ops as ops
    from mast._version import __version__
    from mast.models.shipped import SHIPPED, shipped_file

    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    lines = [("mast", __version__), ("python", platform.python_version()), ("torch", torch.__version__),
             ("torch CUDA build", torch.version.cuda or "none (a CPU-only build)"),
             ("CUDA devices", ", ".join(devices) or "none visible")]
    lines += [(f"ops backend ({device})", f"{ops.backend(device)}: {ops.backend_reason(device)}")
              for device in ("cpu", "cuda")]
    lines.append(("threads", f"{torch.get_num_threads()} of {os.cpu_count()} CPUs (torch.set_num_threads)"))
    lines += [(f"backbone {name}", f"shipped: {shipped_file(name)} ({shipped_file(name).stat().st_size / 2**20:.1f} MiB)"
               if shipped_file(name).is_file() else f"missing: {shipped_file(name)} (a broken installation)")
              for name in SHIPPED]
    return lines


def run(args: argparse.Namespace) -> int:
    lines = report()
    width = max(len(what) for what, _ in lines)
    for what, value in lines:
        print(f"{what:<{width}}  {value}")
    return 0
