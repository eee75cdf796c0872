"""The `mast` command: help for every sub-command, and the demo end to end."""
import pytest

from mast.cli.main import SUBCOMMANDS, build_parser, main


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    names = {"demo", "pretrain", "finetune", "centroids", "propagate", "evaluate", "visualize"}
    assert names <= set(parser._subparsers._group_actions[0].choices)
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: mast " + name in capsys.readouterr().out
    assert set(SUBCOMMANDS) == {"demo", "train", "centroids", "propagate", "evaluate", "visualize"}


def test_demo_runs_and_draws(tmp_path, capsys):
    assert main(["demo", "--num-frames", "8", "--size", "96", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "mean J" in printed
    mean_j = float(printed.split("mean J over frames 1..7: ")[1].split()[0])
    assert mean_j > 0.8
    assert (tmp_path / "propagation.png").is_file()


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
