"""Benchmark of one training step at 256x256: clips per second and peak memory.

The MAST objective (lab-huber) with the full ResNet-18 backbone, for both
phases (pairs: query + 1 reference; memory: query + 5 references), with the
compiled kernels and with the pure-PyTorch operators, side by side, each in
a fresh process. Clips are generated in memory so that decoding does not
enter the measurement.

    python -m benchmarks.train                          # CPU, batch 2
    python -m benchmarks.train --device cuda --batch 24
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from benchmarks._measure import peak_memory, report, run_isolated

MODES = {"pairs": [0, 5], "memory": [0, 5, 15, 17, 19, 20]}  # frame indices of a clip, query last


def measure_case(case: dict) -> dict:
    import mast.ops as ops
    from mast.data.synthetic import translating_video
    from mast.models.backbone import ResNetBackbone
    from mast.models.engine import ReconstructionEngine
    from mast.train.config import TrainingConfig
    from mast.train.reconstruction import reconstruct
    from mast.train.objectives import LabHuber

    device = torch.device(case["device"])
    indices = MODES[case["mode"]]
    frames, _ = translating_video(num_frames=max(indices) + 1, height=256, width=256)
    clip = frames[indices]
    batch = {
        "frames": clip.unsqueeze(0).repeat(case["batch"], 1, 1, 1, 1).to(device),
        "indices": torch.tensor(indices).repeat(case["batch"], 1),
        "valid": torch.ones(case["batch"], len(indices), dtype=torch.bool),
    }
    config = TrainingConfig()  # the training defaults: ResNet-18, window 13, MAST's lab-huber
    model = ResNetBackbone(config.model).to(device).train()
    engine = ReconstructionEngine(config.engine)
    objective = LabHuber(config.objective.upsample, config.objective.huber_scale)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            prepared = objective.prepare(batch, torch.Generator().manual_seed(0))
            loss = objective.loss(reconstruct(model, engine, batch, prepared), prepared)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    step()  # warm-up (allocator, cuDNN autotuning)
    memory = peak_memory(step, device.type)
    start = time.perf_counter()
    for _ in range(case["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / case["steps"]
    return {**case, "backend": ops.backend(device), "clips_per_second": case["batch"] / seconds,
            "seconds_per_step": seconds, "peak_bytes": memory}


def _table(rows: list[dict]) -> str:
    lines = [f"{'mode':<7} {'path':<10} {'device':<6} {'batch':>5} {'clips/s':>8} {'s/step':>7} {'peak MiB':>9}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['mode']:<7} {row['path']:<10} error: {row['error']}")
            continue
        lines.append(f"{row['mode']:<7} {row['path']:<10} {row['device']:<6} {row['batch']:>5} "
                     f"{row['clips_per_second']:>8.2f} {row['seconds_per_step']:>7.2f} {row['peak_bytes'] / 2**20:>9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default 2 on CPU, 24 on CUDA)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (default 3)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/train-<device>.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0
    batch = args.batch or (24 if args.device == "cuda" else 2)
    rows = []
    for mode in MODES:
        for path in ("extension", "pytorch"):
            case = dict(mode=mode, path=path, device=args.device, batch=batch, steps=args.steps)
            if path == "pytorch":
                os.environ["MAST_DISABLE_EXTENSION"] = "1"
            rows.append(run_isolated("benchmarks.train", case))
            os.environ.pop("MAST_DISABLE_EXTENSION", None)
            print(f"  measured {mode} / {path}", flush=True)
    report("train", args.device, rows, _table(rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
