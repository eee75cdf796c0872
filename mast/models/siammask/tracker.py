"""Tracking with SiamMask [SiamMask]: one Siamese tracker per object, merged into labels.

Start: each object's box is taken from its first-frame mask (``box_from``:
``minmax``, the axis-aligned box as the paper does on DAVIS, or ``rotated``,
the centre and sides of the minimum-area rotated rectangle), and its exemplar
(127x127, context rule, mean padding) is turned into the branches' kernels once
(with ``nearest_match``, with the first-frame mask cropped the same way).

Step: a 255x255 search crop around each object's last box ([Carlier]'s
heuristics on the scores): a cosine (Hann) window on the RoW grid weighted by
``window_influence``; three-branch: SiamRPN's scale and ratio penalty
``exp(-penalty_k (max(r/r', r'/r) max(s/s', s'/s) - 1))`` on every anchor's
proposal, the best proposal moves the box (its size by a rate ``lr`` scaled by
penalty and score); two-branch: the best RoW's mask gives the next box (the
centre of its Min-max / rotated box, its size at the same rate; the RoW centre
and the old size when the mask is empty or the mask branch is off). The best RoW's mask (sigmoid) is pasted back into
the frame at full resolution through :func:`square_crop`, the library's one
sampler. Without a mask branch (SiamFC, SiamRPN) an object's mask is its box.
Every step reports each object's box ``(x, y, w, h)`` (its centre and sides as
tracked); with ``box_from="rotated"`` also the minimum-area rectangle of its
thresholded mask, the rotated box the paper reports.

SiamFC's scale estimation (two-branch, ``scale_step > 1``) [SiamFC]: the search
region is cropped at three scales, ``side * scale_step^(-1, 0, 1)``; the scores of
the two changed scales are multiplied by ``scale_penalty``, and the best RoW over
all three gives the centre (that crop's RoW centre) and the size (the old size
times the chosen scale, at the rate ``lr * score``), so the box no longer follows
the thresholded mask: a shrinking mask cannot shrink the search region with it.

An object is *lost* in a frame when its best raw score is below ``lost_score``
(it left the frame, or is occluded): its box stays where it was and its mask is
empty for that frame; the search continues around the last box, so it is found
again when it comes back.

A *collapsing* mask (``min_area > 0``, mask branch only) is refused: when the
thresholded mask of an object covers fewer than ``min_area`` times the pixels of
its first-frame mask, its box stays where it was and the frame reports the last
mask that was not refused (the first frame's at first). A briefly trained mask
branch under-segments; without the rule the two-branch box follows the shrunken
mask and the search region shrinks frame after frame.

Several objects: each object's mask probability is weighted by its score relative
to the best-scoring object; a pixel goes to the object of the largest weighted
probability when that exceeds the background's ``1 - max`` (so a single object
is foreground where its mask exceeds 0.5, as in the paper) and overlaps go to the
more confident tracker. Probabilities are normalised to sum to 1.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from mast.common.checkpoints import load_checkpoint
from mast.common.config import FieldError, require
from mast.common.errors import ArgumentError
from mast.common.outputs import file_sha256
from mast.models.siammask.geometry import (
    EXEMPLAR_SIZE, RESPONSE_SIZE, SEARCH_SIZE, decode_boxes, exemplar_side, make_anchors, mask_box,
    rotated_box, row_coordinates, search_side, unravel_rows,
)
from mast.models.siammask.model import SiamMask
from mast.models.tracker import TrackerStep
from mast.ops.crops import square_crop

BOX_METHODS = ("minmax", "rotated")
#: The smallest box side kept while tracking, in pixels (a box never collapses to nothing).
MIN_SIDE = 10.0


@dataclass(frozen=True)
class TrackerConfig:
    """Attributes:
    window_influence: weight of the cosine window against the scores, in ``[0, 1]``.
    penalty_k: three-branch: strength of the scale / ratio change penalty (>= 0).
    lr: how fast the box size follows the best proposal (two-branch: the mask's box), in ``[0, 1]``;
        the rate is ``lr`` times the score (three-branch: and the penalty).
    mask_threshold: a pixel is the object's where its (score-weighted) mask probability exceeds
        this (the paper: 0.5); also the threshold of the two-branch variant's box.
    lost_score: the object counts as lost in a frame when its best score is below this.
    box_from: how a mask becomes a box, ``minmax`` or ``rotated`` (first frame; two-branch: every frame).
    scale_step: two-branch: SiamFC's scale search over ``scale_step^(-1, 0, 1)`` (SiamFC: 1.0375);
        1 turns it off (the box then follows the mask, [SiamMask]'s two-branch tracking).
    scale_penalty: two-branch, ``scale_step > 1``: the factor on the changed scales' scores (SiamFC: 0.9745).
    min_area: refuse a mask covering fewer than this fraction of the first mask's pixels (0: never).
    """

    window_influence: float = 0.4
    penalty_k: float = 0.1
    lr: float = 0.3
    mask_threshold: float = 0.5
    lost_score: float = 0.1
    box_from: str = "minmax"
    scale_step: float = 1.0
    scale_penalty: float = 0.9745
    min_area: float = 0.0

    def __post_init__(self) -> None:
        for name in ("window_influence", "lr", "mask_threshold", "lost_score", "scale_penalty", "min_area"):
            value = getattr(self, name)
            require(0 <= value <= 1, name, "must be a number in [0, 1]", value)
        require(self.penalty_k >= 0, "penalty_k", "must be a number >= 0", self.penalty_k)
        require(self.scale_step >= 1, "scale_step", "must be a number >= 1 (1: no scale search)", self.scale_step)
        require(self.box_from in BOX_METHODS, "box_from", f"must be one of {', '.join(BOX_METHODS)}", self.box_from)


def saved_tracker_config(payload: dict[str, Any], path: str | os.PathLike) -> TrackerConfig:
    """The :class:`TrackerConfig` of a ``model.pt`` payload's ``tracker`` section (defaults where it is empty)."""
    try:
        return TrackerConfig(**payload.get("tracker", {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds invalid tracker settings: {error}") from error


def override_tracker_config(config: TrackerConfig, overrides: dict[str, Any]) -> TrackerConfig:
    """``config`` with ``overrides`` (field -> value; None keeps the field's value); an unknown
    field or a value it refuses is an :class:`~mast.common.errors.ArgumentError` naming the field."""
    known = [field.name for field in fields(TrackerConfig)]
    for name in overrides:
        if name not in known:
            raise ArgumentError(name, f"not a SiamMask tracker setting (those are {', '.join(known)})")
    try:
        return replace(config, **{name: value for name, value in overrides.items() if value is not None})
    except FieldError as error:
        raise ArgumentError(error.key, f"{error.rule}, got {error.value!r}") from error


@dataclass
class SearchView:
    """What one tracking step (or training pair) looked like, in search-crop pixels.

    Attributes:
        search: ``(3, 255, 255)`` the search crop.
        score: ``(17, 17)`` the object score of every RoW (three-branch: its best anchor's).
        box: ``(4,)`` ``(cx, cy, w, h)`` the box chosen (tracking: the object's new box).
        mask: ``(255, 255)`` the chosen RoW's mask probabilities, 0 outside its window; None
            without a mask branch.
    """

    search: torch.Tensor
    score: torch.Tensor
    box: torch.Tensor
    mask: torch.Tensor | None


def window_in_search(probabilities: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """A RoW's ``(S, S)`` mask probabilities placed on the ``255 x 255`` search crop; ``row`` ``(2,)``
    is its ``(i, j)``."""
    coords = row_coordinates(probabilities.device)
    center = torch.stack([coords[row[1]], coords[row[0]]])
    return paste_mask(probabilities, center, float(EXEMPLAR_SIZE), SEARCH_SIZE, SEARCH_SIZE)


def cosine_window(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(17, 17)``: the outer product of two Hann windows, 1 at the centre RoW."""
    hann = torch.hann_window(RESPONSE_SIZE + 2, periodic=False, device=device)[1:-1]
    return torch.outer(hann, hann) / hann.max() ** 2


def paste_mask(mask: torch.Tensor, center: torch.Tensor, side: float, height: int, width: int) -> torch.Tensor:
    """A window's mask back in the frame.

    Args:
        mask: ``(S, S)`` probabilities covering a square of ``side`` frame pixels around
            ``center`` ``(2,)`` ``(x, y)``, sample ``k`` at ``center + (k - (S - 1) / 2) side / S``.
    Returns:
        ``(height, width)`` probabilities, 0 outside the square.
    """
    size = mask.shape[-1]
    out = max(height, width) | 1  # an odd square over the frame whose output pixel (i, j) is frame pixel (j, i)
    middle = (out - 1) / 2
    spacing = size / side  # mask samples per frame pixel
    at = ((middle - center) * spacing + (size - 1) / 2).view(1, 2)
    pasted = square_crop(mask.view(1, 1, size, size), at, mask.new_tensor([out * spacing]), out)
    return pasted[0, 0, :height, :width]


def best_scale_row(score: torch.Tensor, factors: torch.Tensor, window: torch.Tensor, influence: float,
                   scale_penalty: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SiamFC's choice [SiamFC] among ``S`` search scales: ``(N, S, 17, 17)`` scores in ``[0, 1]``
    of the crops scaled by ``factors`` ``(S,)``; the scores of scales other than 1 are multiplied by
    ``scale_penalty``, then blended with the ``(17, 17)`` cosine ``window`` by ``influence``.

    Returns:
        ``(scale index, i, j)``, each ``(N,)`` long: the best RoW of each object.
    """
    penalty = torch.where(factors == 1, 1.0, scale_penalty).view(1, -1, 1, 1)
    best = (penalty * score * (1 - influence) + window * influence).flatten(1).argmax(dim=1)
    return unravel_rows(best)


def merge_objects(masks: torch.Tensor, scores: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-object mask probabilities ``(N, H, W)`` and scores ``(N,)`` -> ``(N + 1, H, W)``
    label probabilities (module docstring); an object beats the background where its
    weighted probability exceeds ``threshold``."""
    relative = scores / scores.max() if float(scores.max()) > 0 else torch.zeros_like(scores)
    objects = masks * relative.view(-1, 1, 1)
    # p > t / (1 - t) * (1 - p) exactly when p > t: 1 - max for the paper's t = 0.5.
    background = (1 - objects.max(dim=0, keepdim=True).values) * threshold / max(1 - threshold, 1e-6)
    probabilities = torch.cat([background, objects])
    return probabilities / probabilities.sum(dim=0, keepdim=True).clamp_min(1e-12)


def _extent(sizes: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` ``(w, h)`` -> the context-padded side of :func:`exemplar_side` (SiamRPN's scale ``s``)."""
    return exemplar_side(sizes[..., 0], sizes[..., 1])


def _change(ratio: torch.Tensor) -> torch.Tensor:
    return torch.maximum(ratio, 1 / ratio)


class SiamMaskTracker:
    """Runs a trained :class:`SiamMask` as a :class:`~mast.models.tracker.Tracker` (module docstring).

    Args:
        model: the network (put in eval mode here).
        config: the tracking heuristics.
        device: where it runs.
        name: what the results are recorded as made with (the CLI names a checkpoint by its hash).

    After :meth:`start`, ``centers`` / ``sizes`` ``(N, 2)`` hold each object's box and
    ``scores`` ``(N,)`` its last best score.
    """

    def __init__(self, model: SiamMask, config: TrackerConfig | None = None, device: torch.device | str = "cpu",
                 name: str = "siammask") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config or TrackerConfig()
        self.name = name
        self.window = cosine_window(self.device)
        self.anchors = make_anchors(model.config.anchor_ratios, model.config.anchor_scale, self.device)
        #: Set True to keep :attr:`view` (the first object's last :class:`SearchView`) at every step.
        self.record_view = False
        self.view: SearchView | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
                        **overrides: Any) -> "SiamMaskTracker":
        """The tracker of a ``model.pt`` of ``mast train-baseline siammask`` (read weights only),
        named ``siammask:sha256:<the file's hash>``.

        Its settings are the checkpoint's ``tracker`` section with ``overrides``, fields of
        :class:`TrackerConfig` (e.g. ``box_from="rotated"``; None keeps the saved value).
        """
        payload = load_checkpoint(path, "SiamMask checkpoint")
        model = SiamMask.from_payload(payload, path)
        config = override_tracker_config(saved_tracker_config(payload, path), overrides)
        return cls(model, config, device, name=f"siammask:sha256:{file_sha256(path)}")

    def settings(self) -> dict:
        net = self.model.config
        return {"model": "siammask", "branches": net.branches, "mask": net.mask, "refine": net.refine,
                **asdict(self.config)}

    @torch.no_grad()
    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        frame, labels = frame.to(self.device), labels.to(self.device)
        self.height, self.width = labels.shape
        if int(labels.max()) < 1:
            raise ValueError("the first-frame labels hold no object (all background); nothing to track")
        boxes = []
        for label in range(1, int(labels.max()) + 1):
            box = mask_box((labels == label).cpu(), self.config.box_from)
            if box is None:
                raise ValueError(f"object label {label} has an empty first-frame mask; nothing to track")
            boxes.append(box.to(self.device))
        boxes = torch.stack(boxes)
        self.centers, self.sizes = boxes[:, :2].clone(), boxes[:, 2:].clamp_min(MIN_SIDE)
        self.scores = torch.ones(len(boxes), device=self.device)
        self.accepted = torch.stack([(labels == label).float() for label in range(1, len(boxes) + 1)])
        self.first_areas = self.accepted.sum((1, 2))
        sides = exemplar_side(self.sizes[:, 0], self.sizes[:, 1])
        crops = self._crops(frame, self.centers, sides, EXEMPLAR_SIZE)
        # The exemplar's mask on the same grid as its crop (0 outside the frame), for nearest_match.
        masks = square_crop(self.accepted[:, None], self.centers, sides, EXEMPLAR_SIZE)[:, 0]
        self.templates = self.model.templates(crops, masks)
        self.view = None

    def _crops(self, frame: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor, size: int) -> torch.Tensor:
        count = len(centers)
        images = frame.unsqueeze(0).expand(count, -1, -1, -1)
        return square_crop(images, centers, sides, size, fill=frame.mean((1, 2)).expand(count, -1))

    def _scale_factors(self) -> torch.Tensor:
        """The search scales: SiamFC's ``scale_step^(-1, 0, 1)`` (two-branch), else ``(1,)``."""
        step = self.config.scale_step if self.model.config.branches == 2 else 1.0
        return torch.tensor([1 / step, 1.0, step] if step > 1 else [1.0], device=self.device)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> TrackerStep:
        frame = frame.to(self.device)
        if tuple(frame.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"frame is {tuple(frame.shape[-2:])} but the video started at "
                             f"{(self.height, self.width)} (H, W)")
        factors = self._scale_factors()
        count, scales = len(self.centers), len(factors)
        sides = (search_side(self.sizes[:, 0], self.sizes[:, 1]).view(-1, 1) * factors).flatten()  # (N * S,)
        crops = self._crops(frame, self.centers.repeat_interleave(scales, 0), sides, SEARCH_SIZE)
        templates = {name: kernel.repeat_interleave(scales, 0) for name, kernel in self.templates.items()}
        response = self.model.respond(templates, crops)
        if self.model.config.branches == 3:
            rows, scores, centers, sizes = self._select_proposal(response, SEARCH_SIZE / sides)
        else:
            rows, scores, centers, sizes = self._select_row(response, factors, SEARCH_SIZE / sides.view(count, scales))
        scale = SEARCH_SIZE / sides[rows[:, 0]]  # search-crop pixels per frame pixel of the chosen crops, (N,)
        probabilities, masks = self._masks(response, rows, scale)
        if self.model.config.branches == 2 and self.model.config.mask and scales == 1:
            centers, sizes = self._boxes_of(masks, centers, sizes, scores)
        lost = scores < self.config.lost_score
        refused = self._collapsed(masks) & ~lost
        previous = self.centers
        keep = (lost | refused).view(-1, 1)
        self.centers = torch.where(keep, self.centers, centers)
        self.centers[:, 0].clamp_(0, self.width - 1)
        self.centers[:, 1].clamp_(0, self.height - 1)
        sizes = torch.where(keep, self.sizes, sizes)
        self.sizes = torch.stack([sizes[:, 0].clamp(MIN_SIDE, max(self.width, MIN_SIDE)),
                                  sizes[:, 1].clamp(MIN_SIDE, max(self.height, MIN_SIDE))], dim=1)
        self.scores = scores
        if self.record_view:
            self.view = self._view(crops[rows[0, 0]], response, rows, probabilities, previous, scale[0])
        if not self.model.config.mask:
            masks = self._box_masks()
        masks = torch.where(refused.view(-1, 1, 1), self.accepted, masks)
        self.accepted = torch.where((lost | refused).view(-1, 1, 1), self.accepted, masks)
        masks = masks * (~lost).view(-1, 1, 1)
        boxes = torch.cat([self.centers - (self.sizes - 1) / 2, self.sizes], dim=1)  # (x, y, w, h)
        rotated = self._rotated_boxes(masks) if self.config.box_from == "rotated" else None
        return TrackerStep(merge_objects(masks, scores.clamp_min(0), self.config.mask_threshold), boxes, rotated)

    def _collapsed(self, masks: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: the objects whose thresholded mask ``(N, H, W)`` covers fewer than
        ``min_area`` times their first mask's pixels (never without a mask branch)."""
        if not self.model.config.mask or self.config.min_area <= 0:
            return torch.zeros(len(masks), dtype=torch.bool, device=self.device)
        areas = (masks > self.config.mask_threshold).sum((1, 2))
        return areas < self.config.min_area * self.first_areas

    def _view(self, crop: torch.Tensor, response: dict, rows: torch.Tensor, probabilities: torch.Tensor | None,
              previous: torch.Tensor, scale: torch.Tensor) -> SearchView:
        """What the first object's step saw, in its chosen search crop's pixels (for pictures)."""
        batch = int(rows[0, 0])
        score = response["score"][batch]
        score = score.softmax(dim=1)[:, 1].max(dim=0).values if score.dim() == 4 else score[0].sigmoid()
        box = torch.cat([(self.centers[0] - previous[0]) * scale + (SEARCH_SIZE - 1) / 2, self.sizes[0] * scale])
        return SearchView(crop, score, box, None if probabilities is None else
                          window_in_search(probabilities[0], rows[0, 1:]))

    def _rotated_boxes(self, masks: torch.Tensor) -> torch.Tensor:
        """``(N, 5)`` ``(cx, cy, w, h, angle)``: the minimum-area rectangle of each object's
        thresholded mask ``(N, H, W)``, the box [SiamMask] reports (NaN where the mask is empty)."""
        found = [rotated_box((mask > self.config.mask_threshold).cpu()) for mask in masks]
        return torch.tensor([box if box is not None else (float("nan"),) * 5 for box in found])

    def _select_proposal(self, response: dict, scale: torch.Tensor):
        """Three-branch: the best anchor proposal under the penalties -> ``(rows, scores, centers, sizes)``."""
        score = response["score"].softmax(dim=2)[:, :, 1]  # (N, k, 17, 17)
        boxes = decode_boxes(response["box"].permute(0, 1, 3, 4, 2), self.anchors)  # (N, k, 17, 17, 4) crop px
        previous = (self.sizes * scale.view(-1, 1)).view(-1, 1, 1, 1, 2)
        scale_change = _change(_extent(boxes[..., 2:]) / _extent(previous))
        ratio_change = _change((previous[..., 0] / previous[..., 1]) / (boxes[..., 2] / boxes[..., 3]))
        penalty = torch.exp(-(scale_change * ratio_change - 1) * self.config.penalty_k)
        influence = self.config.window_influence
        ranked = penalty * score * (1 - influence) + self.window * influence
        best = ranked.flatten(1).argmax(dim=1)
        count = len(best)
        anchor, i, j = unravel_rows(best)
        index = torch.arange(count, device=self.device)
        chosen = boxes[index, anchor, i, j]  # (N, 4)
        rate = (penalty[index, anchor, i, j] * score[index, anchor, i, j] * self.config.lr).view(-1, 1)
        centers = self.centers + (chosen[:, :2] - (SEARCH_SIZE - 1) / 2) / scale.view(-1, 1)
        sizes = self.sizes * (1 - rate) + chosen[:, 2:] / scale.view(-1, 1) * rate
        return torch.stack([index, i, j], dim=1), score[index, anchor, i, j], centers, sizes

    def _select_row(self, response: dict, factors: torch.Tensor, scale: torch.Tensor):
        """Two-branch: the best RoW over the ``S`` search scales ``factors`` under the cosine window
        and SiamFC's scale penalty -> ``(rows, scores, centers, sizes)``; ``rows[:, 0]`` indexes the
        ``N * S`` crops, ``scale`` ``(N, S)`` is each crop's search-crop pixels per frame pixel."""
        count, scales = scale.shape
        score = response["score"][:, 0].sigmoid().view(count, scales, RESPONSE_SIZE, RESPONSE_SIZE)
        chosen, i, j = best_scale_row(score, factors, self.window, self.config.window_influence,
                                      self.config.scale_penalty)
        index = torch.arange(count, device=self.device)
        coords = row_coordinates(self.device)
        offsets = torch.stack([coords[j], coords[i]], dim=1) - (SEARCH_SIZE - 1) / 2
        centers = self.centers + offsets / scale[index, chosen].view(-1, 1)
        best_scores = score[index, chosen, i, j]
        rate = (self.config.lr * best_scores).view(-1, 1)
        sizes = self.sizes * (1 - rate) + self.sizes * factors[chosen].view(-1, 1) * rate
        return torch.stack([index * scales + chosen, i, j], dim=1), best_scores, centers, sizes

    def _masks(self, response: dict, rows: torch.Tensor, scale: torch.Tensor):
        """The chosen RoWs' mask probabilities ``(N, S, S)`` (None without a mask branch) and the
        same pasted into the frame, ``(N, H, W)`` (zeros without a mask branch)."""
        if not self.model.config.mask:
            return None, torch.zeros(len(rows), self.height, self.width, device=self.device)
        probabilities = self.model.row_masks(response, rows).sigmoid()
        coords = row_coordinates(self.device)
        offsets = torch.stack([coords[rows[:, 2]], coords[rows[:, 1]]], dim=1) - (SEARCH_SIZE - 1) / 2
        window_centers = self.centers + offsets / scale.view(-1, 1)
        pasted = [paste_mask(p, c, float(EXEMPLAR_SIZE / s), self.height, self.width)
                  for p, c, s in zip(probabilities, window_centers, scale)]
        return probabilities, torch.stack(pasted)

    def _boxes_of(self, masks: torch.Tensor, centers: torch.Tensor, sizes: torch.Tensor, scores: torch.Tensor):
        """Two-branch: the centres of the thresholded masks' boxes, and their sizes at the rate
        ``lr * score`` as in the three-branch update (unchanged where a mask is empty)."""
        centers, sizes = centers.clone(), sizes.clone()
        for n, mask in enumerate(masks):
            box = mask_box((mask > self.config.mask_threshold).cpu(), self.config.box_from)
            if box is not None:
                rate = self.config.lr * float(scores[n])
                centers[n] = box[:2].to(self.device)
                sizes[n] = sizes[n] * (1 - rate) + box[2:].to(self.device) * rate
        return centers, sizes

    def _box_masks(self) -> torch.Tensor:
        """``(N, H, W)``: 1 inside each object's box (the mask of SiamFC / SiamRPN)."""
        xs = torch.arange(self.width, device=self.device).view(1, 1, -1)
        ys = torch.arange(self.height, device=self.device).view(1, -1, 1)
        half = (self.sizes / 2).view(-1, 2, 1, 1)
        inside_x = (xs - self.centers[:, 0].view(-1, 1, 1)).abs() <= half[:, 0]
        inside_y = (ys - self.centers[:, 1].view(-1, 1, 1)).abs() <= half[:, 1]
        return (inside_x & inside_y).float()
