"""``mast compare``: every model of a YAML list on the same DAVIS sequences: one table, one plot, one page."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mast.cli import error_text
from mast.common.config import comma_names

DESCRIPTION = """\
Run every model of a models file on the same DAVIS sequences through the
propagation writer, score them with the DAVIS evaluator and put them side by
side: DIR/compare.md and DIR/compare.csv (a row per model and sequence and a
row per model over all sequences: J&F-Mean, J-Mean, F-Mean, J-Decay,
frames/s, peak memory, supervision), DIR/compare.png (J&F against frames/s,
log scale) and DIR/index.html (the table, the plot and, per sequence, the
models' overlay videos side by side; open it in a browser).

Example models.yaml (a list; checkpoint paths relative to the file's folder):

  - name: pixels                 # the LAB-pixel baseline: no checkpoint
    model: mast
    preset: quick
  - name: mast-ours
    model: mast
    checkpoint: runs/mast/backbone.pt
    window: 13                   # any other key is a setting of the model
  - name: siammask
    model: siammask
    checkpoint: runs/siammask/model.pt
    box_from: rotated
  - name: ranet
    model: ranet
    checkpoint: runs/ranet/model.pt
    supervision: supervised      # optional: overrides the derived supervision
  - name: static                 # zero motion: the first-frame mask on every frame
    model: static

model is a name `mast propagate --model` takes. Settings are those of the
model (mast: preset, window, topk, temperature, normalize, long_term, ...;
siammask: box_from, ...), named as in Python. The supervision column says
"supervised" for the baselines and torchvision ImageNet checkpoints, "none"
for static, "none (pixels)" without a checkpoint and "self-supervised"
otherwise.

Each model's results go to DIR/<name>/<sequence>/ (a results folder of its
own: `mast evaluate --results DIR/<name>` scores it) with overlays in
DIR/<name>/overlays/. Frames/s counts the tracked frames (all but the first)
over the time of the writer (tracking, reading frames, writing PNGs); peak
memory is the CPU's peak resident set above its level before the sequence
(or CUDA's peak allocated memory on a GPU), as the Memory-Measured column says.

A model that fails on a sequence is a row marked failed with its error; the
others still run. A rerun resumes as `mast propagate` does: it reuses a row
while DIR/<name>/run.json records its sequence as finished under the same
settings from the same input (a changed frame or first mask is redone for
every model), and reruns the rest; DIR/compare.json keeps the rows' scores
and timings. The whole models file, every checkpoint and setting, and every
frame of the sequences to redo are checked before anything is written.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="run several models on DAVIS: one table, one plot, one page",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", type=Path, required=True, metavar="YAML", help="the models file (see above)")
    parser.add_argument("--davis", type=Path, required=True, metavar="ROOT",
                        help="DAVIS root (ImageSets/, JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2017, help="DAVIS year (default 2017)")
    parser.add_argument("--split", default="val", help="split file name under ImageSets/<year>/ (default val)")
    parser.add_argument("--sequences", help="comma-separated subset of the split's sequences")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default), for every model")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace model folders (or DIR) made with other settings (only files mast wrote)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mast.eval.compare import prepare, run_comparison
    from mast.eval.compare_report import ALL_SEQUENCES, markdown_text

    try:
        comparison = prepare(args.models, args.davis, args.out, args.split, args.year,
                             comma_names(args.sequences) or None, args.overwrite, args.device)
    except (ValueError, OSError) as error:
        print(f"mast compare: error: {error_text(error)}", file=sys.stderr)
        return 2
    total = len(comparison.runs) * len(comparison.inputs)
    try:
        with tqdm(total=total, unit="run", desc="comparing", dynamic_ncols=True, disable=None) as bar:
            def advance(label: str) -> None:
                bar.set_postfix_str(label, refresh=False)
                bar.update(1)

            rows = run_comparison(comparison, args.command_line, advance)
    except (ValueError, OSError) as error:
        print(f"mast compare: error: {error_text(error)}", file=sys.stderr)
        return 1
    failed = sum(row["status"] == "failed" for row in rows if row["sequence"] != ALL_SEQUENCES)
    print(markdown_text(rows), end="")
    print(f"compared {len(comparison.runs)} model(s) on {len(comparison.inputs)} sequence(s)"
          f"{f', {failed} failed row(s)' if failed else ''}: {args.out / 'compare.md'}, "
          f"{args.out / 'compare.png'}, {args.out / 'index.html'}")
    return 0
