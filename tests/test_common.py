"""The bottom layer: atomic writes, temporaries left by killed processes, device names."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from mast.common.devices import resolve_device
from mast.common.files import (
    atomic_directory, atomic_open, atomic_write_text, atomic_write_with, is_temporary,
    remove_stale_temporaries, temporary_sibling,
)


def test_atomic_open_leaves_the_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_write_with_keeps_the_suffix(tmp_path):
    seen = []
    atomic_write_with(tmp_path / "x.json", lambda p: (seen.append(p), p.write_text("{}")))
    assert seen[0].suffix == ".json" and is_temporary(seen[0])
    assert (tmp_path / "x.json").read_text() == "{}"


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "seq"
    with atomic_directory(target) as staging:
        (staging / "1.png").write_text("new")
    with pytest.raises(ValueError):
        with atomic_directory(target) as staging:
            (staging / "2.png").write_text("partial")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["1.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["seq"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    stale_file = tmp_path / f".last.pt.mast-tmp-{dead}-0123abcd.pt"
    stale_dir = tmp_path / f".bear.mast-tmp-{dead}-89abcdef"
    stale_file.write_text("x")
    stale_dir.mkdir()
    (stale_dir / "00000.png").write_text("x")
    live = temporary_sibling(tmp_path / "mine")  # this process: still writing
    live.write_text("x")
    foreign = [tmp_path / ".hidden", tmp_path / ".x.tmp", tmp_path / "bear", tmp_path / f".y.mast-tmp-{dead}"]
    for path in foreign:
        path.write_text("user")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale_file, stale_dir])
    assert all(path.exists() for path in foreign) and live.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_write_text(tmp_path):
    atomic_write_text(tmp_path / "sub" / "t.txt", "hello")
    assert (tmp_path / "sub" / "t.txt").read_text() == "hello"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device: 'gpu0' is not a device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="train.device: 'mps'"):
        resolve_device("mps", "train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_a_one_line_error():
    with pytest.raises(ValueError, match="CUDA is not available on this machine") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)


class _CallsSystem:
    """Unpickling this would call ``os.system``: a global from a module torch blocks outright."""

    def __reduce__(self):
        import os

        return os.system, ("true",)


def test_a_checkpoint_calling_a_blocked_module_is_called_unsafe_not_damaged(tmp_path):
    from mast.common.checkpoints import load_checkpoint

    torch.save({"state_dict": _CallsSystem()}, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=r"refusing checkpoint .*crafted.pt as unsafe: it holds (posix|os)\.system, .* could run code"):
        load_checkpoint(tmp_path / "crafted.pt")


def test_peak_memory_is_the_rise_above_the_level_before():
    from mast.common.memory import peak_memory

    held = []
    grown, measured = peak_memory(torch.device("cpu"), lambda: held.append(np.ones(64 << 20, np.uint8)))
    if grown is None:
        pytest.skip("this system does not report the peak resident set")
    assert measured == "CPU peak RSS growth" and grown >= 60 << 20  # the 64 MiB written
    still, _ = peak_memory(torch.device("cpu"), lambda: None)
    assert 0 <= still < 16 << 20  # what is already held does not count again
