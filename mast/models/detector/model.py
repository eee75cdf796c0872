"""The detection-based tracker of "Learning to Track Any Object" [Dave] on the shared backbone.

Frames ``(B, 3, H, W)`` (RGB in ``[0, 1]``) go through a
:class:`~mast.models.backbone.ResNetBackbone` (output stride 8, its ``head``
unused) and a :class:`~.fpn.FeaturePyramid` (strides 4, 8, 16). With the
attention on, every level of the search frame is reweighted by its similarity
to the template frame's discriminative template, ``P_i <- P_i . S_i``
(:mod:`.template`); off (the detection-only mode, [Dave §3.3]'s ``S = 1``)
the pyramid is used as it is. Then:

* **proposals** (a light, anchor-free stand-in for Mask R-CNN's RPN): a head
  shared by the levels (3x3 conv, ReLU) predicts per cell an objectness logit
  and the box as the log distances from the cell centre to its left, top,
  right and bottom sides in units of the level's stride; the ``pre_nms`` best
  cells of all levels, NMS at ``nms_iou``, ``proposals`` kept;
* **box head** on ``pool_size x pool_size`` regions pooled on the level each
  proposal's size maps to (:func:`.fpn.box_levels`, through
  :func:`mast.ops.window_sample`, :mod:`.regions`): two fully connected layers,
  then one class-agnostic score logit and box deltas relative to the proposal
  (:func:`~mast.models.siammask.geometry.encode_boxes`, weighted as Faster R-CNN's);
* **mask head** on ``2 pool_size`` regions: two 3x3 convs, a 2x deconvolution,
  a 1x1 conv: ``(N, 4 pool_size, 4 pool_size)`` class-agnostic mask logits over the box.

Mask R-CNN's class-specific final layers of the detection mode are left out:
the training data (DAVIS, YouTube-VOS) has no classes.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mast.common.checkpoints import load_checkpoint, save_checkpoint
from mast.common.config import require
from mast.models.backbone import BackboneConfig, ResNetBackbone, load_weights, saved_backbone_config
from mast.models.detector.fpn import STRIDES, FeaturePyramid, box_levels, level_points
from mast.models.detector.regions import nms, pool_regions
from mast.models.detector.template import TEMPLATES, discriminative_template, normalized, similarity
from mast.models.siammask.geometry import decode_boxes

#: ``model.pt``'s ``format`` entry.
FORMAT = "mast-detector"
#: Faster R-CNN's box coder weights: head outputs are these times the deltas of
#: :func:`~mast.models.siammask.geometry.encode_boxes`, so that small corrections are not lost in the loss's flat region.
DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
#: Largest predicted log side distance (in strides) and box delta, so that ``exp`` stays finite.
MAX_LOG = 6.0


@dataclass(frozen=True)
class DetectorConfig:
    """Attributes:
    channels: width of the pyramid and of the proposal head (256 in [Dave]).
    attention: reweight the pyramid by the template's similarity maps (off: a plain detector).
    template: ``ridge`` (the paper's), ``center``, ``mean-pos`` or ``mean-diff`` (:mod:`.template`).
    ridge: ``lambda`` of the ridge regression.
    negatives: negatives ``q`` of the template (evenly spaced outside the box, all levels).
    canonical_size: the box side mapped to the stride-16 level (224 in [FPN]).
    pre_nms / proposals / nms_iou: proposal cells kept before NMS, proposals kept after it, its IoU.
    pool_size: side of the box head's pooled regions (the mask head pools twice as many bins).
    hidden: width of the box head's fully connected layers.
    """

    channels: int = 64
    attention: bool = True
    template: str = "ridge"
    ridge: float = 0.1
    negatives: int = 256
    canonical_size: float = 224.0
    pre_nms: int = 200
    proposals: int = 16
    nms_iou: float = 0.7
    pool_size: int = 7
    hidden: int = 256

    def __post_init__(self) -> None:
        for name in ("channels", "negatives", "pre_nms", "proposals", "pool_size", "hidden"):
            require(getattr(self, name) >= 1, name, "must be an integer >= 1", getattr(self, name))
        require(self.template in TEMPLATES, "template", f"must be one of {', '.join(TEMPLATES)}", self.template)
        require(self.ridge > 0, "ridge", "must be a number > 0 (the regression's lambda)", self.ridge)
        require(self.canonical_size > 0, "canonical_size", "must be a number of pixels > 0", self.canonical_size)
        require(0 < self.nms_iou <= 1, "nms_iou", "must be in (0, 1]", self.nms_iou)
        require(self.proposals <= self.pre_nms, "proposals", "must be <= pre_nms", self.proposals)

    @property
    def mask_size(self) -> int:
        """Side of a predicted mask: ``4 pool_size``."""
        return 4 * self.pool_size


def decode_sides(points: torch.Tensor, sides: torch.Tensor, stride: int) -> torch.Tensor:
    """Cells' image points ``(..., 2)`` and log side distances ``(..., 4)`` (left, top, right, bottom in
    strides) -> boxes ``(..., 4)`` ``(cx, cy, w, h)``."""
    distances = torch.exp(sides.clamp(max=MAX_LOG)) * stride
    low, high = points - distances[..., :2], points + distances[..., 2:]
    return torch.cat([(low + high) / 2, high - low], dim=-1)


class Detector(nn.Module):
    """The tracker's network (module docstring) on ``ResNetBackbone(backbone_config)``."""

    def __init__(self, backbone_config: BackboneConfig, config: DetectorConfig) -> None:
        super().__init__()
        if backbone_config.output_stride != 8:
            raise ValueError(f"the detector needs a backbone of output stride 8, got model.output_stride "
                             f"{backbone_config.output_stride}")
        self.config = config
        self.backbone = ResNetBackbone(backbone_config)
        self.backbone.head = nn.Identity()  # the pyramid reads stages()
        channels, pool, hidden = config.channels, config.pool_size, config.hidden
        self.pyramid_net = FeaturePyramid(backbone_config.widths, channels)
        self.proposal_conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.objectness = nn.Conv2d(channels, 1, 1)
        self.sides = nn.Conv2d(channels, 4, 1)
        self.box_fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * pool * pool, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.box_score = nn.Linear(hidden, 1)
        self.box_delta = nn.Linear(hidden, 4)
        self.mask_head = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, channels, 2, stride=2), nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 1))
        for layer in (self.box_delta, self.sides):  # start at the regions' own boxes, and proposals 2 strides wide
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def pyramid(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """RGB frames ``(B, 3, H, W)`` -> the levels ``(B, C, ceil(H/s), ceil(W/s))`` for ``s`` = 4, 8, 16."""
        return self.pyramid_net(self.backbone.stages(self.backbone.prepare(frames)))

    def templates(self, pyramid: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """``T_d`` ``(B, C)`` of each image's box ``(B, 4)`` (``(cx, cy, w, h)`` in its pixels)."""
        config, unit = self.config, normalized(pyramid)
        return torch.stack([discriminative_template([level[b] for level in unit], boxes[b], config.template,
                                                    config.negatives, config.ridge, config.canonical_size)
                            for b in range(len(boxes))])

    def attend(self, pyramid: list[torch.Tensor], templates: torch.Tensor | None) -> list[torch.Tensor]:
        """``P_i <- P_i . S_i`` with the similarity maps of ``templates`` ``(B, C)``; None: unchanged."""
        if templates is None:
            return pyramid
        return [level * weight for level, weight in zip(pyramid, similarity(pyramid, templates))]

    def propose(self, pyramid: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: objectness logits ``(B, 1, H, W)`` and log side distances ``(B, 4, H, W)``."""
        hidden = [self.proposal_conv(level) for level in pyramid]
        return [self.objectness(h) for h in hidden], [self.sides(h) for h in hidden]

    @torch.no_grad()
    def proposals(self, objectness: list[torch.Tensor], sides: list[torch.Tensor],
                  size: tuple[int, int]) -> list[torch.Tensor]:
        """Each image's proposal boxes ``(K, 4)`` (``K <= proposals``), best first, clipped to the
        ``size`` ``(H, W)`` image: the ``pre_nms`` best cells of all levels, then NMS."""
        boxes, scores = [], []
        for logits, level_sides, stride in zip(objectness, sides, STRIDES):
            points = level_points(*logits.shape[-2:], stride, logits.device).permute(1, 2, 0)
            boxes.append(decode_sides(points, level_sides.permute(0, 2, 3, 1).float(), stride).flatten(1, 2))
            scores.append(logits[:, 0].float().flatten(1))
        boxes, scores = clip_boxes(torch.cat(boxes, dim=1), size), torch.cat(scores, dim=1)
        out = []
        for image_boxes, image_scores in zip(boxes, scores):
            top = image_scores.topk(min(self.config.pre_nms, len(image_scores))).indices
            out.append(image_boxes[top][nms(image_boxes[top], image_scores[top], self.config.nms_iou,
                                            self.config.proposals)])
        return out

    def pool(self, pyramid: list[torch.Tensor], boxes: torch.Tensor, batch_index: torch.Tensor,
             size: int) -> torch.Tensor:
        """``(N, C, size, size)`` regions of ``boxes`` ``(N, 4)``, each on the level its size maps to."""
        levels = box_levels(boxes[:, 2], boxes[:, 3], self.config.canonical_size)
        out = pyramid[0].new_zeros(len(boxes), pyramid[0].shape[1], size, size)
        for index, (level, stride) in enumerate(zip(pyramid, STRIDES)):
            chosen = levels == index
            if bool(chosen.any()):
                out[chosen] = pool_regions(level, boxes[chosen], batch_index[chosen], stride, size)
        return out

    def detect(self, pyramid: list[torch.Tensor], boxes: torch.Tensor,
               batch_index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The heads on regions ``boxes`` ``(N, 4)`` of images ``batch_index`` ``(N,)``: ``score``
        ``(N,)`` logits, ``delta`` ``(N, 4)`` (times :data:`DELTA_WEIGHTS`), ``boxes`` ``(N, 4)`` refined, ``masks`` ``(N, M, M)`` logits."""
        boxes = boxes.detach()
        hidden = self.box_fc(self.pool(pyramid, boxes, batch_index, self.config.pool_size))
        delta = self.box_delta(hidden)
        masks = self.mask_head(self.pool(pyramid, boxes, batch_index, 2 * self.config.pool_size))[:, 0]
        scaled = delta / delta.new_tensor(DELTA_WEIGHTS)
        refined = decode_boxes(torch.cat([scaled[:, :2], scaled[:, 2:].clamp(-MAX_LOG, MAX_LOG)], dim=1), boxes)
        return {"score": self.box_score(hidden)[:, 0], "delta": delta, "boxes": refined, "masks": masks}

    def search(self, frames: torch.Tensor, templates: torch.Tensor | None) -> dict[str, Any]:
        """The search frames' reweighted ``pyramid`` and its ``objectness`` and ``sides`` (:meth:`propose`)."""
        pyramid = self.attend(self.pyramid(frames), templates)
        objectness, sides = self.propose(pyramid)
        return {"pyramid": pyramid, "objectness": objectness, "sides": sides}

    def forward(self, template: torch.Tensor, template_boxes: torch.Tensor, search: torch.Tensor,
                extra_rois: torch.Tensor | None = None) -> dict[str, Any]:
        """Training: template frames ``(B, 3, H, W)`` with their boxes ``(B, 4)``, search frames
        ``(B, 3, H', W')`` -> :meth:`search`'s dict plus ``rois`` ``(N, 4)`` (each image's proposals,
        then its rows of ``extra_rois`` ``(B, J, 4)`` if given, e.g. the ground truth as R-CNNs add it),
        their ``batch_index`` ``(N,)`` and the heads' outputs on them (:meth:`detect`)."""
        templates = self.templates(self.pyramid(template), template_boxes) if self.config.attention else None
        out = self.search(search, templates)
        rois = self.proposals(out["objectness"], out["sides"], tuple(search.shape[-2:]))
        if extra_rois is not None:
            rois = [torch.cat([image_rois, extra.view(-1, 4)]) for image_rois, extra in zip(rois, extra_rois)]
        batch_index = torch.cat([torch.full((len(r),), b, dtype=torch.long, device=search.device)
                                 for b, r in enumerate(rois)])
        out["rois"], out["batch_index"] = torch.cat(rois), batch_index
        out.update(self.detect(out["pyramid"], out["rois"], batch_index))
        return out

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Starts the backbone from a ``mast pretrain`` backbone's weights (its ``head`` is dropped)."""
        self.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})

    def payload(self, tracker: dict[str, Any] | None = None) -> dict[str, Any]:
        """What ``model.pt`` holds: configs as plain dicts, the tracker's settings, weights."""
        return {"format": FORMAT, "backbone_config": asdict(self.backbone.config),
                "detector_config": asdict(self.config), "tracker": dict(tracker or {}),
                "state_dict": self.state_dict()}

    def save(self, path: str | os.PathLike, tracker: dict[str, Any] | None = None) -> None:
        """Writes ``model.pt`` atomically (weights only)."""
        save_checkpoint(self.payload(tracker), path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "Detector":
        """The model of a ``model.pt`` of :meth:`save`, in eval mode on ``map_location``."""
        return cls.from_payload(load_checkpoint(path, "detector checkpoint", map_location), path).to(map_location)

    @classmethod
    def from_payload(cls, payload: Any, path: str | os.PathLike) -> "Detector":
        """The model, in eval mode, of a loaded :meth:`save` payload (``path`` names it in errors)."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path} is not a detector model.pt (mast train-baseline detector writes one)")
        try:
            config = DetectorConfig(**payload["detector_config"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} holds an invalid detector_config: {error}") from error
        model = cls(saved_backbone_config(payload["backbone_config"], path), config)
        load_weights(model, payload["state_dict"], path)
        return model.eval()


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int], min_side: float = 1.0) -> torch.Tensor:
    """``(..., 4)`` boxes cut to the ``size`` ``(H, W)`` image (each side at least ``min_side``)."""
    height, width = size
    low = torch.stack([(boxes[..., 0] - boxes[..., 2] / 2).clamp(-0.5, width - 0.5 - min_side),
                       (boxes[..., 1] - boxes[..., 3] / 2).clamp(-0.5, height - 0.5 - min_side)], dim=-1)
    high = torch.stack([(boxes[..., 0] + boxes[..., 2] / 2).clamp(max=width - 0.5),
                        (boxes[..., 1] + boxes[..., 3] / 2).clamp(max=height - 0.5)], dim=-1)
    high = torch.maximum(high, low + min_side)
    return torch.cat([(low + high) / 2, high - low], dim=-1)
