"""``mast evaluate``: score propagated masks on DAVIS (J&F).

``--objects davis`` (default, the official toolkit: ids 1..max id of the first
ground-truth frame) or ``--objects first-frame`` (only the ids present there).
``--boxes`` adds tracker box metrics (OTB) on the tracker's own boxes (a
sequence's ``boxes.json``) or, without them, the masks' min-max boxes.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from mast.cli import error_text
from mast.common.config import comma_names

DESCRIPTION = """\
Score a folder of predicted masks on a DAVIS split with the DAVIS-2017
semi-supervised protocol (region similarity J and boundary F-measure).

Expected layout:
  ROOT/ImageSets/<year>/<split>.txt     one sequence name per line
  ROOT/Annotations/480p/<seq>/*.png     ground truth, one PNG per frame
  ROOT/JPEGImages/480p/<seq>/*.jpg      the frames (optional; when present,
                                        every frame needs its ground truth)
  DIR/<seq>/<frame>.png                 predictions (palette PNGs of object ids,
                                        same file names as the ground truth)

The first and last frame of every sequence are not scored; every object
counts once in the global means. Objects (--objects): "davis", the official
toolkit's rule, scores ids 1..max id of the first ground-truth frame, so ids
absent from it are scored too (a warning names them); "first-frame" scores
only the ids present there. With --year 2016 the ground truth is
single-object (0/255) and any predicted id > 0 is the object.

With --boxes, both tables and both CSVs gain four columns after the
toolkit's: Box-IoU-Mean, Success-AUC and Precision@20, the OTB tracking
measures against the min-max box of each object's ground-truth pixels, and
Box-Source, which predicted boxes were scored: "tracker", the boxes the
tracker predicted (DIR/<seq>/boxes.json, written by mast propagate for
trackers that predict boxes: SiamMask, the detector), or "mask", the min-max
boxes of the predicted masks (no boxes.json); "mixed" in the global table
when sequences differ. A boxes.json must list the frames of the PNGs beside
it and the objects of the first ground-truth frame. Frames whose ground truth
lacks the object are left out, a prediction without it scores IoU 0 and
fails every centre-error threshold (docs/evaluation.md 6.9).

Ground truth is needed on every scored frame, so DAVIS test-dev / challenge
folders (first frame annotated only) cannot be scored. Without JPEGImages/ a
gap in the numbering of the ground-truth files is an error.

The results are always recomputed; the tables are printed first, then
written to DIR/global_results-<split>.csv and DIR/per-sequence_results-<split>.csv
(with --sequences: <split>-<seq>+<seq>...).
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
        "--sequences",
        help="comma-separated sequences of the split to score (default: all), e.g. those a model did "
        "not train on; the CSVs are then named <split>-<seq>+<seq>...",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, sequences are scored in parallel; 1 = no pool "
        "(default: --threads if given, else the number of CPUs)",
    )
    parser.add_argument(
        "--objects",
        choices=("davis", "first-frame"),
        default="davis",
        help="which object ids are scored: davis = ids 1..max id of the first ground-truth "
        "frame, the official toolkit's rule for DAVIS numbers (ids absent from that frame are "
        "scored too, J = F = 1 where neither annotated nor predicted; a warning names them); "
        "first-frame = only the ids present in the first ground-truth frame, for your own "
        "annotations. Rows keep the real ids (<seq>_5) (default: %(default)s)",
    )
    parser.add_argument(
        "--boxes",
        action="store_true",
        help="also score boxes as a tracker (OTB): mean box IoU, success AUC (IoU thresholds 0, "
        "0.05, ..., 1) and precision at 20 px centre error, per object and global; the tracker's "
        "own boxes where DIR/<seq>/boxes.json holds them, else the masks' min-max boxes "
        "(column Box-Source: tracker / mask)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Scores, prints the tables, then writes the CSVs; 0 on success, 1 on a data or write error,
    2 when the CSVs would go into the dataset."""
    # Imported here so that ``mast --help`` stays fast.
    from mast.common.locks import lock_folder
    from mast.common.outputs import check_separate, record_derived_files
    from mast.eval.davis import csv_label, format_results, score_davis, write_csvs

    try:  # the CSVs go into the results folder: never into the dataset
        check_separate(args.results, {"davis": args.davis}, argument="results")
        if Path(args.results).is_dir():  # no scores of a folder another process is writing
            lock_folder(args.results, "results")
    except ValueError as error:
        print(f"mast evaluate: error: {error_text(error)}", file=sys.stderr)
        return 2
    sequences = comma_names(args.sequences) or None
    # --threads N: N single-threaded workers (main.py adds the flag: a parser of this module alone lacks it).
    processes = getattr(args, "threads", None) if args.processes is None else args.processes
    try:
        with _sequence_bar() as progress:
            tables = score_davis(
                args.davis, args.results, split=args.split, year=args.year, processes=processes,
                objects=args.objects, boxes=args.boxes, sequences=sequences, on_sequence=progress,
            )
    except (FileNotFoundError, ValueError) as error:
        print(f"mast evaluate: error: {error_text(error)}", file=sys.stderr)
        return 1
    # Printed before writing, so that a failed write loses no scores.
    print(format_results(*tables), flush=True)
    try:
        paths = write_csvs(args.results, csv_label(args.split, sequences), *tables)
        # In a propagate results folder the CSVs join its record, to go when the results change.
        record_derived_files(args.results, [path.name for path in paths])
    except OSError as error:
        print(f"mast evaluate: error: {error_text(error)}", file=sys.stderr)
        return 1
    print(f"\nCSV files written: {paths[0]}, {paths[1]}")
    return 0


@contextlib.contextmanager
def _sequence_bar() -> Iterator[Callable[[str, int], None]]:
    """A bar on stderr counting the scored sequences; yields score_davis's ``on_sequence``.

    The total is known once score_davis has read the split, so the first
    sequence scored sets it. The bar closes before the tables are printed.
    """
    from tqdm import tqdm

    # disable=None: quiet when stderr is not a terminal (a log file, a pipe), as the error lines need.
    with tqdm(unit="sequence", desc="scoring", dynamic_ncols=True, disable=None) as bar:
        def advance(name: str, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(name, refresh=False)
            bar.update(1)

        yield advance
