"""Benchmark of one training step: clips per second and peak memory, and the cost of reading clips.

Two parts, run side by side (``--part`` picks one):

* kernels -- the MAST objective (lab-huber) with the full ResNet-18 backbone at
  256x256, for both phases (pairs: query + 1 reference; memory: query + 5
  references), with the compiled kernels and with the pure-PyTorch operators.
  Clips are generated in memory so that decoding does not enter the measurement.
* data -- whole training steps (read a batch of random clips, augment, step)
  on real videos straight from their mp4 files and from the same videos as
  JPEG frame folders (made once by ``mast extract-frames``), for both phases;
  the memory phase draws queries up to the end of each video, so its clips
  span more of the file. Clips are read in the training process (no
  DataLoader workers, one thread), so ``s/step`` is reading plus computing
  and ``read s`` its reading part, in the steady state: reading one frame of
  every video first is timed apart (``open s``: it opens every file, and
  decodes a video file whole into the cache of ``mast.data.video_cache``).
  The JSON holds the mp4 / frames ratios. The videos are
  ``raw_videos/*.mp4`` of the shared data (``$MAST_SHARED/data`` or
  ``../shared/data``); the part is skipped with a message when they are absent.

Every case runs in a fresh process.

    python -m benchmarks.train                          # CPU, batch 2
    python -m benchmarks.train --part data --size 128   # mp4 against frame folders only
    python -m benchmarks.train --device cuda --batch 24
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._measure import peak_memory, report, run_isolated

MODES = {"pairs": [0, 5], "memory": [0, 5, 15, 17, 19, 20]}  # frame indices of a clip, query last
SOURCES = ("mp4", "frames")


def _trainer(device: torch.device):
    """``step(batch)``: one optimiser step of the training defaults (ResNet-18, window 13, MAST's lab-huber)."""
    from mast.models.backbone import ResNetBackbone
    from mast.models.engine import ReconstructionEngine
    from mast.train.config import TrainingConfig
    from mast.train.objectives import LabHuber
    from mast.train.reconstruction import reconstruct

    config = TrainingConfig()
    model = ResNetBackbone(config.model).to(device).train()
    engine = ReconstructionEngine(config.engine)
    objective = LabHuber(config.objective.upsample, config.objective.huber_scale)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step(batch: dict) -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            prepared = objective.prepare(batch, torch.Generator().manual_seed(0))
            loss = objective.loss(reconstruct(model, engine, batch, prepared), prepared)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    return step


def measure_case(case: dict) -> dict:
    if case["part"] == "data":
        return measure_reading(case)
    import mast.ops as ops
    from mast.data.synthetic import translating_video

    device = torch.device(case["device"])
    indices = MODES[case["mode"]]
    frames, _ = translating_video(num_frames=max(indices) + 1, height=256, width=256)
    clip = frames[indices]
    batch = {
        "frames": clip.unsqueeze(0).repeat(case["batch"], 1, 1, 1, 1).to(device),
        "indices": torch.tensor(indices).repeat(case["batch"], 1),
        "valid": torch.ones(case["batch"], len(indices), dtype=torch.bool),
    }
    step = _trainer(device)
    step(batch)  # warm-up (allocator, cuDNN autotuning)
    memory = peak_memory(lambda: step(batch), device.type)
    start = time.perf_counter()
    for _ in range(case["steps"]):
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / case["steps"]
    return {**case, "backend": ops.backend(device), "clips_per_second": case["batch"] / seconds,
            "seconds_per_step": seconds, "peak_bytes": memory}


def measure_reading(case: dict) -> dict:
    """Training steps on clips read from ``case["paths"]``: seconds per step, and the reading part."""
    from mast.data.augment import ClipAugment
    from mast.data.clips import ClipDataset, make_loader
    from mast.data.video import discover_videos

    import cv2

    # One thread each, as in a DataLoader worker: steadier on a shared machine, and the
    # reading cost is what one worker pays.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    device = torch.device(case["device"])
    sources = discover_videos(case["paths"])
    dataset = ClipDataset(sources, samples_per_epoch=case["batch"] * (case["steps"] + 1), seed=0, mode=case["mode"],
                          transform=ClipAugment(output_size=(case["size"], case["size"])))
    batches = iter(make_loader(dataset, batch_size=case["batch"], num_workers=0))
    opened = time.perf_counter()
    for source in sources:  # once per run, timed apart: opens every file (decodes a video file into the cache)
        source.read([0])
    opened = time.perf_counter() - opened
    step = _trainer(device)
    step(next(batches))  # warm-up
    reading = 0.0
    start = time.perf_counter()
    for _ in range(case["steps"]):
        before = time.perf_counter()
        batch = next(batches)
        reading += time.perf_counter() - before
        step({key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()})
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / case["steps"]
    return {**case, "seconds_per_step": seconds, "read_seconds_per_step": reading / case["steps"],
            "open_seconds": opened, "frames": sources.total_frames}


def _shared_videos() -> list[Path]:
    """The shared data's raw mp4 clips, or [] when the shared data is absent."""
    root = Path(os.environ.get("MAST_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return sorted((root / "data" / "raw_videos").glob("*.mp4"))


def _frame_folders(videos: list[Path], folder: Path) -> list[str]:
    """The videos as JPEG frame folders at their own size, made by ``mast extract-frames``."""
    from mast.cli.main import main as mast

    if mast(["extract-frames", *map(str, videos), "--out", str(folder)]) != 0:
        raise SystemExit("mast extract-frames failed")
    return [str(folder / video.stem) for video in videos]


def _reading_rows(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """The data part's rows and the mp4 / frames ratios per mode, of seconds per step and of reading."""
    videos = _shared_videos()
    if not videos:
        print("data part skipped: no shared raw videos (set MAST_SHARED to the folder holding data/raw_videos)")
        return [], {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="mast-bench-frames-") as scratch:
        paths = {"mp4": [str(video) for video in videos], "frames": _frame_folders(videos, Path(scratch) / "frames")}
        for mode in MODES:
            for source in SOURCES:
                case = dict(part="data", mode=mode, path=source, paths=paths[source], device=args.device,
                            batch=args.batch or 2, steps=args.data_steps, size=args.size)
                rows.append(run_isolated("benchmarks.train", case))
                print(f"  measured {mode} / {source}", flush=True)
    return rows, {"seconds_per_step": _ratios(rows, "seconds_per_step"),
                  "read_seconds_per_step": _ratios(rows, "read_seconds_per_step")}


def _ratios(rows: list[dict], key: str) -> dict[str, float]:
    """``{mode: mp4 / frames}`` of ``key`` (modes where a case failed left out)."""
    value = {(row["mode"], row["path"]): row.get(key) for row in rows}
    return {mode: value[mode, "mp4"] / value[mode, "frames"] for mode in MODES
            if value[mode, "mp4"] and value[mode, "frames"]}


def _table(rows: list[dict]) -> str:
    lines = [f"{'mode':<7} {'path':<10} {'device':<6} {'batch':>5} {'clips/s':>8} {'s/step':>7} {'peak MiB':>9}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['mode']:<7} {row['path']:<10} error: {row['error']}")
            continue
        lines.append(f"{row['mode']:<7} {row['path']:<10} {row['device']:<6} {row['batch']:>5} "
                     f"{row['clips_per_second']:>8.2f} {row['seconds_per_step']:>7.2f} {row['peak_bytes'] / 2**20:>9.1f}")
    return "\n".join(lines)


def _reading_table(rows: list[dict], ratios: dict) -> str:
    lines = [f"{'mode':<7} {'source':<7} {'device':<6} {'batch':>5} {'size':>5} {'open s':>7} {'read s':>7} {'s/step':>7} "
             f"{'mp4/frames: read':>16} {'step':>5}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['mode']:<7} {row['path']:<7} error: {row['error']}")
            continue
        reading, step = (ratios[key].get(row["mode"]) for key in ("read_seconds_per_step", "seconds_per_step"))
        ratio = f"{reading:>16.2f} {step:>5.2f}" if row["path"] == "mp4" and reading and step else ""
        lines.append(f"{row['mode']:<7} {row['path']:<7} {row['device']:<6} {row['batch']:>5} {row['size']:>5} "
                     f"{row['open_seconds']:>7.2f} {row['read_seconds_per_step']:>7.2f} "
                     f"{row['seconds_per_step']:>7.2f} {ratio}")
    return "\n".join(lines)


def _kernel_rows(args: argparse.Namespace) -> list[dict]:
    batch = args.batch or (24 if args.device == "cuda" else 2)
    rows = []
    for mode in MODES:
        for path in ("extension", "pytorch"):
            case = dict(part="kernels", mode=mode, path=path, device=args.device, batch=batch, steps=args.steps)
            if path == "pytorch":
                os.environ["MAST_DISABLE_EXTENSION"] = "1"
            rows.append(run_isolated("benchmarks.train", case))
            os.environ.pop("MAST_DISABLE_EXTENSION", None)
            print(f"  measured {mode} / {path}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--part", default="all", choices=("all", "kernels", "data"), help="what to measure (default all)")
    parser.add_argument("--batch", type=int, default=None,
                        help="clips per step (default: kernels 2 on CPU, 24 on CUDA; data 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per kernels case (default 3)")
    parser.add_argument("--data-steps", type=int, default=6, help="timed steps per data case (default 6)")
    parser.add_argument("--size", type=int, default=128, help="side of the data part's training crops (default 128)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/train-<device>.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0
    rows = _kernel_rows(args) if args.part in ("all", "kernels") else []
    reading, ratios = _reading_rows(args) if args.part in ("all", "data") else ([], {})
    tables = ([_table(rows)] if rows else []) + ([_reading_table(reading, ratios)] if reading else [])
    report("train", args.device, rows + reading, "\n\n".join(tables), args.out, mp4_over_frames=ratios)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
