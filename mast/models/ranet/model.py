"""RANet [RANet] on the shared backbone: ranked template-pixel correlation maps -> the current mask.

docs/baselines.md §7.3, after [Thesis] chapter 3. The template frame ``I_0``
and the current frame ``I_t`` go through one :class:`ResNetBackbone`
(output stride 8); its features, refined by a residual block and
L2-normalised, are the per-pixel embeddings ``F_0`` and ``F_t``. Every
template pixel has a correlation map (its cosine similarity with every pixel
of ``F_t``). The ranking attention module scores each template pixel (its
best correlation with ``F_t`` plus a learned score of its embedding,
optionally [Thesis]' discriminant score) and keeps the maps of the top
``ranked_maps`` foreground pixels (inside the template mask) and the top
``ranked_maps`` background pixels, in score order, zero maps filling a side
with fewer pixels. A decoder turns these maps and the previous mask
``M_{t-1}`` into the current mask's logits, refining at strides 4 and 2 with
the current frame's ``stages()`` features.

With ``nearest_match`` the decoder also gets, for every current pixel, its
best correlation with any foreground and with any background template pixel
(nearest-neighbour matching to the first frame, as [VideoMatch] and
[FEELVOS]' global matching), and its logits are added to ``prior_gain`` times
their difference, with the decoder's last layer zero-initialised: the
untrained network labels each pixel by its nearest template pixel, which a
self-supervised ``init`` backbone already does well on video it never saw
(docs/baselines.md §7.3), and training learns a correction to it instead of
a mask from scratch.

Only the kept maps are computed: the ranking needs each template pixel's
best correlation, which is taken in chunks of template pixels without the
gradient (ranking is not differentiable); the learned score reaches the loss
by gating its pixel's map (``map * sigmoid(score)``).

One call segments one object; :mod:`mast.models.ranet.tracker` runs every
object of a video and merges them. ``model.pt``: :meth:`RANet.save`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mast.common.checkpoints import load_checkpoint, save_checkpoint
from mast.common.config import require
from mast.models.backbone import BackboneConfig, ResNetBackbone, load_weights, saved_backbone_config
from mast.models.matching import feature_mask, nearest_correlation

#: ``model.pt``'s ``format`` entry.
CHECKPOINT_FORMAT = "mast-ranet"
#: Template pixels whose best correlation is computed at once (bounds the ``(chunk, h*w)`` product).
SCORE_CHUNK = 1024


@dataclass(frozen=True)
class RANetConfig:
    """Attributes:
        ranked_maps: correlation maps kept per side, foreground and background ([RANet]: 256).
        decoder_width: channels of the decoder.
        discriminant: add [Thesis]' discriminant score to the ranking score: for a pixel of one
            side, the sum of its ``discriminant_topk`` best correlations with other template
            pixels of its side minus that with the other side.
        discriminant_weight: the discriminant score's weight ([Thesis]: 0.5).
        discriminant_topk: correlations summed per side ([Thesis]: 8).
        neighbourhood_max: rank first the pixels whose score is the maximum of their
            ``neighbourhood x neighbourhood`` cells of the same side, then the others
            ([Thesis]' "NMS", which promotes maxima instead of suppressing the rest).
        neighbourhood: side of that neighbourhood in feature cells (odd).
        loose_crop: at inference, segment only a box ``crop_scale`` times the tight box of
            the previous masks (all objects together) [Thesis] §3.2.2; training uses whole frames.
        crop_scale: the loose box's size relative to the tight box.
        nearest_match: feed the decoder each current pixel's best foreground and background
            correlation and start its logits from their difference (module docstring).
        prior_gain: the initial weight of that difference in the logits (learned; a
            cosine gap of 0.1 is then a logit of ``0.1 * prior_gain``).
    """

    ranked_maps: int = 256
    decoder_width: int = 64
    discriminant: bool = False
    discriminant_weight: float = 0.5
    discriminant_topk: int = 8
    neighbourhood_max: bool = False
    neighbourhood: int = 3
    loose_crop: bool = True
    crop_scale: float = 1.5
    nearest_match: bool = False
    prior_gain: float = 20.0

    def __post_init__(self) -> None:
        require(self.ranked_maps >= 1, "ranked_maps", "must be an integer >= 1", self.ranked_maps)
        require(self.decoder_width >= 1, "decoder_width", "must be an integer >= 1", self.decoder_width)
        require(self.discriminant_weight >= 0, "discriminant_weight", "must be a number >= 0",
                self.discriminant_weight)
        require(self.discriminant_topk >= 1, "discriminant_topk", "must be an integer >= 1", self.discriminant_topk)
        require(self.neighbourhood >= 1 and self.neighbourhood % 2 == 1, "neighbourhood",
                "must be an odd integer >= 1 (feature cells)", self.neighbourhood)
        require(self.crop_scale >= 1, "crop_scale", "must be a number >= 1", self.crop_scale)
        require(self.prior_gain > 0, "prior_gain", "must be a number > 0", self.prior_gain)


# -- the ranking attention module, as tensor functions -------------------------------------------------------------


def correlation_maps(template: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Every template pixel correlated with the current frame.

    Args:
        template: ``(B, N, C)`` embeddings of ``N`` template pixels.
        current: ``(B, C, h, w)`` embeddings of the current frame.

    Returns:
        ``(B, N, h, w)``: map ``n`` is ``<template[n], current[:, i, j]>`` at ``(i, j)``.
    """
    return torch.bmm(template, current.flatten(2)).unflatten(2, current.shape[-2:])


@torch.no_grad()
def best_correlation(template: torch.Tensor, current: torch.Tensor, chunk: int = SCORE_CHUNK) -> torch.Tensor:
    """``(B, N)``: each template pixel's highest correlation with any current pixel
    (``template`` ``(B, N, C)``, ``current`` ``(B, C, h, w)``), ``chunk`` template pixels at a time."""
    flat = current.flatten(2)
    return torch.cat([torch.bmm(part, flat).amax(dim=2) for part in template.split(chunk, dim=1)], dim=1)


@torch.no_grad()
def discriminant_scores(template: torch.Tensor, foreground: torch.Tensor, topk: int,
                        chunk: int = SCORE_CHUNK) -> torch.Tensor:
    """[Thesis] §3.2.3's discriminant score of every template pixel.

    Args:
        template: ``(B, N, C)`` template embeddings.
        foreground: ``(B, N)`` bool, the template mask.
        topk: correlations summed per side (fewer where a side has fewer other pixels).

    Returns:
        ``(B, N)``: for a pixel of one side, the sum of its ``topk`` best correlations with the
        *other* pixels of its side minus the sum of its ``topk`` best with the opposite side.
    """
    scores = []
    for start in range(0, template.shape[1], chunk):
        rows = template[:, start:start + chunk]  # (B, n, C)
        similarity = torch.bmm(rows, template.transpose(1, 2))  # (B, n, N)
        own = foreground[:, start:start + chunk, None] == foreground[:, None, :]  # (B, n, N)
        self_pair = torch.zeros_like(own)
        index = torch.arange(rows.shape[1], device=rows.device)
        self_pair[:, index, start + index] = True
        same = _top_sum(similarity.masked_fill(~own | self_pair, float("-inf")), topk)
        other = _top_sum(similarity.masked_fill(own, float("-inf")), topk)
        scores.append(same - other)
    return torch.cat(scores, dim=1)


def _top_sum(values: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of the ``k`` largest finite values along the last dimension (0 where none is finite)."""
    top = values.topk(min(k, values.shape[-1]), dim=-1).values
    return top.masked_fill(torch.isinf(top), 0).sum(dim=-1)


def neighbourhood_maxima(scores: torch.Tensor, side: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, h, w)`` bool: pixels of ``side`` (``(B, h, w)`` bool) whose score (``(B, h, w)``)
    is the largest among the ``side`` pixels of their ``size x size`` neighbourhood."""
    masked = scores.masked_fill(~side, float("-inf"))
    peaks = F.max_pool2d(masked[:, None], size, stride=1, padding=size // 2)[:, 0]
    return side & (masked >= peaks)


def rank_side(scores: torch.Tensor, side: torch.Tensor, count: int,
              preferred: torch.Tensor | None = None) -> torch.Tensor:
    """The template pixels of one side, best score first, the first ``count``.

    Args:
        scores: ``(B, N)`` ranking scores.
        side: ``(B, N)`` bool, the pixels that may be chosen.
        count: how many to return.
        preferred: ``(B, N)`` bool or None: these pixels come before all others of the side
            (each group in score order), the neighbourhood-max variant.

    Returns:
        ``(B, count)`` long pixel indices; ``-1`` where the side has fewer than ``count`` pixels.
    """
    keys = scores.masked_fill(~side, float("-inf"))
    order = keys.argsort(dim=1, descending=True, stable=True)
    if preferred is not None:
        # A stable sort on the preference, of pixels already in score order, keeps score order within each group.
        group = (preferred & side).gather(1, order).to(torch.uint8)
        order = order.gather(1, group.argsort(dim=1, descending=True, stable=True))
    order = order[:, :count]
    order = order.masked_fill(~side.gather(1, order), -1)
    if order.shape[1] < count:
        order = F.pad(order, (0, count - order.shape[1]), value=-1)
    return order


def gather_maps(template: torch.Tensor, indices: torch.Tensor, current: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """The correlation maps of the template pixels ``indices`` (``(B, K)``, ``-1``: a zero map).

    Args:
        template: ``(B, N, C)``; current: ``(B, C, h, w)``.
        weights: ``(B, N)`` or None: each chosen map is multiplied by its pixel's weight.

    Returns:
        ``(B, K, h, w)``.
    """
    valid = (indices >= 0).to(template.dtype)
    safe = indices.clamp_min(0)
    chosen = template.gather(1, safe[..., None].expand(-1, -1, template.shape[2])) * valid[..., None]
    if weights is not None:
        chosen = chosen * weights.gather(1, safe)[..., None]
    return correlation_maps(chosen, current)


# -- the network ------------------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """A frame through the encoder: ``embedding`` ``(B, C, h, w)`` L2-normalised (stride 8),
    ``skips``: layer1 (stride 2) and layer2 (stride 4) outputs, ``size``: the frame's ``(H, W)``."""

    embedding: torch.Tensor
    skips: tuple[torch.Tensor, torch.Tensor]
    size: tuple[int, int]

    def expand(self, count: int) -> "Encoded":
        """The same frame ``count`` times (one per object), without copying."""
        def repeat(t: torch.Tensor) -> torch.Tensor:
            return t.expand(count, *t.shape[1:])
        return Encoded(repeat(self.embedding), (repeat(self.skips[0]), repeat(self.skips[1])), self.size)


@dataclass
class Template:
    """What the ranking needs of the template, computed once per video.

    Attributes:
        features: ``(B, N, C)`` template embeddings (``N = h * w``).
        foreground: ``(B, N)`` bool, the template mask at feature resolution.
        learned: ``(B, N)`` the ranking module's score of each pixel (with gradient).
        static: ``(B, N)`` the part of the ranking score that does not depend on ``I_t``
            (learned score, discriminant score), without gradient.
        shape: ``(h, w)`` of the template's feature map.
    """

    features: torch.Tensor
    foreground: torch.Tensor
    learned: torch.Tensor
    static: torch.Tensor
    shape: tuple[int, int]


def _conv(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    # Instance normalisation, as RANet's decoder ([Thesis] §3.2.1): one object per sample at
    # training and inference alike, so no batch statistics are involved.
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
                         nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(width, width), nn.Conv2d(width, width, 3, padding=1),
                                  nn.InstanceNorm2d(width, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class _Refine(nn.Module):
    """Upsample to a skip feature's size, fuse it and the previous mask there."""

    def __init__(self, width: int, skip_channels: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(skip_channels, width, 1)
        self.fuse = nn.Sequential(_conv(2 * width + 1, width), _conv(width, width))

    def forward(self, x: torch.Tensor, skip: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, self.skip(skip), F.adaptive_avg_pool2d(previous, size)], dim=1))


class Decoder(nn.Module):
    """Ranked maps ``(B, 2K, h, w)`` (and, with ``nearest_match``, the two nearest-correlation maps
    after them) and the previous mask ``(B, 1, H, W)`` -> logits ``(B, 1, H, W)``."""

    def __init__(self, maps: int, width: int, skip_channels: tuple[int, int]) -> None:
        super().__init__()
        self.fuse = nn.Sequential(_conv(maps + 1, width), _Residual(width), _Residual(width))
        self.refine4 = _Refine(width, skip_channels[1])
        self.refine2 = _Refine(width, skip_channels[0])
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, maps: torch.Tensor, previous: torch.Tensor, skips: tuple[torch.Tensor, torch.Tensor],
                size: tuple[int, int]) -> torch.Tensor:
        x = self.fuse(torch.cat([maps, F.adaptive_avg_pool2d(previous, maps.shape[-2:])], dim=1))
        x = self.refine2(self.refine4(x, skips[1], previous), skips[0], previous)
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


class RANet(nn.Module):
    """RANet for one object per sample (module docstring).

    ``forward(template, template_mask, current, previous_mask)``: frames ``(B, 3, H, W)``
    RGB in ``[0, 1]`` (template and current may differ in size), masks ``(B, H, W)`` in
    ``[0, 1]`` at their frame's size -> logits ``(B, H, W)`` of the current frame.
    """

    def __init__(self, backbone: BackboneConfig | None = None, config: RANetConfig | None = None) -> None:
        super().__init__()
        self.config = config or RANetConfig()
        backbone = backbone or BackboneConfig(output_stride=8)
        if backbone.output_stride != 8:
            raise ValueError(f"RANet needs a backbone of output_stride 8, got {backbone.output_stride}")
        self.backbone = ResNetBackbone(backbone)
        dim, widths = backbone.feature_dim, backbone.widths
        # RANet's fully-convolutional block over the backbone features, residual with a zero-initialised
        # last layer: an ``init`` backbone starts from its own (pretrained) feature similarity.
        self.embed = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 1))
        nn.init.zeros_(self.embed[2].weight)
        nn.init.zeros_(self.embed[2].bias)
        self.ranker = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(dim, 1, 1))
        nearest = 2 if self.config.nearest_match else 0
        self.decoder = Decoder(2 * self.config.ranked_maps + nearest, self.config.decoder_width, (widths[0], widths[1]))
        if self.config.nearest_match:
            # The untrained decoder adds nothing: the logits start as the nearest-match prior's.
            nn.init.zeros_(self.decoder.out.weight)
            nn.init.zeros_(self.decoder.out.bias)
            self.prior_gain = nn.Parameter(torch.tensor(float(self.config.prior_gain)))

    def encode(self, frames: torch.Tensor) -> Encoded:
        """Frames ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> their :class:`Encoded`."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must have shape (B, 3, H, W), got {tuple(frames.shape)}")
        stages = self.backbone.stages(self.backbone.prepare(frames))
        features = self.backbone.head(stages[-1])
        embedding = F.normalize(features + self.embed(features), dim=1)
        return Encoded(embedding, (stages[0], stages[1]), tuple(frames.shape[-2:]))

    def template(self, encoded: Encoded, mask: torch.Tensor) -> Template:
        """The ranking's view of a template frame with object mask ``mask`` ``(B, H, W)``.

        An empty mask (or one no feature cell is half covered by) leaves only zero
        foreground maps: the decoder then relies on the previous mask and the background maps.
        """
        if mask.dim() != 3 or tuple(mask.shape[-2:]) != tuple(encoded.size):
            raise ValueError(f"template mask must be (B, H, W) at the template frame's size {tuple(encoded.size)}, "
                             f"got {tuple(mask.shape)}")
        embedding = encoded.embedding
        shape = tuple(embedding.shape[-2:])
        features = embedding.flatten(2).transpose(1, 2)
        foreground = feature_mask(mask, shape).flatten(1)
        learned = self.ranker(embedding).flatten(1)
        static = learned.detach()
        if self.config.discriminant:
            static = static + self.config.discriminant_weight * discriminant_scores(
                features, foreground, self.config.discriminant_topk)
        return Template(features, foreground, learned, static, shape)

    def ranked_maps(self, template: Template, current: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """The ranking attention module: ``(maps (B, 2K, h, w), indices (B, 2K))``, the foreground
        side's ``K = ranked_maps`` first, each side in rank order, ``-1`` indices for zero fillers."""
        config = self.config
        scores = template.static + best_correlation(template.features, current.embedding)
        gates = torch.sigmoid(template.learned)
        sides = []
        for side in (template.foreground, ~template.foreground):
            preferred = None
            if config.neighbourhood_max:
                grid = (-1, *template.shape)
                preferred = neighbourhood_maxima(scores.view(grid), side.view(grid), config.neighbourhood).flatten(1)
            sides.append(rank_side(scores, side, config.ranked_maps, preferred))
        indices = torch.cat(sides, dim=1)
        return gather_maps(template.features, indices, current.embedding, gates), indices

    def segment(self, template: Template, current: Encoded, previous_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, H, W)`` of the current frame from its :class:`Encoded` and
        ``previous_mask`` ``(B, H, W)`` (``M_{t-1}``, at the current frame's size)."""
        if previous_mask.dim() != 3 or tuple(previous_mask.shape[-2:]) != tuple(current.size):
            raise ValueError(f"previous mask must be (B, H, W) at the current frame's size {tuple(current.size)}, "
                             f"got {tuple(previous_mask.shape)}")
        maps, _ = self.ranked_maps(template, current)
        previous = previous_mask[:, None].to(maps.dtype)
        if not self.config.nearest_match:
            return self.decoder(maps, previous, current.skips, current.size)[:, 0]
        nearest = nearest_correlation(template.features, template.foreground, current.embedding)
        logits = self.decoder(torch.cat([maps, nearest], dim=1), previous, current.skips, current.size)
        prior = F.interpolate(nearest[:, :1] - nearest[:, 1:], size=current.size, mode="bilinear",
                              align_corners=False)
        return (logits + self.prior_gain * prior)[:, 0]

    def forward(self, template: torch.Tensor, template_mask: torch.Tensor, current: torch.Tensor,
                previous_mask: torch.Tensor) -> torch.Tensor:
        return self.segment(self.template(self.encode(template), template_mask), self.encode(current), previous_mask)

    # -- model.pt ---------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``model.pt`` atomically: ``format``, ``backbone_config``, ``ranet_config``, ``state_dict``."""
        save_checkpoint({"format": CHECKPOINT_FORMAT, "backbone_config": asdict(self.backbone.config),
                         "ranet_config": asdict(self.config), "state_dict": self.state_dict()}, path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "RANet":
        """A model written by :meth:`save` (weights only); other files are a one-line ValueError."""
        payload = load_checkpoint(path, "RANet checkpoint", map_location)
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a RANet model.pt (written by mast train-baseline ranet)")
        model = cls(saved_backbone_config(payload.get("backbone_config"), path), saved_ranet_config(payload, path))
        load_weights(model, payload.get("state_dict"), path)
        return model


def saved_ranet_config(payload: dict[str, Any], path: str | os.PathLike) -> RANetConfig:
    """The :class:`RANetConfig` stored in checkpoint ``path``."""
    saved = payload.get("ranet_config")
    try:
        return RANetConfig(**saved)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds an invalid ranet_config {saved!r}: {error}") from error
