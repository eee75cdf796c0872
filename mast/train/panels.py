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


def heat_panel(values: torch.Tensor, size: int) -> torch.Tensor:
    """``(h, w)`` values in ``[0, 1]`` -> ``(3, size, size)`` RGB, each cell a flat block: dark blue
    at 0 through green to yellow at 1 (nearest upsampling, so cells stay countable)."""
    blocks = F.interpolate(values.float()[None, None].clamp(0, 1), size=(size, size), mode="nearest")[0, 0]
    return torch.stack((blocks, 0.2 + 0.8 * blocks.sqrt(), 0.5 * (1 - blocks))).cpu()


def draw_box(image: torch.Tensor, box: torch.Tensor, colour: tuple[float, float, float]) -> torch.Tensor:
    """``image`` ``(3, H, W)`` with the outline (1 pixel) of ``box`` ``(4,)`` ``(cx, cy, w, h)``
    (pixel ``i`` at ``i``) drawn in ``colour``; the parts outside the image are left out."""
    out = image.clone()
    height, width = image.shape[-2:]
    cx, cy, w, h = (float(v) for v in box)
    x0, x1 = round(cx - (w - 1) / 2), round(cx + (w - 1) / 2)
    y0, y1 = round(cy - (h - 1) / 2), round(cy + (h - 1) / 2)
    paint = torch.tensor(colour, dtype=out.dtype, device=out.device).view(3, 1)
    xs = slice(max(x0, 0), min(x1, width - 1) + 1)
    ys = slice(max(y0, 0), min(y1, height - 1) + 1)
    for y in (y0, y1):
        if 0 <= y < height:
            out[:, y, xs] = paint
    for x in (x0, x1):
        if 0 <= x < width:
            out[:, ys, x] = paint
    return out


def mask_overlay(image: torch.Tensor, probabilities: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
    """``(3, H, W)``: ``image`` darkened, predicted pixels (``probabilities`` ``(H, W)`` > 0.5) in
    red, ground-truth pixels (``truth`` ``(H, W)`` bool, optional) in green, both yellow."""
    predicted = (probabilities > 0.5).float()
    known = torch.zeros_like(predicted) if truth is None else truth.float()
    tint = torch.stack((predicted, known, torch.zeros_like(predicted)))
    return (0.5 * image.float() + 0.5 * tint).clamp(0, 1).cpu()


def search_panel(view, truth_box: torch.Tensor | None = None, truth_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(3, S, 3S)`` for a Siamese tracker's step: the search crop with the chosen box (red) and
    the ground-truth box (green, optional) | the score map (:func:`heat_panel`) | the chosen mask
    over the crop (:func:`mask_overlay`, the ground truth in green).

    Args:
        view: a :class:`mast.models.siammask.tracker.SearchView` (``search`` ``(3, S, S)``,
            ``score`` ``(h, w)`` in ``[0, 1]``, ``box`` ``(4,)`` ``(cx, cy, w, h)``, ``mask``
            ``(S, S)`` or None, all in search-crop pixels).
        truth_box: ``(4,)`` in the same pixels; truth_mask: ``(S, S)`` bool.
    """
    search = view.search.float().clamp(0, 1).cpu()
    size = search.shape[-1]
    boxed = draw_box(search, view.box.cpu(), (1.0, 0.0, 0.0))
    if truth_box is not None:
        boxed = draw_box(boxed, truth_box.cpu(), (0.0, 1.0, 0.0))
    mask = torch.zeros(size, size) if view.mask is None else view.mask.float().cpu()
    truth = None if truth_mask is None else truth_mask.cpu()
    return torch.cat((boxed, heat_panel(view.score, size), mask_overlay(search, mask, truth)), dim=-1)


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
