"""The `mast` command: help for every sub-command, and the demo end to end."""
import pytest

from mast.cli.main import SUBCOMMANDS, build_parser, main
from mast.models.backbone import ResNetBackbone
from tests.test_train import TINY, videos  # noqa: F401 (videos is a fixture)


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    names = {"demo", "pretrain", "finetune", "centroids", "propagate", "evaluate", "visualize", "config", "info"}
    assert names <= set(parser._subparsers._group_actions[0].choices)
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: mast " + name in capsys.readouterr().out
    assert set(SUBCOMMANDS) == {"demo", "train", "centroids", "propagate", "evaluate", "visualize", "config", "info",
                                "convert", "compare", "extract_frames"}


def test_demo_pretrains_propagates_scores_and_draws(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "4", "--train-videos", "2", "--test-videos", "1", "--size", "64",
                 "--frames", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.startswith(("trained", "pixels"))}
    assert set(rows) == {"trained", "pixels"} and all(0 <= float(row[1]) <= 1 for row in rows.values())
    from mast.common.checkpoints import load_checkpoint

    # configs/demo.yaml's propagation knobs travel in the checkpoint (training config -> backbone.pt)
    assert load_checkpoint(out / "run" / "backbone.pt")["propagation"] == {"normalize": True, "temperature": 0.05,
                                                                           "topk": 16}
    for model in ("trained", "pixels"):
        assert (out / f"results-{model}" / "global_results-val.csv").is_file()
        assert (out / f"results-{model}" / "overlays" / "index.html").is_file()
    assert str(out / "results-trained" / "overlays" / "index.html") in printed
    # A rerun, here with other settings, replaces what the earlier demo wrote (tests/test_progress_configs.py).
    assert main(["demo", "--steps", "2", "--train-videos", "1", "--test-videos", "1", "--size", "32",
                 "--frames", "6", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "videos" / "train").iterdir()) == ["video00"]


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def _propagate_args(*flags):
    return build_parser().parse_args(["propagate", "--video", "v.mp4", "--out", "o", *flags])


def _propagate_tracker(*flags, checkpoint=None):
    """The tracker ``mast propagate`` builds from ``flags`` (``checkpoint``: a backbone in memory)."""
    from mast.cli.propagate import tracker_settings
    from mast.models.builder import load_tracker

    args = _propagate_args(*flags)
    return load_tracker(args.model, checkpoint, args.preset, "cpu", **tracker_settings(args))


def test_propagate_protocol_flags_override_the_preset():
    config = _propagate_tracker("--cosine", "--temperature", "0.05", "--topk", "16", "--no-roi",
                                checkpoint=ResNetBackbone()).config
    engine = config.engine
    assert (engine.normalize, engine.temperature, engine.topk, engine.roi_localisation) == (True, 0.05, 16, False)
    assert _propagate_tracker("--preset", "crw", "--dot", checkpoint=ResNetBackbone()).config.engine.normalize is False
    assert _propagate_tracker("--preset", "crw", "--topk", "0", checkpoint=ResNetBackbone()).config.engine.topk is None
    baseline = _propagate_tracker().config.engine
    assert (baseline.normalize, baseline.topk, baseline.temperature) == (False, 16, 0.01)


def test_propagate_errors_name_the_flag_of_a_library_argument(tmp_path, capsys):
    from mast.data.synthetic import translating_video
    from tests.test_propagate import write_frames

    frames, _ = translating_video(num_frames=3, height=32, width=32)
    write_frames(tmp_path / "clip", frames)
    base = ["propagate", "--video", str(tmp_path / "clip"), "--first-box", "4,4,8,8"]
    assert main([*base, "--window", "4", "--out", str(tmp_path / "out")]) == 2
    assert "--window: must be an odd integer >= 1, got 4" in capsys.readouterr().err
    assert main([*base, "--device", "tpu", "--out", str(tmp_path / "out")]) == 2
    assert "--device: 'tpu' is not a device" in capsys.readouterr().err
    assert main([*base, "--box-from", "rotated", "--out", str(tmp_path / "out")]) == 2
    assert "--box-from: not a propagation setting of model mast" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cosine_is_refused_for_the_pixel_baseline(tmp_path, capsys):
    from mast.data.synthetic import translating_video
    from tests.test_propagate import write_frames

    frames, _ = translating_video(num_frames=3, height=32, width=32)
    write_frames(tmp_path / "clip", frames)
    code = main(["propagate", "--video", str(tmp_path / "clip"), "--first-box", "4,4,8,8",
                 "--cosine", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--cosine" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_quick_preset_is_frame_zero_and_three_previous_without_roi():
    config = _propagate_tracker("--preset", "quick").config
    assert (config.policy.long_term, config.policy.short_term) == ((0,), (1, 2, 3))
    assert (config.engine.window, config.engine.roi_localisation) == (13, False)
    assert (config.engine.topk, config.engine.temperature) == (16, 0.01)  # the pixel baseline's knobs still apply


def test_help_does_not_import_torch():
    """`mast --help` and every sub-command's parser stay light: torch loads when a command runs."""
    import subprocess
    import sys

    code = ("import sys; from mast.cli.main import build_parser; build_parser(); "
            "heavy = sorted(m for m in ('torch', 'cv2', 'sklearn', 'kornia') if m in sys.modules); print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cli_preset_and_model_names_are_the_library_ones():
    from mast.cli.propagate import MODEL_NAMES, PRESET_NAMES
    from mast.models.builder import TRACKERS
    from mast.models.protocol import PRESETS

    assert PRESET_NAMES == tuple(PRESETS) and MODEL_NAMES == tuple(TRACKERS)


def test_a_first_annotation_with_davis_is_refused(tmp_path, capsys):
    code = main(["propagate", "--davis", str(tmp_path), "--first-box", "1,1,4,4", "--out", str(tmp_path / "out")])
    assert code == 2 and "--first-mask/--first-box annotate a --video" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_info_names_the_versions_and_why_each_device_has_its_backend(capsys):
    import torch

    import mast.ops as ops

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch               {torch.__version__}" in out
    assert f"ops backend (cpu)   {ops.backend('cpu')}: {ops.backend_reason('cpu')}" in out
    assert "backbone cpu-hour   shipped: " in out and "cpu-hour.pt (2.6 MiB)" in out
    if not torch.cuda.is_available():
        assert "CUDA devices        none visible" in out and "ops backend (cuda)  pytorch: " in out


@pytest.mark.parametrize("flags, message", [(["--steps", "0"], "--steps must be >= 1, got 0"),
                                            (["--frames", "2"], "--frames must be >= 3, got 2"),
                                            (["--size", "8"], "--size must be >= 32, got 8")])
def test_demo_arguments_are_checked_before_anything_is_written(tmp_path, capsys, flags, message):
    assert main(["demo", *flags, "--out", str(tmp_path / "demo")]) == 2
    assert f"mast demo: error: {message}" in capsys.readouterr().err and not (tmp_path / "demo").exists()



def _interrupted(command: list[str], started: str) -> tuple[int, str]:
    """Runs ``mast COMMAND`` in a process group of its own, presses Ctrl-C once ``started`` is on
    its stderr (SIGINT to the whole group, as a terminal sends it), and returns its status and stderr."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # Ctrl-C as a terminal's foreground job gets it, even when these tests run as a background job
    # (whose shell set SIGINT to "ignore", which a child inherits and Python then keeps).
    process = subprocess.Popen([sys.executable, "-m", "mast", *command], stderr=subprocess.PIPE, env=env,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(process.stderr.fileno(), 4096), b"")))
    reader.start()
    while started not in b"".join(chunks).decode(errors="replace") and process.poll() is None:
        threading.Event().wait(0.02)
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    reader.join(timeout=60)
    return process.returncode, b"".join(chunks).decode(errors="replace")


def test_ctrl_c_during_propagation_is_one_line_and_status_130_and_no_half_written_sequence(tmp_path):
    from tests.test_api import write_davis

    davis = write_davis(tmp_path / "DAVIS", num_frames=150, size=96)  # seconds of work at 30 frames/s
    out = tmp_path / "out"
    status, stderr = _interrupted(["propagate", "--davis", str(davis), "--threads", "1", "--out", str(out)],
                                  started="frame/s")
    assert status == 130 and "Traceback" not in stderr, stderr
    assert stderr.rstrip().endswith("mast propagate: interrupted")
    assert [path.name for path in out.iterdir()] == ["run.json"]  # the sequence was not half-written


def test_ctrl_c_during_training_with_loader_workers_is_one_line_and_status_130(videos, tmp_path):
    """The data loader's worker processes get the terminal's SIGINT too: they leave it to mast."""
    sets = [item for value in [*TINY, "data.workers=2", "phases=[{name: a, mode: pairs, steps: 100000, lr: 0.001}]"]
            for item in ("--set", value)]
    status, stderr = _interrupted(["pretrain", "--data", str(videos), "--out", str(tmp_path / "run"), *sets,
                                   "--threads", "1"], started=" 1/100000 ")
    assert status == 130 and "Traceback" not in stderr, stderr
    assert stderr.rstrip().endswith("mast pretrain: interrupted")


def test_a_reader_that_goes_away_is_no_fault():
    """`mast config list | head -1`: the pipe closes before mast writes; no traceback, status 141 (SIGPIPE's)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    result = subprocess.run([sys.executable, "-m", "mast", "config", "list"], stdout=write, stderr=subprocess.PIPE,
                            text=True, env=env)
    os.close(write)
    assert result.returncode == 141 and result.stderr == ""
