"""Colour: RGB <-> LAB, MAST's normalisation, image-level channel dropout."""
from __future__ import annotations

import kornia
import torch

LAB_MEAN = (50.0, 0.0, 0.0)
LAB_STD = (50.0, 127.0, 127.0)


def _stats(like: torch.Tensor, values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> LAB (L in ``[0, 100]``, a/b in about ``[-128, 127]``)."""
    return kornia.color.rgb_to_lab(rgb)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` LAB -> RGB clipped to ``[0, 1]``."""
    return kornia.color.lab_to_rgb(lab, clip=True)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """MAST normalisation: mean (50, 0, 0), std (50, 127, 127) -> roughly ``[-1, 1]``."""
    return (lab - _stats(lab, LAB_MEAN)) / _stats(lab, LAB_STD)


def denormalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_lab`."""
    return lab * _stats(lab, LAB_STD) + _stats(lab, LAB_MEAN)


def drop_ab_channel(
    lab: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAST's image-level channel dropout: zero one of a/b per sample, rescale the rest.

    The network then cannot copy colour from the input and has to find
    correspondences to reconstruct the dropped channel. Every frame of a
    sample loses the same channel.

    Args:
        lab: ``(B, 3, H, W)`` or ``(B, N, 3, H, W)`` normalised LAB (channels L, a, b).

    Returns:
        ``(dropped, channel)``: the input with channel ``channel[i]`` (1 or 2)
        of sample ``i`` zeroed and the other two scaled by 3/2; ``channel`` ``(B,)`` long.
    """
    batch = lab.shape[0]
    channel = torch.randint(1, 3, (batch,), generator=generator)
    keep = torch.full((batch, 3), 1.5)
    keep[torch.arange(batch), channel] = 0
    shape = (batch,) + (1,) * (lab.dim() - 4) + (3, 1, 1)
    return lab * keep.to(lab).view(shape), channel.to(lab.device)


def drop_channels_corrflow(
    image: torch.Tensor, keep_all_prob: float = 0.3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """CorrFlow's dropout: keep all channels with probability ``keep_all_prob``,
    otherwise zero one or two (chosen uniformly), rescaling the kept ones.
    Every frame of a sample is treated alike.

    Args:
        image: ``(B, 3, H, W)`` or ``(B, N, 3, H, W)``.
    """
    batch = image.shape[0]
    keep = torch.ones(batch, 3)
    for i in range(batch):
        if torch.rand((), generator=generator) >= keep_all_prob:
            num_dropped = int(torch.randint(1, 3, (), generator=generator))
            keep[i, torch.randperm(3, generator=generator)[:num_dropped]] = 0
    scale = 3.0 / keep.sum(dim=1, keepdim=True)
    shape = (batch,) + (1,) * (image.dim() - 4) + (3, 1, 1)
    return image * (keep * scale).to(image).view(shape)
