"""Benchmark of sharing a machine: jobs side by side, each with every core's thread or its share.

torch starts one thread per core in every process. Two such processes on the
same cores oversubscribe them: their threads wait on each other at every
parallel region. Each case here propagates a generated video (``benchmarks.propagate``'s
tracker, ``quick`` preset) in ``jobs`` processes started together, each
computing with ``threads`` threads (``mast.common.threads.using_threads``, what
``--threads`` applies), and reports every process's frames/s:

* one job with every core's threads, one job with one thread: the references;
* ``jobs`` jobs side by side with every core's threads each (torch's default);
* ``jobs`` jobs side by side with ``cores / jobs`` threads each (``--threads``).

    python -m benchmarks.threads                                 # 2 jobs, pixels, 480p
    python -m benchmarks.threads --features backbone --frames 12 # the ResNet-18 (slow on a CPU)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks._measure import report


def measure_case(case: dict) -> dict:
    """Propagates one generated video in this process under ``case["threads"]`` threads; returns its fps."""
    import torch

    from benchmarks._measure import tracking_speed
    from benchmarks.propagate import tracker
    from mast.common.threads import using_threads
    from mast.data.synthetic import translating_video

    frames, masks = translating_video(num_frames=case["frames"], height=case["height"], width=case["width"],
                                      num_objects=2)
    with using_threads(case["threads"]):
        fps, _ = tracking_speed(tracker(case["features"], "quick"), frames, masks[0], torch.device("cpu"), warmup=3)
    return {**case, "fps": fps}


def side_by_side(case: dict, jobs: int, timeout: float = 1800) -> dict:
    """``jobs`` processes of ``case`` started together; their frames/s, each and in all."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "benchmarks.threads", "--case", json.dumps(case)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(jobs)]
    speeds = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        if process.returncode != 0:
            return {**case, "jobs": jobs, "error": (err.strip().splitlines() or ["failed"])[-1]}
        speeds.append(json.loads(out.strip().splitlines()[-1])["fps"])
    return {**case, "jobs": jobs, "fps_each": speeds, "fps_per_job": sum(speeds) / jobs, "fps_total": sum(speeds)}


def _table(rows: list[dict]) -> str:
    alone = next(row["fps_per_job"] for row in rows if row["jobs"] == 1 and "error" not in row)
    lines = [f"{'jobs':>4} {'threads each':>12} {'frames/s per job':>17} {'frames/s in all':>16} "
             f"{'per job vs one alone':>21}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['jobs']:>4} {row['threads']:>12} error: {row['error']}")
            continue
        lines.append(f"{row['jobs']:>4} {row['threads']:>12} {row['fps_per_job']:>17.2f} {row['fps_total']:>16.2f} "
                     f"{alone / row['fps_per_job']:>20.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="processes side by side (default 2)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="threads of a job that takes every core "
                        "(default: the CPUs of this machine)")
    parser.add_argument("--features", default="pixels", choices=("pixels", "backbone"))
    parser.add_argument("--frames", type=int, default=24, help="frames of the generated video (default 24)")
    parser.add_argument("--size", default="480x854", help="HEIGHTxWIDTH of the generated video (default 480x854)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/threads-cpu.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return 0
    if args.jobs < 2 or args.cores < args.jobs or args.frames < 6:
        parser.error(f"need --jobs >= 2, --cores >= --jobs and --frames >= 6, got {args.jobs}, {args.cores}, "
                     f"{args.frames}")
    height, width = (int(side) for side in args.size.split("x"))
    base = dict(features=args.features, frames=args.frames, height=height, width=width)
    plan = [(1, args.cores), (1, 1), (args.jobs, args.cores), (args.jobs, args.cores // args.jobs)]
    rows, load_before = [], os.getloadavg()  # other work on the machine shifts every row
    for jobs, threads in plan:
        rows.append(side_by_side({**base, "threads": threads}, jobs))
        print(f"  measured {jobs} job(s) x {threads} thread(s)", flush=True)
    report("threads", "cpu", rows, _table(rows), args.out, load_before=load_before, load_after=os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
