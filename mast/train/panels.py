"""Pictures for TensorBoard, as RGB: the self-supervised query, its target and reconstruction; the
baselines' tracking tiles (a frame or crop with a mask and a box, a score map), one look for all."""
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


# -- tracking panels: a frame, the box a tracker looks in, a mask -------------------------------------------------

#: Colour of the box drawn on a tile (RGB, uint8): yellow, unlike the DAVIS palette's object colours.
BOX_COLOUR = (255, 230, 0)


def mask_tile(frame: torch.Tensor, mask: torch.Tensor, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """``(3, H, W)`` in ``[0, 1]``: ``frame`` ``(3, H, W)`` with ``mask`` ``(H, W)`` (above 0.5 is the
    object) blended in and outlined as :func:`mast.eval.visualize.overlay` draws results, and
    ``box`` ``(x0, y0, x1, y1)`` (end exclusive) drawn in :data:`BOX_COLOUR`."""
    import cv2

    from mast.eval.visualize import overlay

    pixels = (frame.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    drawn = overlay(pixels, (mask.detach().float().cpu() > 0.5).numpy().astype("uint8"))
    if box is not None:
        x0, y0, x1, y1 = box
        cv2.rectangle(drawn, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOUR, thickness=max(1, round(min(drawn.shape[:2]) / 160)))
    return torch.from_numpy(drawn).permute(2, 0, 1).float() / 255


def crop_tile(frame: torch.Tensor, mask: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """The :func:`mask_tile` of ``frame`` and ``mask`` cut to ``box`` ``(x0, y0, x1, y1)``: what a
    tracker that segments only that box sees, ``(3, y1 - y0, x1 - x0)``."""
    x0, y0, x1, y1 = box
    return mask_tile(frame[:, y0:y1, x0:x1], mask[y0:y1, x0:x1])


def tile_rows(rows: list[list[torch.Tensor]], height: int) -> torch.Tensor:
    """``(3, len(rows) * height, W)``: the ``(3, h, w)`` tiles of each row scaled to ``height`` (aspect
    kept) side by side, the rows stacked, narrower rows padded with black to the widest (``W``)."""
    lines = []
    for tiles in rows:
        scaled = [F.interpolate(tile[None].float(), size=(height, max(1, round(tile.shape[-1] * height / tile.shape[-2]))),
                                mode="bilinear", align_corners=False, antialias=True)[0] for tile in tiles]
        lines.append(torch.cat(scaled, dim=-1))
    width = max(line.shape[-1] for line in lines)
    return torch.cat([F.pad(line, (0, width - line.shape[-1])) for line in lines], dim=-2).clamp(0, 1)


def heat_panel(values: torch.Tensor, size: int) -> torch.Tensor:
    """``(h, w)`` values in ``[0, 1]`` -> ``(3, size, size)`` RGB, each cell a flat block: dark blue
    at 0 through green to yellow at 1 (nearest upsampling, so cells stay countable)."""
    blocks = F.interpolate(values.float()[None, None].clamp(0, 1), size=(size, size), mode="nearest")[0, 0]
    return torch.stack((blocks, 0.2 + 0.8 * blocks.sqrt(), 0.5 * (1 - blocks))).cpu()


def search_tiles(view, truth_box: torch.Tensor | None = None,
                 truth_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """A Siamese tracker's step as ``(3, S, S)`` tiles for :func:`tile_rows`: the search crop with the
    chosen mask and box (:func:`mask_tile`) | the score map (:func:`heat_panel`) | with a ground
    truth, the crop with the true mask and box the same way.

    Args:
        view: a :class:`mast.models.siammask.tracker.SearchView` (``search`` ``(3, S, S)``,
            ``score`` ``(h, w)`` in ``[0, 1]``, ``box`` ``(4,)`` ``(cx, cy, w, h)``, ``mask``
            ``(S, S)`` or None, all in search-crop pixels).
        truth_box: ``(4,)`` in the same pixels; truth_mask: ``(S, S)`` bool.
    """
    search = view.search.float().clamp(0, 1).cpu()
    size = search.shape[-1]
    mask = torch.zeros(size, size) if view.mask is None else view.mask.float().cpu()
    tiles = [mask_tile(search, mask, _corners(view.box)), heat_panel(view.score, size)]
    if truth_mask is not None:
        tiles.append(mask_tile(search, truth_mask.float().cpu(), None if truth_box is None else _corners(truth_box)))
    return tiles


def _corners(box: torch.Tensor) -> tuple[int, int, int, int]:
    """``(cx, cy, w, h)`` (pixel ``i`` at ``i``) -> :func:`mask_tile`'s ``(x0, y0, x1, y1)``, end exclusive."""
    cx, cy, w, h = (float(v) for v in box)
    return (round(cx - (w - 1) / 2), round(cy - (h - 1) / 2), round(cx + (w - 1) / 2) + 1, round(cy + (h - 1) / 2) + 1)
