"""Synthetic videos with known motion, for tests, demos and smoke runs."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def smooth_texture(height: int, width: int, generator: torch.Generator, scale: int = 8) -> torch.Tensor:
    """A random smooth colour texture ``(3, H, W)`` in ``[0, 1]``."""
    coarse = torch.rand(1, 3, height // scale + 2, width // scale + 2, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def translating_video(
    num_frames: int = 12,
    height: int = 128,
    width: int = 128,
    velocity: tuple[float, float] = (1.5, 1.0),
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured background drifting by ``velocity`` pixels/frame (x, y) with a
    differently textured disc moving across it twice as fast.

    Returns:
        ``(frames, masks)``: frames ``(T, 3, H, W)`` RGB in ``[0, 1]``,
        masks ``(T, H, W)`` long, 1 on the disc and 0 elsewhere.
    """
    generator = torch.Generator().manual_seed(seed)
    margin = int(math.ceil(max(abs(v) for v in velocity) * num_frames)) + 2
    background = smooth_texture(height + 2 * margin, width + 2 * margin, generator, scale=16)
    # The disc keeps a texture of its own but a distinct dominant colour, as objects do.
    tint = torch.rand(3, 1, 1, generator=generator)
    foreground = 0.4 * smooth_texture(height, width, generator, scale=8) + 0.6 * tint
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    radius = min(height, width) / 6
    frames, masks = [], []
    for t in range(num_frames):
        shift_x, shift_y = round(velocity[0] * t), round(velocity[1] * t)
        frame = background[:, margin + shift_y : margin + shift_y + height, margin + shift_x : margin + shift_x + width]
        center_x = width / 3 + 2 * velocity[0] * t
        center_y = height / 3 + 2 * velocity[1] * t
        disc = (xs - center_x) ** 2 + (ys - center_y) ** 2 <= radius**2
        frame = torch.where(disc, foreground.roll((round(2 * velocity[1] * t), round(2 * velocity[0] * t)), (1, 2)), frame)
        frames.append(frame)
        masks.append(disc.long())
    return torch.stack(frames), torch.stack(masks)
