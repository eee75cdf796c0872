"""Synthetic videos with known motion and known masks, for tests, demos and smoke runs."""
from __future__ import annotations

import colorsys
import math

import torch
import torch.nn.functional as F


def smooth_texture(height: int, width: int, generator: torch.Generator, scale: int = 8) -> torch.Tensor:
    """A random smooth colour texture ``(3, H, W)`` in ``[0, 1]``."""
    coarse = torch.rand(1, 3, height // scale + 2, width // scale + 2, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _object_tint(index: int, count: int) -> torch.Tensor:
    """Saturated, evenly spaced hues, so objects differ from each other and
    from the muted background, as real objects mostly do."""
    red, green, blue = colorsys.hsv_to_rgb(index / max(count, 1), 0.9, 0.9)
    return torch.tensor([red, green, blue]).view(3, 1, 1)


def translating_video(
    num_frames: int = 12,
    height: int = 128,
    width: int = 128,
    velocity: tuple[float, float] = (1.5, 1.0),
    num_objects: int = 1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A muted textured background drifting by ``velocity`` pixels/frame (x, y),
    with ``num_objects`` textured, brightly tinted discs moving over it faster
    (object ``k`` at ``(k + 1)`` times the background's velocity).

    Returns:
        ``(frames, masks)``: frames ``(T, 3, H, W)`` RGB in ``[0, 1]``;
        masks ``(T, H, W)`` long object ids (0 = background, later objects on top).
    """
    generator = torch.Generator().manual_seed(seed)
    speed = max(abs(v) for v in velocity)
    margin = int(math.ceil(speed * num_frames)) + 2
    background = 0.25 + 0.5 * smooth_texture(height + 2 * margin, width + 2 * margin, generator, scale=16)
    radius = min(height, width) / (6 + 2 * (num_objects - 1))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    objects = []
    for k in range(num_objects):
        texture = 0.3 * smooth_texture(height, width, generator, scale=8) + 0.7 * _object_tint(k, num_objects)
        start = (width * (k + 1) / (num_objects + 2), height * (k + 1) / (num_objects + 2))
        objects.append((texture, start, k + 2))
    frames, masks = [], []
    for t in range(num_frames):
        shift_x, shift_y = round(velocity[0] * t), round(velocity[1] * t)
        frame = background[:, margin + shift_y : margin + shift_y + height, margin + shift_x : margin + shift_x + width]
        mask = torch.zeros(height, width, dtype=torch.long)
        for k, (texture, (start_x, start_y), factor) in enumerate(objects):
            move_x, move_y = factor * velocity[0] * t, factor * velocity[1] * t
            disc = (xs - start_x - move_x) ** 2 + (ys - start_y - move_y) ** 2 <= radius**2
            moved = texture.roll((round(move_y), round(move_x)), dims=(1, 2))  # the texture travels with the disc
            frame = torch.where(disc, moved, frame)
            mask[disc] = k + 1
        frames.append(frame)
        masks.append(mask)
    return torch.stack(frames), torch.stack(masks)
