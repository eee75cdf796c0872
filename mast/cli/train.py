"""``mast pretrain`` and ``mast finetune``: self-supervised training on raw video;
``mast train-baseline``: the supervised baselines, through the same loop.

pretrain: learn a feature extractor from scratch on unlabelled videos
(folders of frames, video files, DAVIS / YouTube-VOS JPEGImages trees).
finetune: start from a checkpoint and adapt it, with the same objective,
to your own unannotated videos (e.g. head-mounted eye-tracking footage),
so that `mast propagate --checkpoint OUT/backbone.pt` works better on them.

Examples:
  mast pretrain --config configs/mast.yaml --data ytvos/ kinetics/ --out runs/mast
  mast pretrain --config corrflow.yaml --data videos/ --out runs/cf --set train.batch_size=8
  mast finetune --init runs/mast/backbone.pt --data my_videos/ --out runs/mine
  mast pretrain --config configs/mast.yaml --data videos/ --out runs/mast --resume
  torchrun --nproc_per_node 4 -m mast pretrain --config configs/mast.yaml --data videos/ --out runs/mast

A run folder holds config.yaml (the resolved config), run.json (the record:
command lines, inputs, library version, git SHA, and every file the run
wrote), checkpoints/ (step-N.pt and last.pt, written atomically),
tensorboard/ (`tensorboard --logdir OUT`), and at the end backbone.pt for
`mast propagate --checkpoint`. OUT must be new, empty, or a run of the same
command: --resume continues it, --overwrite replaces it (removing only the
files its run.json lists); a folder holding other files is refused, and so
is one another mast process is writing.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from mast.cli import error_text
from mast.cli.config import PACKAGED_CONFIGS, resolve
from mast.common.config import ConfigError, comma_names
from mast.common.errors import ArgumentError
from mast.models.shipped import checkpoint_path
from mast.train import baselines

BASELINE_DOC = """Train a supervised baseline on videos with object masks.

The baselines share the self-supervised models' backbone module, training
loop (TensorBoard, progress bar, atomic checkpoints, exact --resume, DDP
through torchrun), propagation writer and evaluator, so their scores compare
like for like. --init starts the backbone from a `mast pretrain` checkpoint
(its weights and colour space; the baseline sets the output stride).

Data: a DAVIS (JPEGImages/480p, Annotations/480p) or YouTube-VOS
(JPEGImages, Annotations, sparse masks) folder; only frames with a mask are
used. --year 2016 reads 0/255 masks as one object, --year 2017 palette masks.

Examples:
  mast train-baseline siammask --data DAVIS --out runs/siammask
  mast train-baseline siammask --data DAVIS --sequences dog,libby --year 2016 --out r/ --init runs/mast/backbone.pt
  mast train-baseline ranet --data DAVIS --out runs/ranet --set train.time_budget_minutes=30

A run folder holds config.yaml, run.json, checkpoints/, tensorboard/ and at
the end model.pt for `mast propagate --model NAME --checkpoint OUT/model.pt`;
--resume continues it, --overwrite replaces what its run.json lists.
"""


def register(subparsers) -> None:
    for name, summary in (("pretrain", "self-supervised pretraining on raw videos"),
                          ("finetune", "fine-tune a checkpoint on your own unannotated videos")):
        parser = subparsers.add_parser(name, help=summary, description=__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--config", type=Path,
                            help=f"YAML config: a file, or a packaged config's name (`mast config list`; "
                                 f"default: {'finetune' if name == 'finetune' else 'mast'}.yaml)")
        parser.add_argument("--data", nargs="+", required=True, help="video folders/files (frames, mp4/avi/mov/mkv, DAVIS trees)")
        parser.add_argument("--out", type=Path, required=True, help="run folder")
        if name == "finetune":
            parser.add_argument("--init", type=checkpoint_path, required=True,
                                help="backbone.pt, a training checkpoint or a published one (docs/models.md) to start "
                                     "from, or cpu-hour (the backbone shipped with mast)")
        _add_run_arguments(parser, "--set phases.0.lr=1e-4 --set train.batch_size=8")
        parser.set_defaults(func=run)
    _register_baselines(subparsers)


def _add_run_arguments(parser: argparse.ArgumentParser, set_example: str) -> None:
    """What every training command takes: overrides, resume and validation."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config key, e.g. {set_example}")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/checkpoints/last.pt exactly (uses OUT/config.yaml)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in OUT: remove the files its run.json lists (nothing else), start anew")
    group = parser.add_argument_group(
        "validation", "score the model on annotated sequences during training: TensorBoard val/*, the progress "
        "bar, OUT/validation.json, the learning curve OUT/validation.png, and OUT/best-backbone.pt "
        "(baselines: best-model.pt) for the best J&F")
    group.add_argument("--validate", type=Path, metavar="ROOT", help="DAVIS folder of the validation sequences")
    group.add_argument("--validate-split", default="val", help="split under ROOT/ImageSets/<year>/ (default val)")
    group.add_argument("--validate-sequences", help="comma-separated subset of the split")
    group.add_argument("--validate-year", type=int, choices=(2016, 2017), default=2017,
                       help="mask format of ROOT (default 2017)")
    group.add_argument("--validate-every", type=int, metavar="N",
                       help="validate every N steps (default: the config's validation.every, else 500)")


def _register_baselines(subparsers) -> None:
    parser = subparsers.add_parser("train-baseline", help="train a supervised baseline on videos with masks",
                                   description=BASELINE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", choices=baselines.names(), help="which baseline (mast.train.baselines)")
    parser.add_argument("--data", type=Path, required=True, help="DAVIS or YouTube-VOS folder with Annotations/")
    parser.add_argument("--sequences", help="comma-separated sequences (default: every sequence with masks)")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2017,
                        help="mask format: 2016 = 0/255 single object, 2017 = palette ids (default)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--init", type=checkpoint_path,
                        help="start the backbone from a mast pretrain backbone.pt, a published checkpoint "
                             "(docs/models.md) or cpu-hour (the backbone shipped with mast)")
    parser.add_argument("--config", type=Path, help="YAML config: a file, or a packaged config's name "
                                                    "(`mast config list`; default: <baseline>.yaml)")
    _add_run_arguments(parser, "--set train.time_budget_minutes=30")
    parser.set_defaults(func=run_baseline)


def _resolve_config(args: argparse.Namespace, schema=None, default: str | None = None):
    from mast.train.config import TrainingConfig, load_config
    from mast.train.runs import check_resumable

    schema = schema or TrainingConfig
    if args.resume:
        check_resumable(args.out, args.command)
        saved = args.out / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume: {saved} not found; the run cannot be continued")
        if args.config or args.set:
            warnings.warn("--resume continues with the run's own config.yaml; --config/--set are ignored",
                          RuntimeWarning, stacklevel=2)
        return load_config(saved, schema=schema)
    default = default or ("finetune.yaml" if args.command == "finetune" else "mast.yaml")
    return load_config(resolve(args.config) if args.config else PACKAGED_CONFIGS / default, args.set, schema)


def _validator(args: argparse.Namespace, config):
    """The ``--validate`` sequences, read and checked now, before the run writes anything."""
    if args.validate is None:
        if args.validate_every is not None or args.validate_sequences:
            raise ValueError("--validate-every/--validate-sequences need --validate ROOT")
        return None
    from mast.train.config import ValidationConfig
    from mast.train.validation import Validator

    settings = getattr(config, "validation", None) or ValidationConfig()  # the baselines' schemas have none
    try:
        return Validator.from_config(settings, args.validate, args.validate_split, args.validate_year,
                                     comma_names(args.validate_sequences) or None, args.validate_every)
    except ArgumentError as error:  # the validation set's arguments are the --validate-* flags
        raise ValueError(error_text(error, VALIDATE_FLAGS)) from None


#: The flags of the validation set's arguments (:class:`~mast.train.validation.Validator`'s).
VALIDATE_FLAGS = {"root": "--validate", "split": "--validate-split", "year": "--validate-year",
                  "sequences": "--validate-sequences", "every": "--validate-every"}


def _one_line(error: BaseException) -> str:
    """The error's own message (:func:`mast.cli.error_text`: an argument's under its flag); a
    DataLoader worker's re-raised error carries the worker's traceback, whose last line is
    ``Type: the original message``."""
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and "DataLoader worker" in lines[0]:
        return lines[-1].partition(": ")[2] or lines[-1]
    return error_text(error)


def run(args: argparse.Namespace) -> int:
    def task(config):
        from mast.train.reconstruction import ReconstructionTask

        return ReconstructionTask(config, args.data, init=getattr(args, "init", None))

    return _train(args, [str(d) for d in args.data], _resolve_config, task)


def run_baseline(args: argparse.Namespace) -> int:
    chosen = baselines.baseline(args.baseline)
    sequences = comma_names(args.sequences) or None

    def task(config):
        return chosen.task(config, args.data, sequences, args.year, args.init)

    def config(args):
        return _resolve_config(args, chosen.schema, chosen.config_file)

    return _train(args, [str(args.data)], config, task)


def _train(args: argparse.Namespace, inputs: list[str], resolve_config, make_task) -> int:
    """Checks the run folder, resolves the config, builds the task and runs it; errors are one line."""
    from mast.train.loop import Trainer, TrainingAborted
    from mast.train.runs import check_run_folder

    try:
        check_run_folder(args.out, inputs + ([str(args.validate)] if args.validate else []))
        config = resolve_config(args)
        task = make_task(config)
        trainer = Trainer(task, args.out, resume=args.resume, validator=_validator(args, config),
                          overwrite=args.overwrite, command=args.command, command_line=args.command_line)
        summary = trainer.run()
    except (ConfigError, ValueError, OSError, TrainingAborted) as error:  # OSError: a full disk, a lost mount
        print(f"mast {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"done: {summary['steps']} steps ({summary['skipped']} skipped, {summary['skipped_clips']} unreadable "
          f"clips replaced); model: {args.out / task.final_name}")
    return 0
