"""``mast demo``: propagate a mask through a generated video with the engine.

A self-contained first look at the library: a video with a textured disc
moving over a drifting textured background is generated, the disc's
first-frame mask is propagated frame by frame through the MAST memory
(frames 0 and 5, t-1, t-3, t-5) by the reconstruction engine, using raw LAB
pixels as features (no training), and every frame's J (IoU) against the
known truth is printed. A picture of the result is written to ``--out``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when the demo runs, not for --help
    import torch


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="propagate a mask through a generated video (engine demo, no data needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--num-frames", type=int, default=24, help="frames to generate (default 24)")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels (default 128)")
    parser.add_argument("--window", type=int, default=13, help="attention window P, odd (default 13)")
    parser.add_argument("--temperature", type=float, default=0.01, help="softmax temperature (default 0.01)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the picture")
    parser.set_defaults(func=run)


def jaccard(pred: torch.Tensor, truth: torch.Tensor) -> float:
    union = (pred | truth).sum().item()
    return 1.0 if union == 0 else (pred & truth).sum().item() / union


def save_strip(path: Path, frames: torch.Tensor, labels: torch.Tensor, count: int = 6) -> None:
    """Writes ``count`` evenly spaced frames with the mask tinted red, side by side, atomically."""
    import numpy as np
    from PIL import Image

    from mast.common.files import atomic_write_with

    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    tiles = []
    for t in picks:
        image = frames[t].permute(1, 2, 0).numpy().copy()
        mask = labels[t].numpy() > 0
        image[mask] = 0.5 * image[mask] + 0.5 * np.array([1.0, 0.0, 0.0])
        tiles.append(image)
    strip = (np.concatenate(tiles, axis=1) * 255).round().astype(np.uint8)
    atomic_write_with(path, lambda temporary: Image.fromarray(strip).save(temporary, format="PNG"))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from mast.data.synthetic import translating_video
    from mast.models.extractors import PixelExtractor
    from mast.models.propagation import PropagationConfig, Propagator
    import mast.ops as ops

    frames, truth = translating_video(num_frames=args.num_frames, height=args.size, width=args.size)
    config = PropagationConfig.preset(
        "mast", **{**PixelExtractor.propagation, "window": args.window, "temperature": args.temperature}
    )
    labels = torch.stack([truth[0], *Propagator(PixelExtractor(), config).run(iter(frames), truth[0])])
    scores = [jaccard(labels[t] > 0, truth[t] > 0) for t in range(1, len(frames))]
    print(f"operator backend: {ops.backend('cpu')}")
    print(f"video: {len(frames)} generated frames of {args.size}x{args.size}; window {args.window}")
    print("J per frame: " + " ".join(f"{s:.2f}" for s in scores))
    print(f"mean J over frames 1..{len(frames) - 1}: {np.mean(scores):.3f}")
    path = args.out / "propagation.png"
    save_strip(path, frames, labels)
    print(f"picture: {path}")
    return 0
