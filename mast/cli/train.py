"""``mast pretrain`` and ``mast finetune``: self-supervised training on raw video.

pretrain: learn a feature extractor from scratch on unlabelled videos
(folders of frames, video files, DAVIS / YouTube-VOS JPEGImages trees).
finetune: start from a checkpoint and adapt it, with the same objective,
to your own unannotated videos (e.g. head-mounted eye-tracking footage),
so that `mast propagate --checkpoint OUT/backbone.pt` works better on them.

Examples:
  mast pretrain --config configs/mast.yaml --data ytvos/ kinetics/ --out runs/mast
  mast pretrain --config configs/corrflow.yaml --data videos/ --out runs/cf --set train.batch_size=8
  mast finetune --init runs/mast/backbone.pt --data my_videos/ --out runs/mine
  mast pretrain --config configs/mast.yaml --data videos/ --out runs/mast --resume
  torchrun --nproc_per_node 4 -m mast pretrain --config configs/mast.yaml --data videos/ --out runs/mast

A run folder holds config.yaml (the resolved config), run.json (library
version, git SHA, command), checkpoints/ (step-N.pt and last.pt, written
atomically), tensorboard/ (`tensorboard --logdir OUT`), and at the end
backbone.pt for `mast propagate --checkpoint`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from mast.common.config import ConfigError

if TYPE_CHECKING:  # the training modules (torch) load when the command runs, not for --help
    from mast.train.config import TrainingConfig

#: configs/ of the repository, also shipped inside the package (mast/configs links to it).
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def register(subparsers) -> None:
    for name, summary in (("pretrain", "self-supervised pretraining on raw videos"),
                          ("finetune", "fine-tune a checkpoint on your own unannotated videos")):
        parser = subparsers.add_parser(name, help=summary, description=__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--config", type=Path,
                            help=f"YAML config (default: the packaged {'finetune' if name == 'finetune' else 'mast'}.yaml; "
                                 f"also: corrflow.yaml)")
        parser.add_argument("--data", nargs="+", required=True, help="video folders/files (frames, mp4/avi/mov/mkv, DAVIS trees)")
        parser.add_argument("--out", type=Path, required=True, help="run folder")
        if name == "finetune":
            parser.add_argument("--init", type=Path, required=True, help="backbone.pt or a training checkpoint to start from")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override any config key, e.g. --set phases.0.lr=1e-4 --set train.batch_size=8")
        parser.add_argument("--resume", action="store_true",
                            help="continue OUT/checkpoints/last.pt exactly (uses OUT/config.yaml)")
        parser.set_defaults(func=run)


def _resolve_config(args: argparse.Namespace) -> TrainingConfig:
    from mast.train.config import load_config

    if args.resume:
        saved = args.out / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume: {saved} not found (is {args.out} a run folder?)")
        if args.config or args.set:
            print("mast: --resume continues with the run's own config.yaml; --config/--set are ignored", file=sys.stderr)
        return load_config(saved)
    path = args.config or PACKAGED_CONFIGS / ("finetune.yaml" if args.command == "finetune" else "mast.yaml")
    return load_config(path, args.set)


def _holds_run(out: Path) -> bool:
    from mast.train import checkpoint as ckpt

    folder = out / ckpt.CHECKPOINT_DIR
    return (folder / ckpt.LAST).is_file() or bool(ckpt.step_checkpoints(folder))


def _one_line(error: BaseException) -> str:
    """The error's own message; a DataLoader worker's re-raised error carries the
    worker's traceback, whose last line is ``Type: the original message``."""
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and "DataLoader worker" in lines[0]:
        return lines[-1].partition(": ")[2] or lines[-1]
    return str(error)


def run(args: argparse.Namespace) -> int:
    from mast.train.loop import Trainer, TrainingAborted, check_run_folder

    try:
        check_run_folder(args.out, args.data)
        config = _resolve_config(args)
        if not args.resume and _holds_run(args.out):
            raise ValueError(f"{args.out} already holds a run; use --resume to continue it or choose another --out")
        trainer = Trainer(config, args.data, args.out, init=getattr(args, "init", None), resume=args.resume)
        summary = trainer.run()
    except (ConfigError, ValueError, FileNotFoundError, TrainingAborted) as error:
        print(f"mast {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"done: {summary['steps']} steps ({summary['skipped']} skipped, {summary['skipped_clips']} unreadable "
          f"clips replaced); backbone: {args.out / 'backbone.pt'}")
    return 0
