"""Progress bars on long work, a re-runnable demo, packaged configs by name (issue 24, parts 3, 5, 7)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mast.cli import config as config_cli
from mast.cli.main import main
from mast.eval import davis
from tests.test_evaluate import dataset  # noqa: F401 (a fixture)
from tests.test_train import tiny_config, videos  # noqa: F401 (a fixture)

DEMO = ["--steps", "2", "--train-videos", "2", "--test-videos", "1", "--size", "32", "--frames", "6"]


# -- progress -----------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2])
def test_score_davis_reports_each_sequence_in_order_and_scores_the_same(dataset, processes):  # noqa: F811
    root, results, _, _ = dataset
    seen = []
    reported = davis.score_davis(root, results, processes=processes, on_sequence=lambda *call: seen.append(call))
    assert seen == [("seq-a", 2), ("seq-b", 2)]
    assert reported == davis.score_davis(root, results, processes=1)


def test_evaluate_bar_counts_sequences_on_a_terminal_and_is_quiet_off_one(dataset, capsys, monkeypatch):  # noqa: F811
    root, results, _, _ = dataset
    command = ["evaluate", "--davis", str(root), "--results", str(results), "--processes", "1"]
    assert main(command) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert "2/2" in err and "sequence" in err and "J&F-Mean" in out and "2/2" not in out


def test_a_time_budget_makes_the_training_bar_count_its_seconds(videos, tmp_path, monkeypatch):  # noqa: F811
    import mast.train.loop as loop
    from mast.train.loop import Trainer
    from mast.train.reconstruction import ReconstructionTask

    clock, totals = {"now": 0.0}, []
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=lambda: clock["now"], perf_counter=lambda: clock["now"]))
    real_step, real_bar = Trainer._step, Trainer._progress_bar

    def ten_second_step(self, *args):
        clock["now"] += 10.0
        return real_step(self, *args)

    def recorded_bar(self, *args):
        bar = real_bar(self, *args)
        totals.append(bar)
        return bar

    monkeypatch.setattr(Trainer, "_step", ten_second_step)
    monkeypatch.setattr(Trainer, "_progress_bar", recorded_bar)
    config = tiny_config("phases=[{name: a, mode: pairs, steps: 100000, lr: 0.001}]", "train.time_budget_minutes=1")
    assert Trainer(ReconstructionTask(config, [str(videos)]), tmp_path / "run").run()["steps"] == 6
    assert (totals[0].total, totals[0].n, totals[0].unit) == (60, 60, "s")


# -- the demo, twice ------------------------------------------------------------


def test_the_demo_reruns_into_its_own_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *DEMO]) == 0
    first = torch.load(out / "run" / "backbone.pt", weights_only=True)["state_dict"]
    assert main(["demo", "--out", str(out), *DEMO]) == 0
    again = torch.load(out / "run" / "backbone.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert (out / "results-pixels" / "overlays" / "index.html").is_file()
    assert not list(out.rglob("*.tmp*"))


def test_the_demo_refuses_a_folder_with_foreign_files_and_keeps_them(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), *DEMO]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "notes.txt" in err[0]
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_rerun_refuses_foreign_files_inside_what_the_demo_wrote(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *DEMO]) == 0
    (out / "run" / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), *DEMO]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "run" / "notes.txt").read_text() == "mine" and (out / "run" / "backbone.pt").is_file()


# -- packaged configs -------------------------------------------------------------


@pytest.mark.parametrize("name", ["corrflow.yaml", "corrflow"])
def test_a_bare_name_is_the_packaged_config(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert config_cli.resolve(Path(name)) == config_cli.PACKAGED_CONFIGS / "corrflow.yaml"


def test_a_file_in_the_working_directory_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("corrflow.yaml").write_text("train: {batch_size: 2}\n")
    assert config_cli.resolve(Path("corrflow.yaml")) == Path("corrflow.yaml")
    assert config_cli.resolve(Path("sub/missing.yaml")) == Path("sub/missing.yaml")  # a path: load_config reports it


def test_an_unknown_name_gets_one_line_listing_the_known_ones(tmp_path, monkeypatch, capsys, videos):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    code = main(["pretrain", "--config", "nope", "--data", str(videos), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--config nope" in err[0]
    known = err[0].split("known: ")[1].split(", ")
    assert known == sorted(known) and {"corrflow", "cpu-hour", "mast", "ranet", "ranet-cpu", "siammask-cpu"} <= set(known)
    assert main(["config", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "corrflow" in err[0]


def test_config_list_and_show(capsys):
    assert main(["config", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == config_cli.packaged_names()
    assert any(line.startswith("mast ") and "MAST (Lai et al. 2020)" in line for line in lines)
    assert main(["config", "show", "corrflow"]) == 0
    assert capsys.readouterr().out == (config_cli.PACKAGED_CONFIGS / "corrflow.yaml").read_text()
