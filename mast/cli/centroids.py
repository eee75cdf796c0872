"""``mast centroids``: build the colour centroids of CorrFlow's kmeans-ce objective."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mast.cli import error_text

DESCRIPTION = """\
Build the colour centroids used by CorrFlow's kmeans-ce objective.

CorrFlow quantises colour: k-means (k = 16 in the paper) is fitted on LAB
pixels sampled from the training videos, every pixel is labelled by its
nearest centroid, and the network learns to reconstruct those labels of a
frame from other frames (cross-entropy). This command samples up to
--frames-per-video frames spread over each video, draws about --pixels
pixels in total, fits k-means and writes the centroids (LAB) with what was
used to a small JSON file.

A training run with the kmeans-ce objective builds this file automatically
when it is missing; run this command to build it ahead of time, inspect it,
or share one set of centroids between runs.

--data takes video files, folders of videos, folders of frame images, or
DAVIS / YouTube-VOS roots (any nesting); unreadable videos are skipped with
a warning.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the ``centroids`` sub-command to the ``mast`` parser."""
    parser = subparsers.add_parser(
        "centroids",
        help="build the colour centroids of CorrFlow's kmeans-ce objective from your videos",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, nargs="+", metavar="DIR", help="training videos (folders or files)")
    parser.add_argument("--out", required=True, metavar="FILE", help="centroids file to write (JSON)")
    parser.add_argument("--k", type=_positive_int, default=16, help="number of colour clusters (default: %(default)s)")
    parser.add_argument(
        "--pixels", type=_positive_int, default=200_000, metavar="N",
        help="pixels to sample in total (default: %(default)s)",
    )
    parser.add_argument(
        "--frames-per-video", type=_positive_int, default=8, metavar="N",
        help="frames read per video, spread over its length (default: %(default)s)",
    )
    parser.add_argument(
        "--frame-stride", type=_positive_int, default=1, metavar="N",
        help="use every N-th frame of video files (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the pixel draw and k-means (default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def format_table(centroids) -> str:
    """One line per ``(k, 3)`` LAB centroid: index, L, a, b and the sRGB hex colour."""
    from mast.common.colour import lab_to_rgb

    rgb = lab_to_rgb(centroids.T.reshape(1, 3, -1, 1)).reshape(3, -1).T
    lines = ["   #       L       a       b  RGB"]
    for index, (lab, colour) in enumerate(zip(centroids.tolist(), rgb.tolist())):
        hex_colour = "#" + "".join(f"{round(255 * c):02x}" for c in colour)
        lines.append(f"{index:4d} {lab[0]:7.2f} {lab[1]:7.2f} {lab[2]:7.2f}  {hex_colour}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Builds and saves the centroids, prints a summary; 0 on success, 2 on a data error."""
    # Imported here so that ``mast --help`` stays fast (scikit-learn, kornia).
    from mast.common.files import remove_stale_temporaries
    from mast.common.outputs import check_separate
    from mast.train.centroids import build_centroids, load_centroids

    try:
        check_separate(args.out, {"data": args.data})
        remove_stale_temporaries(Path(args.out).resolve().parent)  # left by a killed earlier run
        build_centroids(
            args.data, args.out, k=args.k, num_pixels=args.pixels, frames_per_video=args.frames_per_video,
            frame_stride=args.frame_stride, seed=args.seed,
        )
        centroids, meta = load_centroids(args.out)  # reads back what was written: also checks the file
    except (OSError, ValueError) as error:
        print(f"mast centroids: error: {error_text(error)}", file=sys.stderr)
        return 2
    skipped = f" ({meta['num_skipped_videos']} unreadable skipped)" if meta.get("num_skipped_videos") else ""
    print(f"k-means: {centroids.shape[0]} centroids from {meta['num_pixels']} LAB pixels "
          f"of {meta['num_videos']} videos{skipped}, seed {meta['seed']}")
    print(f"written to {args.out}")
    print(format_table(centroids))
    return 0
