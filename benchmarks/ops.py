"""Benchmark of the two operators: compiled extension vs pure-PyTorch reference.

For each operator, shape and implementation it measures forward+backward
time (median) and peak memory, side by side in one run, and reports the
extension/reference ratios. Shapes: ``davis`` is 480p DAVIS at 1/4
resolution (120x214 features, C=64, window 13) read from 5 reference frames,
one after another; ``small`` is a 32x32 map. ``roi_correlation`` (the fused
fine-ROI scores) is compared with its reference, window_sample + einsum; on
a device without the fused kernel its "extension" row is the composite of
the compiled window_sample and an einsum.

    python -m benchmarks.ops                    # CPU, both shapes
    python -m benchmarks.ops --device cuda      # on a GPU
    python -m benchmarks.ops --shapes small --out results.json
"""
from __future__ import annotations

import argparse
import json

import torch

from benchmarks._measure import median_seconds, peak_memory, report, run_isolated

SHAPES = {
    # name: (references, C, H, W, window)
    "small": (5, 16, 32, 32, 13),
    "davis": (5, 64, 120, 214, 13),
}
IMPLEMENTATIONS = ("extension", "reference")
#: window_sample/centers: the source needs no gradient, as when the engine samples ROI keys.
OPERATORS = ("local_correlation", "window_sample", "window_sample/centers", "roi_correlation")


def _inputs(operator: str, channels: int, height: int, width: int, device: str):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, channels, height, width, generator=generator).to(device)
    if operator == "local_correlation":
        other = torch.randn(1, channels, height, width, generator=generator).to(device)
        return features.requires_grad_(), other.requires_grad_()
    shift = torch.randn(1, 2, height, width, generator=generator) * 3
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    centers = (torch.stack((xs, ys)).unsqueeze(0).float() + shift).to(device).requires_grad_()
    if operator == "roi_correlation":
        query = torch.randn(1, channels, height, width, generator=generator).to(device)
        return query.requires_grad_(), features.requires_grad_(), centers
    return features.requires_grad_(operator == "window_sample"), centers


def _step(operator: str, implementation: str, window: int):
    import mast.ops as ops

    if operator == "local_correlation":
        fn = ops.local_correlation if implementation == "extension" else ops.local_correlation_reference

        def step(a, b):
            out = fn(a, b, window, 1)
            out.masked_fill(torch.isinf(out), 0).sum().backward()
    elif operator.startswith("window_sample"):
        fn = ops.window_sample if implementation == "extension" else ops.window_sample_reference

        def step(a, b):
            out, _ = fn(a, b, window, 1.0)
            out.sum().backward()
    else:
        fn = ops.roi_correlation if implementation == "extension" else ops.roi_correlation_reference

        def step(a, b, c):
            out = fn(a, b, c, window, 1.0)
            out.masked_fill(torch.isinf(out), 0).sum().backward()
    return step


def measure_case(case: dict) -> dict:
    """Runs one (operator, implementation, shape) case in this process."""
    references, channels, height, width, window = SHAPES[case["shape"]]
    device = case["device"]
    step = _step(case["operator"], case["implementation"], window)
    inputs = [_inputs(case["operator"], channels, height, width, device) for _ in range(references)]

    def run_all_references():
        for tensors in inputs:
            step(*tensors)
            for tensor in tensors:
                tensor.grad = None

    memory = peak_memory(lambda: step(*inputs[0]), device)
    seconds = median_seconds(run_all_references, device, repeats=case["repeats"])
    return {**case, "seconds": seconds, "peak_bytes": memory}


def _table(rows: list[dict]) -> str:
    lines = [f"{'operator':<22} {'shape':<6} {'impl':<10} {'fwd+bwd ms':>11} {'peak MiB':>9} {'speed-up':>9} {'mem ratio':>9}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['operator']:<22} {row['shape']:<6} {row['implementation']:<10} error: {row['error']}")
            continue
        speed = f"{row['speedup']:.2f}x" if "speedup" in row else ""
        ratio = f"{row['memory_ratio']:.3f}" if "memory_ratio" in row else ""
        lines.append(
            f"{row['operator']:<22} {row['shape']:<6} {row['implementation']:<10} "
            f"{row['seconds'] * 1e3:>11.1f} {row['peak_bytes'] / 2**20:>9.1f} {speed:>9} {ratio:>9}"
        )
    return "\n".join(lines)


def _add_ratios(rows: list[dict]) -> None:
    """speed-up = reference time / extension time; memory ratio = extension peak / reference peak."""
    by_key = {(r["operator"], r["shape"], r["implementation"]): r for r in rows if "error" not in r}
    for (operator, shape, implementation), row in by_key.items():
        reference = by_key.get((operator, shape, "reference"))
        if implementation == "extension" and reference:
            row["speedup"] = reference["seconds"] / row["seconds"]
            row["memory_ratio"] = row["peak_bytes"] / max(reference["peak_bytes"], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--shapes", default="small,davis", help="comma-separated subset of: " + ", ".join(SHAPES))
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per case (median reported)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/ops-<device>.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0

    import mast.ops as ops

    if ops.backend(args.device) != "extension":
        parser.error(f"the extension has no {args.device} kernels here (backend: {ops.backend(args.device)})")
    rows = []
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            parser.error(f"--shapes: unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
        for operator in OPERATORS:
            for implementation in IMPLEMENTATIONS:
                case = dict(operator=operator, implementation=implementation, shape=shape,
                            device=args.device, repeats=args.repeats)
                rows.append(run_isolated("benchmarks.ops", case))
                print(f"  measured {operator} / {implementation} / {shape}", flush=True)
    _add_ratios(rows)
    report("ops", args.device, rows, _table(rows), args.out, shapes=SHAPES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
