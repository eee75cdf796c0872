"""``mast evaluate``: score propagated masks on DAVIS (J&F)."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Score a folder of predicted masks on a DAVIS split with the DAVIS-2017
semi-supervised protocol (region similarity J and boundary F-measure).

Expected layout:
  ROOT/ImageSets/<year>/<split>.txt     one sequence name per line
  ROOT/Annotations/480p/<seq>/*.png     ground truth
  DIR/<seq>/<frame>.png                 predictions (palette PNGs of object ids,
                                        same file names as the ground truth)

The first and last frame of every sequence are not scored; objects are the
ids of the first ground-truth frame and every object counts once in the
global means. With --year 2016 the ground truth is single-object (0/255) and
any predicted id > 0 is the object.

The results are always recomputed and written to
DIR/global_results-<split>.csv and DIR/per-sequence_results-<split>.csv.
"""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the ``evaluate`` sub-command to the ``mast`` parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted masks on DAVIS (J&F)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--davis", required=True, metavar="ROOT", help="DAVIS dataset root folder")
    parser.add_argument(
        "--results", required=True, metavar="DIR", help="folder with one sub-folder of masks per sequence"
    )
    parser.add_argument(
        "--year", type=int, choices=(2016, 2017), default=2017, help="DAVIS edition (default: %(default)s)"
    )
    parser.add_argument(
        "--split",
        default="val",
        help="split name, read from ImageSets/<year>/<split>.txt (default: %(default)s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, sequences are scored in parallel; 1 = no pool "
        "(default: number of CPUs)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the evaluation, prints the tables; 0 on success, 1 on a data error."""
    # Imported here so that ``mast --help`` stays fast.
    from mast.eval.davis import evaluate_davis, format_results

    try:
        global_table, per_sequence_table = evaluate_davis(
            args.davis, args.results, split=args.split, year=args.year, processes=args.processes
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"mast evaluate: error: {error}", file=sys.stderr)
        return 1
    from mast.common.outputs import record_derived_files

    # In a propagate results folder the CSVs join its record, to go when the results change.
    record_derived_files(args.results, [f"global_results-{args.split}.csv", f"per-sequence_results-{args.split}.csv"])
    print(format_results(global_table, per_sequence_table))
    print(f"\nCSV files written to {args.results}")
    return 0
