"""``mast convert``: a published checkpoint (MAST, CorrFlow, CRW, torchvision ResNet) as a mast backbone.pt."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mast.cli import error_text

#: The names of ``mast.models.published.FORMATS``, restated so that ``--help`` needs no torch (a test keeps them equal).
FORMAT_NAMES = ("mast", "corrflow", "crw", "torchvision")
#: How this command names the library's arguments in its errors.
FLAGS = {"source": "SRC", "out": "--out"}

DESCRIPTION = """\
Convert a published checkpoint into a mast backbone.pt that carries its
paper's propagation protocol (docs/models.md):

  mast  (zlai0/MAST)          OpenCV LAB frames; refs 0, 5, t-1, t-3, t-5,
                              25x25 window, ROI localisation, dot products
  corrflow  (zlai0/CorrFlow)  RGB in [0, 1]; the previous frame only,
                              13x13 window, dot products
  crw  (ajabri/videowalk)     ImageNet-normalised RGB; the crw preset
                              (first + 20 previous frames, top-10, t 0.05)
  torchvision (ResNet-18/34)  ImageNet-normalised RGB; the crw preset

The format is recognised from the file's keys (--format forces one).
`mast propagate --checkpoint OUT` then reproduces the paper's inference
without flags; --preset and the knob flags still override it. The file is
read with weights_only (it cannot run code) and written atomically; an
existing --out is replaced only with --overwrite. mast propagate,
mast.load_backbone and --init of mast finetune / train-baseline also read
published files directly, converting them in memory.

Example:
  mast convert checkpoint.pt --out mast-release.pt
"""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the ``convert`` sub-command to the ``mast`` parser."""
    parser = subparsers.add_parser(
        "convert", help="convert a published checkpoint (MAST, CorrFlow, CRW, torchvision) into a backbone.pt",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SRC", type=Path, help="the published checkpoint")
    parser.add_argument("--out", required=True, type=Path, metavar="DST.pt", help="the backbone.pt to write")
    parser.add_argument("--format", choices=FORMAT_NAMES, help="the checkpoint's layout (default: recognised "
                        "from its keys)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Reads, converts and writes; 0 on success, 2 on an input error."""
    from mast.common.outputs import check_separate
    from mast.models.published import load_any

    try:
        check_separate(args.out, {"source": args.source})
        if args.out.exists() and not args.overwrite:
            print(f"mast convert: error: --out: {args.out} exists; give --overwrite to replace it", file=sys.stderr)
            return 2
        converted = load_any(args.source, format=args.format)
        backbone = converted.backbone(args.source)
        backbone.save(args.out, converted.knobs)
    except (OSError, ValueError) as error:
        print(f"mast convert: error: {error_text(error, FLAGS)}", file=sys.stderr)
        return 2
    config = converted.config
    print(f"{args.source}: {converted.format}, {sum(t.numel() for t in backbone.state_dict().values()):,} values, "
          f"{config.colour_space} frames, stride {backbone.stride}, {backbone.channels} channels"
          + (f"; left out {len(converted.dropped)} keys ({converted.dropped[0]}, ...)" if converted.dropped else ""))
    print(f"written to {args.out} with protocol {converted.knobs.as_overrides()}")
    return 0
