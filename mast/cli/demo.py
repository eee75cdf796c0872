"""``mast demo``: the whole library at small scale, on generated video, in about a minute.

1. Generates short videos of textured, tinted discs moving over a drifting
   textured background: some to train on (frames only, no labels), some
   held out with a mask on every frame (a DAVIS-layout folder).
2. Pretrains a small backbone on the training videos, self-supervised (MAST's
   LAB reconstruction objective, ``configs/demo.yaml``).
3. Propagates each held-out video's first-frame mask with the trained
   features and with raw LAB pixels (the baseline that needs no training),
   through the same writer, into OUT/results-trained and OUT/results-pixels.
4. Scores both with the DAVIS J&F evaluator and writes overlay pictures,
   videos and an HTML page per model (``mast visualize``'s).

Everything is written under --out, recorded in its run.json; a rerun into the
same folder replaces what the demo wrote there, and only that (a folder holding
other files is refused). The page to open is printed at the end.
"""
from __future__ import annotations

import argparse
from pathlib import Path

#: What the demo writes under --out: generated videos, the training run, two results folders.
ENTRIES = ("videos", "run", "results-trained", "results-pixels")

#: configs/demo.yaml of the repository, shipped inside the package (mast/configs links to it).
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="pretrain, propagate, score and draw on generated video (about a minute, no data needed)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="a new folder for everything, or one an earlier demo wrote: its files are replaced "
                             "(default runs/demo)")
    parser.add_argument("--steps", type=int, default=150, help="pretraining steps (default 150)")
    parser.add_argument("--train-videos", type=int, default=8, help="generated videos to train on (default 8)")
    parser.add_argument("--test-videos", type=int, default=3, help="generated held-out videos to score (default 3)")
    parser.add_argument("--size", type=int, default=96, help="frame height and width in pixels (default 96)")
    parser.add_argument("--frames", type=int, default=20, help="frames per video (default 20)")
    parser.set_defaults(func=run)


def generate_videos(out: Path, train: int, test: int, size: int, frames: int) -> tuple[Path, Path]:
    """Writes ``out/train/<video>/*.jpg`` and a DAVIS-layout ``out/davis`` of held-out videos; returns both."""
    import cv2
    import numpy as np

    from mast.common.masks import write_palette_png
    from mast.data.davis import DavisDataset
    from mast.data.synthetic import translating_video

    def write(folder: Path, video) -> None:
        folder.mkdir(parents=True)
        for t, frame in enumerate(video):
            rgb = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{t:05d}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])

    davis = DavisDataset(out / "davis", 2017)
    for index in range(train + test):
        velocity = (1.0 + 0.25 * (index % 4), 0.5 + 0.25 * (index % 3))
        video, masks = translating_video(frames, size, size, velocity, num_objects=1 + index % 2, seed=index)
        if index < train:
            write(out / "train" / f"video{index:02d}", video)
            continue
        name = f"held-out{index - train:02d}"
        write(davis.frames_dir(name), video)
        for t, mask in enumerate(masks):
            write_palette_png(davis.mask_path(name, f"{t:05d}"), mask.numpy().astype(np.uint8))
    split = davis.split_file("val")
    split.parent.mkdir(parents=True)
    split.write_text("".join(f"held-out{i:02d}\n" for i in range(test)))
    return out / "train", davis.root


def propagate_and_score(tracker, davis: Path, out: Path) -> tuple[dict, Path]:
    """One model through the writer, the evaluator and the pictures; returns the J&F table and the page."""
    from mast.common.outputs import record_derived_files
    from mast.eval.davis import csv_label, score_davis, write_csvs
    from mast.eval.propagate import propagate_to_folder, results_folder
    from mast.eval.sources import davis_inputs
    from mast.eval.visualize import overlay_folder, visualize

    inputs = davis_inputs(davis)
    folder = results_folder(out, tracker, davis=str(davis.resolve()), year=2017)
    folder.start({"sequences": [item.name for item in inputs]})
    for item in inputs:
        propagate_to_folder(item, tracker, folder)
    tables = score_davis(davis, out, processes=1)
    # Recorded as mast evaluate records them, so that a rerun of the demo removes them too.
    record_derived_files(out, [path.name for path in write_csvs(out, csv_label("val"), *tables)])
    table = tables[0]
    pictures = overlay_folder(out / "overlays", out, {"davis": davis}).check()
    pictures.start()
    return table, visualize(((item.name, item.frames()) for item in inputs), out, pictures)


def demo_folder(args: argparse.Namespace):
    """``--out`` as the demo's recorded output folder, checked and started.

    A folder the demo wrote before is started over: what its record lists
    (results folders' own records included) goes, whatever the settings, and
    nothing else does; a folder holding files mast did not write is refused.
    """
    from mast.common.outputs import OutputFolder

    settings = {key: getattr(args, key) for key in ("steps", "train_videos", "test_videos", "size", "frames")}
    folder = OutputFolder(args.out, "demo", settings, overwrite=True).check()
    for name in ENTRIES:
        folder.check_entry(name)
    folder.start({"argv": args.command_line}, start_over=True)  # a rerun remakes everything it wrote
    return folder


#: The smallest value of each size argument: one step, one video each way, frames the backbone
#: and the generator can draw discs in, and 3 frames (the evaluator scores all but the first and last).
MINIMUMS = {"steps": 1, "train_videos": 1, "test_videos": 1, "size": 32, "frames": 3}


def check_arguments(args: argparse.Namespace) -> None:
    """Raises ``ValueError`` naming the first size argument below its minimum."""
    for name, minimum in MINIMUMS.items():
        if getattr(args, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")


def run(args: argparse.Namespace) -> int:
    import sys

    from mast.cli import error_text
    from mast.eval.visualize import check_video_writer
    from mast.models.builder import load_tracker
    from mast.train.config import load_config
    from mast.train.loop import Trainer
    from mast.train.reconstruction import ReconstructionTask

    try:  # every argument checked before the first write
        check_arguments(args)
        check_video_writer()  # the pictures come last, after training
        config = load_config(DEMO_CONFIG, [f"phases.0.steps={args.steps}"])
        folder = demo_folder(args)
    except (ValueError, OSError) as error:
        print(f"mast demo: error: {error_text(error)}", file=sys.stderr)
        return 2
    with folder.entry("videos") as staging:
        generate_videos(staging, args.train_videos, args.test_videos, args.size, args.frames)
    train, davis = args.out / "videos" / "train", args.out / "videos" / "davis"
    print(f"generated {args.train_videos} training and {args.test_videos} held-out videos in {args.out / 'videos'}")
    with folder.entry("run") as staging:
        summary = Trainer(ReconstructionTask(config, [str(train)]), staging).run()
    print(f"pretrained {summary['steps']} steps -> {args.out / 'run' / 'backbone.pt'}")

    models = {  # the trained features under the knobs saved in training; pixels under theirs
        "trained": load_tracker("mast", args.out / "run" / "backbone.pt", "quick", "cpu"),
        "pixels": load_tracker("mast", None, "quick", "cpu"),
    }
    print(f"{'features':<10} {'J&F':>6} {'J':>6} {'F':>6}  pictures")
    for name, tracker in models.items():
        table, page = propagate_and_score(tracker, davis, args.out / f"results-{name}")
        print(f"{name:<10} {table['J&F-Mean']:>6.3f} {table['J-Mean']:>6.3f} {table['F-Mean']:>6.3f}  {page}")
    print("(flat-tinted generated discs are easy for raw colour; on real video see the README's evidence)")
    print(f"open {args.out / 'results-trained' / 'overlays' / 'index.html'} to look at the trained features' masks")
    return 0
