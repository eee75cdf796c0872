"""How many CPU threads a command computes with, and how to set that for one piece of work.

Several torch processes on one machine each start as many threads as there
are cores, and then mostly wait on each other (oversubscription): two such
processes on 2 cores run several times slower per frame than one alone
(``benchmarks/threads.py`` measures it; docs/setup.md says how to share a
machine). ``using_threads`` sets torch's intra-op threads, which also run
the ``mast._C`` CPU kernels (they split their work with ``at::parallel_for``),
and OpenCV's; ``start_worker_process`` is the one set-up of a worker
process of a pool.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from mast.common.errors import ArgumentError


def threads_in_use() -> int | None:
    """torch's intra-op thread count, or None while torch is not loaded (nothing has computed yet)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


@contextlib.contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """torch and OpenCV compute with ``threads`` threads inside the block; their counts are restored after.

    torch's inter-op pool is left alone: its size can be set only once per
    process, before any parallel work, and mast's work does not use it.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentError("threads", f"must be a whole number >= 1, got {threads!r}")
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def start_worker_process() -> None:
    """The set-up of each worker process of a pool (a DataLoader's, a process pool's), run first in it.

    One thread each for torch and OpenCV: the workers already share the cores.
    Ctrl-C is left to the parent process, which stops its workers: a worker
    interrupted itself would print a traceback of its own, and the parent would
    see it die. For the same reason a failure of the thread that hands tensors to
    the parent (``multiprocessing.resource_sharer``) is not reported by the
    worker: it fails when the parent stops listening mid-handshake, which a
    Ctrl-C does (a lost connection, a closed descriptor, a cut authentication),
    and while the parent still listens it sees the failed hand-over itself.
    """
    import cv2

    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The sharing thread catches its own failures and hands them to sys.excepthook directly
    # (multiprocessing.resource_sharer._serve), so threading.excepthook never sees them.
    sys.excepthook = _parent_gone_is_no_fault(sys.excepthook)


def _parent_gone_is_no_fault(report):
    """``sys.excepthook`` that drops the failures reported from the tensor-sharing thread (see
    :func:`start_worker_process`) and passes every other thread's to ``report``."""

    def hook(exc_type, exc, traceback) -> None:
        if not threading.current_thread().name.endswith("(_serve)"):
            report(exc_type, exc, traceback)

    return hook
