"""`mast propagate` resumes: a run stopped between (or inside) sequences keeps the sequences it
finished, and a rerun writes only the rest, changed inputs included, with the files an
uninterrupted run writes (tiny synthetic DAVIS layouts in tmp_path)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mast.cli.main import main
from mast.common.files import is_temporary
from mast.common.masks import write_palette_png
from mast.data.synthetic import translating_video
from tests.test_output_safety import tree_digest
from tests.test_propagate import make_davis

FRAMES = 6
SEQUENCES = ("a", "b", "c")
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture
def davis(tmp_path) -> Path:
    """A DAVIS-2017 layout with three 6-frame 48x48 sequences a, b, c."""
    root = tmp_path / "davis"
    make_davis(root, {name: translating_video(FRAMES, 48, 48, seed=i) for i, name in enumerate(SEQUENCES)})
    return root


def argv(davis: Path, out: Path, *flags: str) -> list[str]:
    return ["propagate", "--davis", str(davis), "--out", str(out), "--preset", "quick", *flags]


def propagate(davis: Path, out: Path, *flags: str) -> int:
    return main(argv(davis, out, *flags))


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """``name: (inode, mtime_ns)`` of every result PNG under ``folder``: a rewritten file changes both."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*.png"))}


def of(sequence: str, table: dict) -> dict:
    return {key: value for key, value in table.items() if key.startswith(f"{sequence}/")}


def entries(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["entries"]


def results(out: Path) -> dict[str, str]:
    return {name: digest for name, digest in tree_digest(out).items() if name != "run.json"}


def test_a_killed_run_resumes_with_only_the_rest_and_the_files_of_an_uninterrupted_run(davis, tmp_path, capsys):
    out = tmp_path / "results"
    # A real process, hard-killed (no clean-up runs) as it writes the second frame of sequence b.
    child = (
        "import os, signal, sys\n"
        "import mast.eval.propagate as propagation\n"
        "from mast.cli.main import main\n"
        "write, written = propagation.write_palette_png, []\n"
        "def write_or_die(path, ids):\n"
        "    written.append(path)\n"
        f"    if len(written) == {FRAMES + 2}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    write(path, ids)\n"
        "propagation.write_palette_png = write_or_die\n"
        f"sys.exit(main({argv(davis, out)!r}))\n"
    )
    killed = subprocess.run([sys.executable, "-c", child], cwd=REPOSITORY, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert set(entries(out)) == {"a"} and sorted(p.name for p in (out / "a").iterdir()) == [
        f"{t:05d}.png" for t in range(FRAMES)]
    assert [p for p in out.iterdir() if is_temporary(p)]  # b's staging folder, left by the kill
    finished = of("a", stamps(out))

    assert propagate(davis, out) == 0
    captured = capsys.readouterr()
    assert f"skipped 1 sequence(s) already in {out}" in captured.out and "--overwrite" in captured.out
    assert "wrote 2 sequence(s)" in captured.out
    remaining = 2 * (FRAMES - 1)
    assert f"{remaining}/{remaining}" in captured.err  # the progress bar counts only what is left
    assert of("a", stamps(out)) == finished  # not rewritten
    assert not [p for p in out.iterdir() if is_temporary(p)]

    reference = tmp_path / "reference"
    assert propagate(davis, reference) == 0
    assert results(out) == results(reference) and len(results(out)) == len(SEQUENCES) * FRAMES
    assert entries(out) == entries(reference)  # the same input identities and frame counts


def test_ctrl_c_inside_a_sequence_keeps_the_finished_ones_and_overlays_cover_every_sequence(
        davis, tmp_path, monkeypatch, capsys):
    import mast.eval.propagate as propagation

    out = tmp_path / "results"
    write, written = propagation.write_palette_png, []

    def write_until_interrupted(path, ids):
        written.append(path)
        if len(written) == FRAMES + 3:
            raise KeyboardInterrupt
        write(path, ids)

    monkeypatch.setattr(propagation, "write_palette_png", write_until_interrupted)
    try:
        code = propagate(davis, out, "--overlay")
    except KeyboardInterrupt:
        code = 130
    assert code == 130
    monkeypatch.setattr(propagation, "write_palette_png", write)
    assert sorted(p.name for p in out.iterdir()) == ["a", "run.json"]  # no half sequence, no temporaries
    assert set(entries(out)) == {"a"}
    capsys.readouterr()

    assert propagate(davis, out, "--overlay") == 0
    assert "skipped 1 sequence(s)" in capsys.readouterr().out
    page = (out / "overlays" / "index.html").read_text()
    for name in SEQUENCES:
        assert f"<h2>{name} " in page
        assert len(list((out / "overlays" / name).glob("*.jpg"))) == FRAMES


def test_changed_or_lost_results_are_redone_and_overwrite_redoes_everything(davis, tmp_path, capsys):
    out = tmp_path / "results"
    assert propagate(davis, out) == 0
    before = stamps(out)

    # b's first annotation changes: b is redone, a and c are not.
    annotation = davis / "Annotations" / "480p" / "b" / "00000.png"
    write_palette_png(annotation, np.roll(translating_video(FRAMES, 48, 48, seed=1)[1][0].numpy(), 3, axis=1)
                      .astype(np.uint8))
    assert propagate(davis, out) == 0
    assert "skipped 2 sequence(s)" in capsys.readouterr().out
    after = stamps(out)
    assert of("a", after) == of("a", before) and of("c", after) == of("c", before)
    assert all(after[name] != stamp for name, stamp in of("b", before).items())

    # a frame file of c is rewritten (same pixels, a new time), and a result of a is lost: both are redone.
    frame = davis / "JPEGImages" / "480p" / "c" / "00003.jpg"
    frame.write_bytes(frame.read_bytes())
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    (out / "a" / "00004.png").unlink()
    before = stamps(out)
    assert propagate(davis, out) == 0
    assert "skipped 1 sequence(s)" in capsys.readouterr().out
    after = stamps(out)
    assert of("b", after) == of("b", before) and (out / "a" / "00004.png").is_file()
    assert all(after[name] != stamp for name, stamp in {**of("a", before), **of("c", before)}.items())

    # Nothing changed: nothing is written; --overwrite redoes every sequence.
    assert propagate(davis, out) == 0
    assert "skipped 3 sequence(s)" in capsys.readouterr().out and stamps(out) == after
    assert propagate(davis, out, "--overwrite") == 0
    assert "skipped" not in capsys.readouterr().out
    assert all(stamps(out)[name] != stamp for name, stamp in after.items())
