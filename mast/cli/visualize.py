"""``mast visualize``: look at propagation results.

Writes, for every sequence of RESULTS (palette PNGs as `mast propagate`
writes them), the frames with their masks blended in and outlined
(OUT/<sequence>/<frame>.jpg), a VP9 WebM video per sequence
(OUT/<sequence>.webm, which browsers play) and OUT/index.html showing them
all, and OUT/run.json recording what it wrote (see `mast propagate --help`
for the rules every output folder follows).

Every frame needs its result, RESULTS/<sequence>/<frame>.png, of the frame's
size: all are read and checked before anything is written, and the first
missing, unreadable or wrong-size one is named. OpenCV must be able to write
VP9 (checked first with a tiny probe video in a temporary folder).

Examples:
  mast visualize --results r/ --davis DAVIS --split val --out r/overlays
  mast visualize --results r/ --video clip.mp4 --out r/overlays
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from mast.cli import error_text
from mast.common.config import comma_names


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "visualize", help="overlays, videos and an HTML page of propagation results",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--results", type=Path, required=True, help="results folder (RESULTS/<sequence>/<frame>.png)")
    parser.add_argument("--davis", type=Path, help="DAVIS root the results were made from")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2017)
    parser.add_argument("--split", default="val")
    parser.add_argument("--sequences", help="comma-separated subset of sequences")
    parser.add_argument("--video", type=Path, help="the video file or frame folder the results were made from")
    parser.add_argument("--out", type=Path, help="output folder (default RESULTS/overlays; never RESULTS itself "
                        "or inside the frames)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace pictures of other results in OUT (only files mast wrote there are removed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mast.eval.sources import davis_streams, video_stream
    from mast.eval.visualize import VIDEO_SUFFIX, check_results, overlay_folder, visualize

    try:
        if (args.davis is None) == (args.video is None):
            raise ValueError("give exactly one of --davis ROOT or --video PATH")
        if not args.results.is_dir():
            raise FileNotFoundError(f"--results {args.results} is not a folder")
        if args.davis is not None:
            sequences = comma_names(args.sequences) or None
            streams = davis_streams(args.davis, args.split, args.year, sequences)
        else:
            streams = [video_stream(args.video)]
        out = args.out or args.results / "overlays"
        folder = overlay_folder(out, args.results, {"davis": args.davis, "video": args.video}, args.overwrite)
        folder.check()
        for stream in streams:
            folder.check_entry(stream.name)
            folder.check_entry(f"{stream.name}{VIDEO_SUFFIX}")
        check_results(_counted(streams, "checking"), args.results)
        folder.start({"argv": args.command_line, "sequences": [s.name for s in streams]})
        index = visualize(_counted(streams, "drawing"), args.results, folder)
    except (ValueError, OSError) as error:
        print(f"mast visualize: error: {error_text(error)}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0


def _counted(streams: list, doing: str) -> Iterator[tuple[str, Iterator]]:
    """``(name, frames)`` per stream under a bar on stderr that counts the sequences done."""
    from tqdm import tqdm

    with tqdm(streams, unit="sequence", desc=doing, dynamic_ncols=True, disable=None) as bar:  # quiet off a terminal
        for stream in bar:
            bar.set_postfix_str(stream.name)
            yield stream.name, stream.frames()
