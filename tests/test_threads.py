"""``--threads N``: taken by every command that computes, applied while it runs, recorded, refused below 1."""
from __future__ import annotations

import json
import signal

import cv2
import pytest
import torch

QUICK_COMMANDS = ("config", "info")
from mast.cli.main import build_parser, main
from mast.common.errors import ArgumentError
from mast.common.threads import threads_in_use, using_threads
from mast.data.clips import make_loader
from tests.test_api import write_davis
from tests.test_train import videos  # noqa: F401 (a fixture)
from tests.test_train_safety import SETS

LONG_COMMANDS = ("pretrain", "finetune", "train-baseline", "centroids", "propagate", "evaluate", "visualize", "demo")


@pytest.fixture
def two_threads():
    """torch at 2 threads, so that a command at 1 is seen to change it; the count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _commands() -> dict:
    parser = build_parser()
    return next(action for action in parser._actions if action.dest == "command").choices


def test_every_command_that_computes_takes_threads_and_only_those():
    commands = _commands()
    assert set(LONG_COMMANDS) <= set(commands)
    for name, command in commands.items():
        assert ("--threads N" in command.format_help()) == (name not in QUICK_COMMANDS), name
    args = build_parser().parse_args(["propagate", "--davis", "DAVIS", "--out", "o", "--threads", "3"])
    assert args.threads == 3
    assert build_parser().parse_args(["evaluate", "--davis", "D", "--results", "r"]).threads is None


def test_propagate_runs_under_the_threads_given_and_records_them(tmp_path, two_threads):
    davis = write_davis(tmp_path / "DAVIS")
    assert main(["propagate", "--davis", str(davis), "--preset", "quick", "--threads", "1",
                 "--out", str(tmp_path / "one")]) == 0
    assert torch.get_num_threads() == 2  # restored once the command is done
    assert main(["propagate", "--davis", str(davis), "--preset", "quick", "--out", str(tmp_path / "default")]) == 0
    history = {name: json.loads((tmp_path / name / "run.json").read_text())["history"] for name in ("one", "default")}
    assert history["one"][-1]["threads"] == 1 and history["default"][-1]["threads"] == 2


def test_training_runs_under_the_threads_given_and_records_them_in_run_json(videos, tmp_path, two_threads):
    assert main(["pretrain", "--data", str(videos), "--out", str(tmp_path / "run"), *SETS, "--threads", "1"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["history"][-1]["threads"] == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_fewer_than_one_thread_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys, threads):
    davis = write_davis(tmp_path / "DAVIS")
    out = tmp_path / "out"
    assert main(["propagate", "--davis", str(davis), "--threads", threads, "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"mast propagate: error: --threads: must be a whole number >= 1, got {threads}"]
    assert not out.exists()


def test_using_threads_sets_torch_and_opencv_and_restores_both(two_threads):
    opencv_before = cv2.getNumThreads()
    with using_threads(1):
        assert torch.get_num_threads() == threads_in_use() == 1 and cv2.getNumThreads() == 1
    assert torch.get_num_threads() == 2 and cv2.getNumThreads() == opencv_before
    for wrong in (0, 1.5, True):
        with pytest.raises(ArgumentError, match="threads: must be a whole number >= 1"):
            with using_threads(wrong):
                pass


class _WorkerProbe(torch.utils.data.Dataset):
    """Items that say whether the process reading them ignores Ctrl-C and computes on one thread."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> bool:
        return signal.getsignal(signal.SIGINT) == signal.SIG_IGN and torch.get_num_threads() == 1


def test_loader_workers_compute_on_one_thread_and_leave_ctrl_c_to_the_parent(two_threads):
    """A terminal's Ctrl-C reaches every process of the group: a worker that took it would print
    its own traceback and die, and the parent then reports a dead worker instead of the interrupt."""
    parent = signal.getsignal(signal.SIGINT)
    assert list(make_loader(_WorkerProbe(), batch_size=1, num_workers=1, collate=lambda items: items[0])) == [True] * 2
    assert signal.getsignal(signal.SIGINT) is parent and torch.get_num_threads() == 2  # the parent's, untouched


def test_evaluate_with_threads_and_no_processes_scores_with_that_many_workers(tmp_path, monkeypatch):
    import shutil

    import mast.eval.davis as davis_module

    davis = write_davis(tmp_path / "DAVIS")
    for kind in ("JPEGImages", "Annotations"):
        shutil.copytree(davis / kind / "480p" / "bear", davis / kind / "480p" / "bear2")
    (davis / "ImageSets" / "2017" / "val.txt").write_text("bear\nbear2\n")
    results = tmp_path / "results"
    assert main(["propagate", "--davis", str(davis), "--preset", "quick", "--out", str(results)]) == 0
    pools = []
    real_pool = davis_module.ProcessPoolExecutor
    monkeypatch.setattr(davis_module, "ProcessPoolExecutor",
                        lambda **options: pools.append(options) or real_pool(**options))  # counts, then the real pool
    assert main(["evaluate", "--davis", str(davis), "--results", str(results), "--threads", "1"]) == 0
    assert pools == []  # one thread: scored inline
    assert main(["evaluate", "--davis", str(davis), "--results", str(results), "--threads", "2"]) == 0
    assert [options["max_workers"] for options in pools] == [2]


def test_a_worker_reports_every_thread_failure_but_the_tensor_sharing_thread_s():
    """multiprocessing.resource_sharer's thread (``Thread-N (_serve)``) reports what a cut hand-over
    raises through ``sys.excepthook`` itself; the worker's hook drops exactly those."""
    import threading

    from mast.common.threads import _parent_gone_is_no_fault

    reported = []
    hook = _parent_gone_is_no_fault(lambda exc_type, exc, traceback: reported.append(
        (threading.current_thread().name, exc_type)))

    def report_from(name: str, errors: tuple[type[BaseException], ...]) -> None:
        thread = threading.Thread(name=name, target=lambda: [hook(error, error(), None) for error in errors])
        thread.start()
        thread.join()

    report_from("Thread-1 (_serve)", (EOFError, ConnectionResetError, OSError, RuntimeError))  # a cut hand-over varies
    report_from("Thread-2 (load)", (OSError,))
    hook(ValueError, ValueError(), None)
    assert reported == [("Thread-2 (load)", OSError), (threading.current_thread().name, ValueError)]
