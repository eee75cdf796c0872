"""``mast propagate``: carry a first-frame mask (or box) through videos.

Examples:
  mast propagate --davis DAVIS --split val --out results/            # DAVIS-2017 val
  mast propagate --davis DAVIS2016 --year 2016 --split val --out r/  # DAVIS-2016
  mast propagate --video clip.mp4 --first-mask frame0.png --out r/
  mast propagate --video frames/ --first-box 120,80,64,48 --checkpoint runs/x/backbone.pt --out r/

Without --checkpoint the raw-LAB-pixel baseline runs (features: LAB pixels
averaged over 4x4 cells, affinity: negative squared distance), so the tool
works out of the box. Results are DAVIS palette PNGs named like the input
frames, in OUT/<sequence>/; score them with `mast evaluate`.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from mast.eval.propagate import PRESETS, PropagationConfig, Propagator, propagate_to_folder
from mast.eval.sources import davis_inputs, video_input
from mast.eval.visualize import visualize
from mast.models.extractors import BackboneExtractor, PixelExtractor

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
    source.add_argument("--first-mask", type=Path, help="first-frame mask PNG for --video (palette ids)")
    source.add_argument("--first-box", help="first-frame box x,y,w,h in pixels for --video")
    model = parser.add_argument_group("model and protocol")
    model.add_argument("--checkpoint", type=Path, help="backbone checkpoint; default: the LAB-pixel baseline")
    model.add_argument("--preset", choices=PRESETS, default="mast",
                       help="mast: refs 0,5,t-1,t-3,t-5, 25x25, ROI for far refs, hard labels; "
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
    parser.add_argument("--out", type=Path, required=True, help="output folder (OUT/<sequence>/<frame>.png)")
    parser.add_argument("--overlay", action="store_true",
                        help="also write overlays, an MP4 per sequence and OUT/overlays/index.html")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace, baseline: bool) -> PropagationConfig:
    """The preset, then the pixel baseline's knobs (without a checkpoint), then explicit flags."""
    overrides = dict(PixelExtractor.protocol_overrides) if baseline else {}
    if baseline and args.normalize:
        raise ValueError("--cosine: the pixel baseline compares pixels by squared distance and cannot "
                         "use cosine similarity; give a --checkpoint or drop --cosine")
    given = dict(long_term=args.long_term, short_term=args.short_term, window=args.window,
                 temperature=args.temperature, soft_labels=args.soft_labels, normalize=args.normalize)
    overrides.update({k: v for k, v in given.items() if v is not None})
    if args.topk is not None:
        overrides["topk"] = args.topk or None
    if args.no_roi:
        overrides["roi_localisation"] = False
    return replace(PropagationConfig.preset(args.preset), **overrides)


def _inputs(args: argparse.Namespace, parser_error):
    if (args.davis is None) == (args.video is None):
        parser_error("give exactly one of --davis ROOT or --video PATH")
    if args.davis is not None:
        sequences = args.sequences.split(",") if args.sequences else None
        return davis_inputs(args.davis, args.split, args.year, sequences)
    return [video_input(args.video, args.first_mask, args.first_box)]


def run(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    try:
        inputs = _inputs(args, lambda message: (_ for _ in ()).throw(ValueError(message)))
        extractor = BackboneExtractor.from_checkpoint(args.checkpoint, device) if args.checkpoint else PixelExtractor()
        config = build_config(args, baseline=args.checkpoint is None)
        propagator = Propagator(extractor, config, device)
    except (ValueError, FileNotFoundError) as error:
        print(f"mast propagate: error: {error}", file=sys.stderr)
        return 2
    print(f"features: {extractor.name} | device: {device} | preset: {args.preset} | {config}")
    total = sum(item.num_frames - 1 for item in inputs if item.num_frames) or None
    start, frames = time.perf_counter(), 0
    with tqdm(total=total, unit="frame", desc="propagating", dynamic_ncols=True) as progress:
        for item in inputs:
            progress.set_postfix_str(item.name)
            try:
                propagate_to_folder(item, propagator, args.out, on_frame=lambda: progress.update(1))
            except (ValueError, FileNotFoundError) as error:
                progress.close()
                print(f"mast propagate: error in {item.name}: {error}", file=sys.stderr)
                return 2
    frames = progress.n
    print(f"wrote {len(inputs)} sequence(s), {frames} frames, to {args.out} "
          f"({frames / max(time.perf_counter() - start, 1e-9):.1f} frames/s)")
    if args.overlay:
        index = visualize(((item.name, item.frames()) for item in inputs), args.out, args.out / "overlays")
        print(f"pictures: {index}")
    return 0
