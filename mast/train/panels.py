"""Pictures for TensorBoard: the query, its target, and the reconstruction, as RGB."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mast.common.colour import denormalize_lab, lab_to_rgb, normalize_lab, rgb_to_lab
from mast.train.objectives import Objective, Prepared


def class_colours(objective_name: str, classes: int, centroids: torch.Tensor | None) -> torch.Tensor | None:
    """``(3, K)`` RGB of each class: centroid colours (kmeans-ce), the DAVIS palette (mask-ce)."""
    if objective_name == "kmeans-ce":
        return lab_to_rgb(centroids.float().T[None, :, :, None])[0, :, :, 0]
    if objective_name == "mask-ce":
        from mast.common.masks import davis_palette

        return torch.from_numpy(davis_palette()[:classes]).float().T / 255
    return None


def reconstruction_panel(
    objective: Objective, frames: torch.Tensor, prepared: Prepared, reconstruction: torch.Tensor,
    colours: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(3, H, 3W)`` in ``[0, 1]``: query | target | reconstruction, first clip of the batch.

    lab-huber: the target is the query itself; the reconstruction puts the
    reconstructed channel in place of the dropped one. Class objectives:
    target and reconstruction are drawn in ``colours`` ``(3, K)`` (the
    expected colour of the reconstruction's distribution).
    """
    query = frames[0, -1].float().clamp(0, 1)
    size = query.shape[-2:]
    upsampled = F.interpolate(reconstruction[:1].float(), size=size, mode="bilinear", align_corners=False)[0]
    if prepared.dropped is not None:
        lab = normalize_lab(rgb_to_lab(query[None]))[0]
        rebuilt = lab.clone()
        rebuilt[int(prepared.dropped[0])] = upsampled[0]
        target, recon = query, lab_to_rgb(denormalize_lab(rebuilt[None]))[0]
    else:
        colours = colours.to(query.device)
        target = colours[:, prepared.target[0]]
        recon = torch.einsum("ck,khw->chw", colours, upsampled.clamp_min(0))
    return torch.cat((query, target.float(), recon.clamp(0, 1)), dim=-1).cpu()
