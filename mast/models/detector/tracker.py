"""Tracking with the detector [Dave]: one track per object, each a detection per frame, merged into labels.

Frames are resized so that their shorter side is ``input_size`` pixels (the
scale the training crops have: ``data.size`` over the frame's shorter side),
and boxes are mapped back to the frame. Start: each object's min-max box of its
first-frame mask (:func:`~mast.models.detector.template.check_box`) gives its
discriminative template ``T_d``. Step: the frame's pyramid, reweighted by each
object's similarity maps (not with the attention off), gives each object its
proposals and the heads' scored, refined detections; the best one (score:
sigmoid of the box head's logit) is the object's box, its mask (sigmoid,
pasted into the frame through :func:`mast.ops.window_sample`) its mask.

Temporal smoothness ([Dave §4.2], ``temporal``, on by default): each candidate's
score becomes ``alpha c + (1 - alpha) j`` (``alpha`` = ``temporal_weight``, 0.6),
``j`` the IoU of its thresholded mask with the last selected mask; the
re-scoring is switched off when the track breaks (box IoU of consecutive
selections below ``break_iou``, 0.1) and back on after ``recover_frames`` (30)
consecutive frames with box IoU above ``recover_iou`` (0.3).

An object whose best score (before re-scoring) is below ``lost_score`` is lost
for that frame: its box stays, its mask is empty. Several objects: masks
weighted by each object's score relative to the best one
(:func:`mast.models.siammask.tracker.merge_objects`, as SiamMask's tracker does).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from mast.common.checkpoints import load_checkpoint
from mast.common.config import FieldError, require
from mast.common.errors import ArgumentError
from mast.common.outputs import file_sha256
from mast.models.detector.model import Detector, clip_boxes
from mast.models.detector.regions import paste_box_masks
from mast.models.detector.template import check_box
from mast.models.siammask.geometry import box_iou, minmax_box
from mast.models.siammask.tracker import merge_objects
from mast.models.tracker import TrackerStep


@dataclass(frozen=True)
class TrackerConfig:
    """Attributes:
    input_size: frames are resized so that their shorter side has this many pixels (``data.size``).
    temporal: the temporal smoothness re-scoring (module docstring).
    temporal_weight: its ``alpha``, the weight of the detection score against the mask IoU.
    break_iou / recover_iou / recover_frames: it is off after a box IoU below ``break_iou`` between
        consecutive selections, on again after ``recover_frames`` frames in a row above ``recover_iou``.
    mask_threshold: a pixel is the object's where its (score-weighted) mask probability exceeds this.
    lost_score: the object counts as lost in a frame when its best score is below this.
    """

    input_size: int = 255
    temporal: bool = True
    temporal_weight: float = 0.6
    break_iou: float = 0.1
    recover_iou: float = 0.3
    recover_frames: int = 30
    mask_threshold: float = 0.5
    lost_score: float = 0.1

    def __post_init__(self) -> None:
        require(16 <= self.input_size <= 4096, "input_size", "must be an integer of pixels in 16..4096",
                self.input_size)
        for name in ("temporal_weight", "break_iou", "recover_iou", "mask_threshold", "lost_score"):
            value = getattr(self, name)
            require(0 <= value <= 1, name, "must be a number in [0, 1]", value)
        require(self.recover_frames >= 1, "recover_frames", "must be an integer >= 1", self.recover_frames)


def override_tracker_config(config: TrackerConfig, overrides: dict[str, Any]) -> TrackerConfig:
    """``config`` with ``overrides`` (field -> value; None keeps it); an unknown field or a value it
    refuses is an :class:`~mast.common.errors.ArgumentError` naming the field."""
    known = [field.name for field in fields(TrackerConfig)]
    for name in overrides:
        if name not in known:
            raise ArgumentError(name, f"not a detector tracker setting (those are {', '.join(known)})")
    try:
        return replace(config, **{name: value for name, value in overrides.items() if value is not None})
    except FieldError as error:
        raise ArgumentError(error.key, f"{error.rule}, got {error.value!r}") from error


class TemporalSmoothing:
    """[Dave §4.2]'s re-scoring of one track, and when it is on (module docstring)."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config, self.active, self.streak = config, True, 0

    def rescore(self, scores: torch.Tensor, mask_ious: torch.Tensor) -> torch.Tensor:
        """``alpha c + (1 - alpha) j`` while on; the scores unchanged while off."""
        if not self.active:
            return scores
        alpha = self.config.temporal_weight
        return alpha * scores + (1 - alpha) * mask_ious

    def update(self, box_iou_with_last: float) -> None:
        """Records the box IoU between the last two selections."""
        config = self.config
        if self.active:
            if box_iou_with_last < config.break_iou:
                self.active, self.streak = False, 0
            return
        self.streak = self.streak + 1 if box_iou_with_last > config.recover_iou else 0
        if self.streak >= config.recover_frames:
            self.active, self.streak = True, 0


def mask_ious(masks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IoU of each ``(K, H, W)`` bool mask with the ``(H, W)`` bool ``mask`` -> ``(K,)`` (0 when both empty)."""
    inter = torch.count_nonzero((masks & mask).flatten(1), dim=1).float()
    union = torch.count_nonzero((masks | mask).flatten(1), dim=1).float()
    return inter / union.clamp_min(1)


class DetectorTracker:
    """Runs a trained :class:`Detector` as a :class:`~mast.models.tracker.Tracker` (module docstring).

    After :meth:`start`, ``boxes`` ``(N, 4)`` ``(cx, cy, w, h)`` hold each object's box in frame
    pixels and ``scores`` ``(N,)`` its last best score.
    """

    def __init__(self, model: Detector, config: TrackerConfig | None = None, device: torch.device | str = "cpu",
                 name: str = "detector") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config or TrackerConfig()
        self.name = name

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
                        **overrides: Any) -> "DetectorTracker":
        """The tracker of a ``model.pt`` of ``mast train-baseline detector`` (read weights only), named
        ``detector:sha256:<the file's hash>``; its settings are the checkpoint's ``tracker`` section
        with ``overrides`` (fields of :class:`TrackerConfig`)."""
        payload = load_checkpoint(path, "detector checkpoint")
        model = Detector.from_payload(payload, path)
        try:
            saved = TrackerConfig(**payload.get("tracker", {}))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} holds invalid tracker settings: {error}") from error
        return cls(model, override_tracker_config(saved, overrides), device, name=f"detector:sha256:{file_sha256(path)}")

    def settings(self) -> dict:
        net = self.model.config
        return {"model": "detector", "attention": net.attention, "template": net.template, **asdict(self.config)}

    def _pyramid(self, frame: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid ``(1, C, ., .)`` per level of ``frame`` ``(3, H, W)`` at the tracker's scale."""
        resized = F.interpolate(frame.to(self.device)[None], size=self.input_shape, mode="bilinear",
                                align_corners=False, antialias=self.scale < 1).clamp(0, 1)
        return self.model.pyramid(resized)

    def _to_input(self, boxes: torch.Tensor) -> torch.Tensor:
        """Frame boxes -> boxes of the resized frame (pixel centres map as ``align_corners=False``)."""
        return torch.cat([(boxes[:, :2] + 0.5) * self.scale - 0.5, boxes[:, 2:] * self.scale], dim=1)

    def _to_frame(self, boxes: torch.Tensor) -> torch.Tensor:
        return torch.cat([(boxes[:, :2] + 0.5) / self.scale - 0.5, boxes[:, 2:] / self.scale], dim=1)

    @torch.no_grad()
    def start(self, frame: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.to(self.device)
        self.height, self.width = labels.shape
        if int(labels.max()) < 1:
            raise ValueError("the first-frame labels hold no object (all background); nothing to track")
        boxes = []
        for label in range(1, int(labels.max()) + 1):
            box = minmax_box((labels == label).cpu())
            if box is None:
                raise ValueError(f"object label {label} has an empty first-frame mask; nothing to track")
            check_box(box, self.height, self.width)
            boxes.append(box)
        self.boxes = torch.stack(boxes).to(self.device)
        self.scale = self.config.input_size / min(self.height, self.width)
        self.input_shape = (max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale)))
        count = len(self.boxes)
        self.templates = None
        if self.model.config.attention:
            pyramid = [level.expand(count, -1, -1, -1) for level in self._pyramid(frame)]
            self.templates = self.model.templates(pyramid, self._to_input(self.boxes))
        objects = torch.stack([labels == label for label in range(1, count + 1)]).float()
        # The last selected masks, at the tracker's scale: the temporal re-scoring compares candidates with them.
        self.masks = F.interpolate(objects[None], size=self.input_shape, mode="nearest")[0] > 0.5
        self.scores = torch.ones(count, device=self.device)
        self.smoothing = [TemporalSmoothing(self.config) for _ in range(count)]

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> TrackerStep:
        count, model = len(self.boxes), self.model
        pyramid = self.model.attend([level.expand(count, -1, -1, -1) for level in self._pyramid(frame)],
                                    self.templates)
        objectness, sides = model.propose(pyramid)
        rois = model.proposals(objectness, sides, self.input_shape)
        batch_index = torch.cat([torch.full((len(r),), n, dtype=torch.long, device=self.device)
                                 for n, r in enumerate(rois)])
        heads = model.detect(pyramid, torch.cat(rois), batch_index)
        input_boxes = clip_boxes(heads["boxes"], self.input_shape)
        boxes = self._to_frame(input_boxes)
        scores, probabilities = heads["score"].sigmoid(), heads["masks"].sigmoid()
        masks = torch.zeros(count, self.height, self.width, device=self.device)
        best_scores = torch.zeros(count, device=self.device)
        for n in range(count):
            chosen = batch_index == n
            mask, best_scores[n] = self._select(n, boxes[chosen], input_boxes[chosen], scores[chosen],
                                                probabilities[chosen])
            masks[n] = mask
        self.scores = best_scores
        out = torch.cat([self.boxes[:, :2] - (self.boxes[:, 2:] - 1) / 2, self.boxes[:, 2:]], dim=1)  # (x, y, w, h)
        return TrackerStep(merge_objects(masks, best_scores, self.config.mask_threshold), out)

    def _select(self, n: int, boxes: torch.Tensor, input_boxes: torch.Tensor, scores: torch.Tensor,
                probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object ``n``'s detection among its candidates (``boxes`` in the frame's pixels and in the
        resized frame's): updates its box, mask and smoothing state; returns its mask probabilities
        ``(H, W)`` (empty when lost) and its raw score."""
        config, smoothing = self.config, self.smoothing[n]
        ranked = scores
        if config.temporal and smoothing.active:
            pasted = paste_box_masks(probabilities, input_boxes, *self.input_shape) > config.mask_threshold
            ranked = smoothing.rescore(scores, mask_ious(pasted, self.masks[n]))
        best = int(ranked.argmax())
        if float(scores[best]) < config.lost_score:
            return torch.zeros(self.height, self.width, device=self.device), scores[best]
        mask = paste_box_masks(probabilities[best:best + 1], boxes[best:best + 1], self.height, self.width)[0]
        if config.temporal:
            smoothing.update(float(box_iou(self.boxes[n], boxes[best])))
            self.masks[n] = paste_box_masks(probabilities[best:best + 1], input_boxes[best:best + 1],
                                            *self.input_shape)[0] > config.mask_threshold
        self.boxes[n] = boxes[best]
        return mask, scores[best]
