"""``mast propagate``: carry a first-frame mask (or box) through videos.

Examples:
  mast propagate --davis DAVIS --split val --out results/            # DAVIS-2017 val
  mast propagate --davis DAVIS2016 --year 2016 --split val --out r/  # DAVIS-2016
  mast propagate --video clip.mp4 --first-mask frame0.png --out r/
  mast propagate --video frames/ --first-box 120,80,64,48 --checkpoint runs/x/backbone.pt --out r/
  mast propagate --model siammask --checkpoint runs/siammask/model.pt --davis DAVIS --out r/
  mast propagate --model ranet --checkpoint runs/ranet/model.pt --davis DAVIS --out r/

--model siammask runs a SiamMask / SiamRPN / SiamFC tracker trained by
`mast train-baseline siammask` (--checkpoint RUN/model.pt, required): each
object's box is taken from its first-frame mask (--box-from minmax or rotated)
and tracked. --model ranet runs a RANet trained by `mast train-baseline
ranet` (--checkpoint RUN/model.pt, required): the first frame and its mask
are the template. --model static repeats the first-frame mask on every
frame (zero motion: the bar every model must beat; no --checkpoint). The
flags of the memory propagator (--preset, --window, ...) do not apply to
the other models and are refused.

Without --checkpoint the raw-LAB-pixel baseline runs (features: LAB pixels
averaged over 4x4 cells, affinity: negative squared distance), so the tool
works out of the box. Results are DAVIS palette PNGs named like the input
frames, in OUT/<sequence>/; score them with `mast evaluate`.

OUT/run.json records the settings (features by checkpoint hash, protocol,
inputs), every command line, every file written and, per sequence, what
identifies its input (frame files by name, size and time, a video file by
path, size and time, the first annotation by content). OUT must be a new or
empty folder or one holding results of the same settings; results of other
settings are replaced only with --overwrite, which removes the files the
earlier run wrote and nothing else. OUT may not be, contain or lie inside an
input folder.

Resuming: each sequence is written whole (under a temporary name, then
renamed) and recorded as soon as it is done, so a run stopped by a crash,
Ctrl-C or a kill keeps the sequences it finished. Run the same command
again: sequences already in OUT under the same settings and from the same
input are skipped (it says how many), changed or unfinished ones are
written, sequences of earlier runs not in this one are kept. --overwrite
redoes every sequence. --overlay draws every sequence, skipped ones too.

Every input is checked before the first file is written: frames present
and numbered without gaps, every frame decoded (a damaged or cut-short file
is an error naming it), all of one size, the first mask readable, holding an
object and of the frames' size. A video file whose container promises more
frames than decode is propagated over the frames that decode, with a warning;
its sequence's record in run.json gives both counts.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mast.cli import error_text
from mast.common.config import comma_names
from mast.models.shipped import checkpoint_path

if TYPE_CHECKING:  # the heavy modules (torch) load when the command runs, not for --help
    from mast.common.outputs import OutputFolder
    from mast.eval.propagate import PropagationInput
    from mast.models.tracker import Tracker

#: The names of ``mast.models.protocol.PRESETS`` and ``mast.models.builder.TRACKERS``, restated so
#: that ``--help`` needs no torch (a test keeps them equal).
PRESET_NAMES = ("mast", "crw", "quick")
MODEL_NAMES = ("mast", "siammask", "ranet", "detector", "static")

def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "propagate", help="propagate first-frame masks through videos",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input (one of --davis or --video)")
    source.add_argument("--davis", type=Path, help="DAVIS root (ImageSets/, JPEGImages/480p, Annotations/480p)")
    source.add_argument("--year", type=int, choices=(2016, 2017), default=2017, help="DAVIS year (default 2017)")
    source.add_argument("--split", default="val", help="split file name under ImageSets/<year>/ (default val)")
    source.add_argument("--sequences", help="comma-separated subset of the split's sequences")
    source.add_argument("--video", type=Path, help="a video file (mp4/avi/mov/mkv) or a folder of frames")
    source.add_argument("--first-mask", type=Path, help="first-frame mask PNG for --video: object ids (palette or grayscale), "
                        "0 = background, 255 = void (not an object, as in DAVIS)")
    source.add_argument("--first-box", help="first-frame box x,y,w,h in pixels for --video")
    model = parser.add_argument_group("model and protocol")
    model.add_argument("--model", choices=MODEL_NAMES, default="mast",
                       help="which tracker: mast = the self-supervised memory propagator (default); "
                            "siammask, ranet, detector = the supervised baselines (need --checkpoint RUN/model.pt); "
                            "static = the first-frame mask on every frame (zero motion, the bar to beat)")
    model.add_argument("--checkpoint", type=checkpoint_path,
                       help="backbone checkpoint, or cpu-hour (the backbone shipped with mast, docs/cpu-hour.md); "
                       "default: the LAB-pixel baseline. The propagation knobs saved in it apply unless flags override them. "
                       "--model siammask: the run's model.pt (required)")
    model.add_argument("--box-from", choices=("minmax", "rotated"),
                       help="--model siammask: the first-frame box of each object's mask: axis-aligned (minmax) "
                            "or the rotated minimum bounding rectangle's centre and sides (rotated); "
                            "default: the checkpoint's tracker.box_from")
    model.add_argument("--preset", choices=PRESET_NAMES,
                       help="(default mast) mast: refs 0,5,t-1,t-3,t-5, 25x25, ROI for far refs, hard labels; "
                            "crw: first + 20 previous, radius 12, top-10, tau 0.05, soft labels; "
                            "quick: frame 0 + 3 previous, 13x13, no ROI (fast on a CPU)")
    model.add_argument("--long-term", type=_int_tuple, help="long-term reference frames, e.g. 0,5")
    model.add_argument("--short-term", type=_int_tuple, help="short-term offsets back, e.g. 1,3,5")
    model.add_argument("--window", type=int, help="attention window P (odd)")
    model.add_argument("--topk", type=int, help="keep the k best keys per pixel (0: all)")
    model.add_argument("--temperature", type=float, help="softmax temperature")
    model.add_argument("--no-roi", action="store_true", help="attend every reference directly (no ROI localisation)")
    similarity = model.add_mutually_exclusive_group()
    similarity.add_argument("--cosine", dest="normalize", action="store_true", default=None,
                            help="cosine similarity (L2-normalised features; use with --temperature 0.05). "
                                 "Briefly trained checkpoints propagate much better this way")
    similarity.add_argument("--dot", dest="normalize", action="store_false",
                            help="raw dot products (the mast preset's default)")
    labels = model.add_mutually_exclusive_group()
    labels.add_argument("--soft-labels", dest="soft_labels", action="store_true", default=None,
                        help="predictions re-enter the memory as probabilities")
    labels.add_argument("--hard-labels", dest="soft_labels", action="store_false", help="... as one-hot labels")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (OUT/<sequence>/<frame>.png, OUT/run.json)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo the sequences already in OUT, and replace results of other settings "
                             "(only files mast wrote there are removed)")
    parser.add_argument("--overlay", action="store_true",
                        help="also write overlays, a WebM video per sequence and OUT/overlays/index.html")
    parser.set_defaults(func=run)


#: The tracker settings each flag gives (``load_tracker``'s keyword arguments), and the flag each
#: library argument is shown under in errors.
FLAGS = {"long_term": "--long-term", "short_term": "--short-term", "window": "--window", "topk": "--topk",
         "temperature": "--temperature", "roi_localisation": "--no-roi", "normalize": "--cosine/--dot",
         "soft_labels": "--soft-labels/--hard-labels", "box_from": "--box-from", "preset": "--preset",
         "checkpoint": "--checkpoint", "model": "--model", "device": "--device"}


def tracker_settings(args: argparse.Namespace) -> dict:
    """The settings the command line gives the tracker: only the flags that were given."""
    given = {name: getattr(args, name) for name in
             ("long_term", "short_term", "window", "topk", "temperature", "normalize", "soft_labels", "box_from")}
    if args.no_roi:
        given["roi_localisation"] = False
    return {name: value for name, value in given.items() if value is not None}


def _tracker(args: argparse.Namespace) -> Tracker:
    from mast.models.builder import load_tracker

    return load_tracker(args.model, args.checkpoint, args.preset, args.device, **tracker_settings(args))


def _inputs(args: argparse.Namespace) -> list[PropagationInput]:
    from mast.eval.sources import davis_inputs, video_input

    if (args.davis is None) == (args.video is None):
        raise ValueError("give exactly one of --davis ROOT or --video PATH")
    if args.davis is not None:
        if args.first_mask is not None or args.first_box is not None:
            raise ValueError("--first-mask/--first-box annotate a --video; --davis reads each sequence's own first mask")
        sequences = comma_names(args.sequences) or None
        return davis_inputs(args.davis, args.split, args.year, sequences)
    return [video_input(args.video, args.first_mask, args.first_box)]


def _check_inputs(inputs: list[PropagationInput]) -> None:
    """Every sequence has 2+ frames and an object in its first mask, before anything is written."""
    from mast.eval.propagate import label_lookup

    for item in inputs:
        if item.num_frames is not None and item.num_frames < 2:
            raise ValueError(f"{item.name}: needs at least 2 frames, found {item.num_frames}")
        label_lookup(item.first_ids, item.first_source)


def _open_outputs(args: argparse.Namespace, tracker: Tracker, inputs: list[PropagationInput]):
    """The checked results folder (and its overlays folder), nothing written yet."""
    from mast.common.outputs import check_separate
    from mast.eval.propagate import results_folder
    from mast.eval.visualize import overlay_folder

    read = {"davis": args.davis, "video": args.video, "first_mask": args.first_mask, "checkpoint": args.checkpoint}
    check_separate(args.out, read)
    source = ({"davis": str(args.davis.resolve()), "year": args.year} if args.davis is not None
              else {"video": True})
    folder = results_folder(args.out, tracker, args.overwrite, **source)
    names = [item.name for item in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"two inputs share an output name: {sorted(n for n in names if names.count(n) > 1)[0]!r}")
    for name in names + (["overlays"] if args.overlay else []):
        folder.check_entry(name)
    pictures = overlay_folder(args.out / "overlays", args.out, read, args.overwrite).check() if args.overlay else None
    return folder, pictures


def _prepare(args: argparse.Namespace):
    inputs = _inputs(args)
    _check_inputs(inputs)
    tracker = _tracker(args)
    return inputs, tracker, *_open_outputs(args, tracker, inputs)


def _remaining(inputs: list[PropagationInput], folder: OutputFolder,
               overwrite: bool) -> list[tuple[PropagationInput, dict]]:
    """The inputs not already in ``folder`` from the same input under the same settings (all with
    ``overwrite``), each with what :func:`~mast.eval.propagate.check_frames` found decoding its
    frames (the check before anything is written)."""
    from tqdm import tqdm

    from mast.eval.propagate import check_frames, is_finished

    remaining = [item for item in inputs if overwrite or not is_finished(item, folder)]
    with tqdm(remaining, unit="sequence", desc="checking frames", dynamic_ncols=True, leave=False,
              disable=not remaining) as progress:  # closed before an error is printed
        return [(item, check_frames(item)) for item in progress]


def run(args: argparse.Namespace) -> int:
    from mast.eval.visualize import visualize

    try:
        inputs, tracker, folder, pictures = _prepare(args)
        remaining = _remaining(inputs, folder, args.overwrite)
    except (ValueError, OSError) as error:
        print(f"mast propagate: error: {error_text(error, FLAGS)}", file=sys.stderr)
        return 2
    print(f"model: {args.model} | {tracker.name} | device: {getattr(tracker, 'device', args.device)} | {tracker.settings()}")
    if len(remaining) < len(inputs):
        print(f"skipped {len(inputs) - len(remaining)} sequence(s) already in {args.out} (same settings and inputs); "
              f"use --overwrite to redo them")
    try:
        frames, rate = _propagate_all(inputs, remaining, tracker, folder, args.command_line) if remaining else (0, 0.0)
        if pictures is not None:
            pictures.start({"argv": args.command_line})
            print(f"pictures: {visualize(((item.name, item.frames()) for item in inputs), args.out, pictures)}")
    except (ValueError, OSError) as error:
        print(f"mast propagate: error: {error_text(error, FLAGS)}", file=sys.stderr)
        return 2
    print(f"wrote {len(remaining)} sequence(s), {frames} frames, to {args.out} ({rate:.1f} frames/s); "
          f"settings in {args.out / 'run.json'}")
    return 0


def _propagate_all(inputs: list[PropagationInput], remaining: list[tuple[PropagationInput, dict]],
                   tracker: Tracker, folder: OutputFolder, command_line: list[str]) -> tuple[int, float]:
    """Writes the ``remaining`` sequences of ``inputs``, each recorded once written (a run killed
    between sequences keeps those it finished); returns the frame count and frames/s."""
    from tqdm import tqdm

    from mast.eval.propagate import propagate_to_folder

    names = {item.name for item, _ in remaining}
    skipped = [item.name for item in inputs if item.name not in names]
    folder.start({"argv": command_line, "sequences": [item.name for item in inputs], "skipped": skipped or None})
    start = time.perf_counter()
    total = sum(item.num_frames - 1 for item, _ in remaining)  # exact: check_frames counted them
    with tqdm(total=total, unit="frame", desc="propagating", dynamic_ncols=True) as progress:
        for item, checked in remaining:
            progress.set_postfix_str(item.name)
            try:
                propagate_to_folder(item, tracker, folder, on_frame=lambda: progress.update(1), details=checked)
            except (ValueError, OSError) as error:
                raise ValueError(f"in {item.name}: {error}") from error
        frames = progress.n
    rate = frames / max(time.perf_counter() - start, 1e-9)
    folder.finish({"frames": frames, "frames_per_second": rate})
    return frames, rate
