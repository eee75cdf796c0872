"""Commands that write never destroy their inputs, never mix settings, and clean up after a kill."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mast.cli.main import main
from mast.common.files import is_temporary
from mast.data.synthetic import translating_video
from mast.common.masks import write_palette_png
from tests.test_propagate import make_davis, write_frames


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` by content: compared before and after a command."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def davis(tmp_path) -> Path:
    """A DAVIS-2017 layout with two sequences and ground truth on every frame."""
    videos = {"a": translating_video(5, 64, 64, num_objects=2), "b": translating_video(4, 64, 64, seed=1)}
    root = tmp_path / "davis"
    make_davis(root, videos)
    for name, (_, masks) in videos.items():
        for t, mask in enumerate(masks):
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask.numpy().astype(np.uint8))
    return root


def propagate(davis: Path, out: Path, *flags: str) -> int:
    return main(["propagate", "--davis", str(davis), "--out", str(out), "--preset", "quick", *flags])


@pytest.mark.parametrize("where", ["Annotations/480p", "Annotations", ".", "JPEGImages/480p/a", ".."])
def test_propagate_refuses_an_output_in_or_around_its_inputs(davis, where, capsys):
    before = tree_digest(davis)
    assert propagate(davis, davis / where) == 2
    error = capsys.readouterr().err
    assert "--out" in error and "input --davis" in error and error.count("\n") == 1
    assert tree_digest(davis) == before


def test_visualize_refuses_to_write_over_the_results(davis, tmp_path, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out) == 0
    before = tree_digest(out)
    for target in (out, out / "a", davis / "JPEGImages"):
        assert main(["visualize", "--davis", str(davis), "--results", str(out), "--out", str(target)]) == 2
        assert "error" in capsys.readouterr().err
        assert tree_digest(out) == before
    assert main(["visualize", "--davis", str(davis), "--results", str(out)]) == 0  # RESULTS/overlays
    assert (out / "overlays" / "index.html").is_file() and (out / "overlays" / "a" / "00000.jpg").is_file()
    assert {k: v for k, v in tree_digest(out).items() if not k.startswith("overlays/")} == before


def test_run_record_names_settings_checkpoint_and_files(davis, tmp_path):
    from mast.models.backbone import BackboneConfig, ResNetBackbone

    checkpoint = tmp_path / "backbone.pt"
    ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), feature_dim=8)).save(checkpoint)
    out = tmp_path / "results"
    assert propagate(davis, out, "--checkpoint", str(checkpoint), "--cosine", "--temperature", "0.05") == 0
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "propagate" and record["mast_version"]
    assert record["settings"]["tracker"] == "backbone:sha256:" + hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert record["settings"]["protocol"]["engine"]["temperature"] == 0.05
    assert record["settings"]["protocol"]["engine"]["normalize"]
    assert "--cosine" in record["history"][0]["argv"] and record["history"][0]["frames_per_second"] > 0
    assert set(record["files"]) == {str(p.relative_to(out)) for p in out.rglob("*.png")}


def test_other_settings_are_refused_then_overwrite_removes_only_what_mast_wrote(davis, tmp_path, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out) == 0
    assert main(["evaluate", "--davis", str(davis), "--results", str(out), "--processes", "1"]) == 0
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)

    assert propagate(davis, out, "--window", "7", "--sequences", "a") == 2
    error = capsys.readouterr().err
    assert "other settings" in error and "protocol.engine.window" in error and "--overwrite" in error
    assert tree_digest(out) == before

    assert propagate(davis, out, "--window", "7", "--sequences", "a", "--overwrite") == 0
    left = sorted(p.name for p in out.iterdir())
    assert left == ["a", "notes.txt", "run.json"]  # b and the stale CSVs of the other settings are gone
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["settings"]["protocol"]["engine"]["window"] == 7


def test_same_settings_add_sequences_and_foreign_files_are_never_replaced(davis, tmp_path, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out, "--sequences", "a") == 0
    (davis / "ImageSets" / "2017" / "a.txt").write_text("a\n")  # a split of the sequence written so far
    assert main(["evaluate", "--davis", str(davis), "--results", str(out), "--split", "a", "--processes", "1"]) == 0
    assert (out / "global_results-a.csv").is_file()
    assert propagate(davis, out, "--sequences", "b") == 0
    # the CSVs described results that changed: gone
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "run.json"]
    assert len(json.loads((out / "run.json").read_text())["history"]) == 2

    (out / "a" / "mine.txt").write_text("keep")
    before = tree_digest(out)
    assert propagate(davis, out, "--overwrite", "--window", "7") == 2
    assert "mine.txt" in capsys.readouterr().err
    assert tree_digest(out) == before


def test_a_folder_mast_did_not_write_is_refused(davis, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    for flags in ((), ("--overwrite",)):
        assert propagate(davis, out, *flags) == 2
        assert "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_everyday_faults_are_one_line_errors_and_write_nothing(davis, tmp_path, capsys):
    out = tmp_path / "results"
    cases = [
        (["--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "--device"),
        (["--device", "tpu"], "is not a device"),
    ]
    for flags, expected in cases:
        assert propagate(davis, out, *flags) == 2
        error = capsys.readouterr().err
        assert expected in error and error.count("\n") == 1
        assert not out.exists()
    (tmp_path / "file").write_text("x")
    assert propagate(davis, tmp_path / "file") == 2
    assert "is an existing file" in capsys.readouterr().err


def test_every_input_is_checked_before_the_first_output(davis, tmp_path, capsys):
    write_palette_png(davis / "Annotations" / "480p" / "b" / "00000.png", np.zeros((64, 64), np.uint8))
    assert propagate(davis, tmp_path / "results") == 2
    assert "no object" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # a, listed first, was not propagated either

    short = davis / "JPEGImages" / "480p" / "c"
    write_frames(short, translating_video(1, 64, 64)[0])
    write_palette_png(davis / "Annotations" / "480p" / "c" / "00000.png", np.ones((64, 64), np.uint8))
    assert propagate(davis, tmp_path / "results", "--sequences", "a,c") == 2
    assert "at least 2 frames" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_failed_write_is_an_error_and_leaves_no_half_sequence(davis, tmp_path, monkeypatch, capsys):
    import mast.eval.propagate as propagation

    calls = []

    def full_disk(path, ids):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        propagation_write(path, ids)

    propagation_write = propagation.write_palette_png
    monkeypatch.setattr(propagation, "write_palette_png", full_disk)
    out = tmp_path / "results"
    assert propagate(davis, out) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_is_a_clear_error(davis, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert propagate(davis, locked / "results") == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_a_killed_run_leaves_temporaries_that_the_next_run_removes(tmp_path):
    frames, masks = translating_video(300, 64, 64)
    write_frames(tmp_path / "clip", frames)
    write_palette_png(tmp_path / "first.png", masks[0].numpy().astype(np.uint8))
    out = tmp_path / "results"
    argv = ["propagate", "--video", str(tmp_path / "clip"), "--first-mask", str(tmp_path / "first.png"),
            "--out", str(out), "--preset", "quick"]
    code = f"import sys; from mast.cli.main import main; sys.exit(main({argv!r}))"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [p for p in out.glob(".*") if is_temporary(p) and any(p.glob("*.png"))]:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert [p for p in out.iterdir() if is_temporary(p)]

    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip", "run.json"]
    assert len(list((out / "clip").glob("*.png"))) == 300


def test_centroids_refuse_an_output_inside_the_videos(tmp_path, capsys):
    frames, _ = translating_video(4, 32, 32)
    write_frames(tmp_path / "videos" / "clip", frames)
    before = tree_digest(tmp_path / "videos")
    assert main(["centroids", "--data", str(tmp_path / "videos"), "--k", "2",
                 "--out", str(tmp_path / "videos" / "clip" / "c.json")]) == 2
    assert "lies inside the input --data" in capsys.readouterr().err
    assert tree_digest(tmp_path / "videos") == before
