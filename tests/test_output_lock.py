"""One writer per output folder: a second process is refused naming the first one's PID, and
the lock of a killed process is taken over (mast.common.locks)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mast
from mast.cli.main import main
from mast.common.locks import LOCK_NAME, lock_folder, release_all, unlock_folder
from tests.test_output_safety import davis, propagate, tree_digest  # noqa: F401 (davis is a fixture)
from tests.test_train import TINY, videos  # noqa: F401 (videos is a fixture)

ENVIRONMENT = dict(os.environ, PYTHONPATH=str(Path(mast.__file__).parents[1]), OMP_NUM_THREADS="1")

# A second process writing OUT as propagate does: checked (locked), started, then waiting.
_HOLD_PROPAGATE = """
import sys
from mast.common.outputs import OutputFolder
folder = OutputFolder(sys.argv[1], "propagate", {"tracker": "another"}).check()
folder.start()
print("started", flush=True)
sys.stdin.read()
"""


def _error_line(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith(f"mast {command}: error: "), lines
    return lines[-1]


def _wait_for_lock(path: Path, process: subprocess.Popen, seconds: float = 240) -> None:
    """Until ``process`` has written its PID into the lock file ``path``."""
    deadline = time.monotonic() + seconds
    while not (path.is_file() and path.read_text().strip() == str(process.pid)):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the first writer never took the lock"
        time.sleep(0.05)


def test_a_second_propagate_is_refused_naming_the_first_ones_pid(davis, tmp_path, capsys):
    out = tmp_path / "results"
    first = subprocess.Popen([sys.executable, "-c", _HOLD_PROPAGATE, str(out)], env=ENVIRONMENT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "started\n", first.stderr.read()
        before = tree_digest(out)
        assert propagate(davis, out, "--overwrite") == 2
        assert (f"--out: {out} is being written by another mast process (PID {first.pid}); wait for it to end "
                "or choose another folder") in _error_line(capsys, "propagate")
        assert tree_digest(out) == before and (out / LOCK_NAME).read_text() == f"{first.pid}\n"
    finally:
        first.communicate("")
    assert first.returncode == 0 and not (out / LOCK_NAME).exists()  # released at exit, and removed
    assert propagate(davis, out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "run.json"]


def test_a_stale_lock_of_a_dead_process_is_taken_over(davis, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{dead.pid}\n")  # all that a killed writer leaves: no record
    assert propagate(davis, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "run.json"]


def test_a_second_pretrain_is_refused_then_a_killed_ones_lock_is_recovered(videos, tmp_path, capsys):
    out = tmp_path / "run"
    sets = [item for override in [*TINY, "phases=[{name: a, mode: pairs, steps: 100000, lr: 0.001}]"]
            for item in ("--set", override)]
    argv = ["pretrain", "--data", str(videos), "--out", str(out), *sets]
    code = f"import sys; from mast.cli.main import main; sys.exit(main({argv!r}))"
    first = subprocess.Popen([sys.executable, "-c", code], env=ENVIRONMENT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock(out / LOCK_NAME, first)
        assert main([*argv, "--overwrite"]) == 2
        assert f"is being written by another mast process (PID {first.pid})" in _error_line(capsys, "pretrain")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert (out / LOCK_NAME).exists()  # a kill -9 leaves the file, not the lock
    one_step = ["--set", "phases=[{name: a, mode: pairs, steps: 1, lr: 0.001}]"]
    assert main([*argv, *one_step]) == 0  # no checkpoint yet: the killed run starts again
    assert not (out / LOCK_NAME).exists() and (out / "backbone.pt").is_file()


def test_a_lock_file_mast_did_not_write_is_refused_and_kept(davis, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / LOCK_NAME).write_text("my notes\n")
    assert propagate(davis, out) == 2
    assert "is not a mast lock file" in _error_line(capsys, "propagate")
    assert (out / LOCK_NAME).read_text() == "my notes\n"


def test_a_process_takes_its_own_lock_again_and_releases_at_zero(tmp_path):
    lock_folder(tmp_path)
    lock_folder(tmp_path)
    unlock_folder(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    unlock_folder(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    lock_folder(tmp_path)
    release_all()
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("command", ["visualize", "demo"])
def test_every_writing_command_takes_the_lock(davis, tmp_path, capsys, command):
    results = tmp_path / "results"
    assert propagate(davis, results) == 0
    out = tmp_path / "out"
    out.mkdir()
    first = subprocess.Popen([sys.executable, "-c", "import sys; from mast.common.locks import lock_folder; "
                              "lock_folder(sys.argv[1]); print('locked', flush=True); sys.stdin.read()", str(out)],
                             env=ENVIRONMENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "locked\n"
        if command == "visualize":
            argv = ["visualize", "--davis", str(davis), "--results", str(results), "--out", str(out)]
        else:
            argv = ["demo", "--out", str(out), "--steps", "1"]
        assert main(argv) == 2
        assert f"(PID {first.pid})" in _error_line(capsys, command)
    finally:
        first.communicate("")
    assert sorted(p.name for p in out.iterdir()) == []


_HOLD_LOCK = """
import sys
from mast.common.locks import lock_folder
lock_folder(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def test_evaluate_refuses_a_folder_another_process_is_writing(davis, tmp_path, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out) == 0
    writer = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], env=ENVIRONMENT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "locked\n", writer.stderr.read()
        capsys.readouterr()
        assert main(["evaluate", "--davis", str(davis), "--results", str(out)]) == 2
        assert f"(PID {writer.pid})" in _error_line(capsys, "evaluate")
        assert not list(out.glob("*.csv"))
    finally:
        writer.communicate("")
    assert main(["evaluate", "--davis", str(davis), "--results", str(out)]) == 0
    assert len(list(out.glob("*.csv"))) == 2 and not (out / LOCK_NAME).exists()
