"""The SiamMask network [SiamMask] on the shared backbone.

Exemplar ``(B, 3, 127, 127)`` and search ``(B, 3, 255, 255)`` crops (RGB in
``[0, 1]``) go through one :class:`~mast.models.backbone.ResNetBackbone` (output
stride 8; layer4 features, its 3x3 ``head`` is not used). Every branch has its
own unshared 1x1 *adjust* layers (one for the exemplar, one for the search
region), then a depth-wise cross-correlation gives its ``(B, C, 17, 17)`` RoWs,
and a head (1x1 conv with normalisation and ReLU, then a 1x1 conv) reads them:

* two-branch (``branches: 2``, SiamFC mode): one similarity logit per RoW, ``(B, 1, 17, 17)``;
* three-branch (``branches: 3``, SiamRPN mode): ``(B, k, 2, 17, 17)`` background / object
  logits and ``(B, k, 4, 17, 17)`` box deltas for ``k`` anchors per RoW;
* mask (``mask: true``): a ``63 x 63`` mask per RoW, computed only for the RoWs asked
  for (positive RoWs in training, the best one when tracking); with ``refine: true``
  the refinement module (after Pinheiro et al., [SiamMask] App. A) replaces the head's
  last layer: it upsamples the RoW with skip connections to layer1..3 features of the
  search crop to ``127 x 127``.

With ``mask: false`` the model is SiamFC (two-branch) or SiamRPN (three-branch).
A mask of side ``S`` covers the RoW's 127-pixel window of the search crop,
sample ``k`` at ``centre + (k - (S - 1) / 2) * 127 / S`` (the :func:`square_crop` grid).

With ``nearest_match`` (docs/baselines.md §7.2) every search cell is matched to
the exemplar's cells, as [VideoMatch] and [FEELVOS]' global matching do: its
best cosine similarity to any foreground and to any background exemplar cell
gives a *prior* map ``fg - bg`` on the search crop's cells (the exemplar's mask
is then needed). The cells are the backbone's layer4 features, L2-normalised,
before the adjust layers, computed a second time without layer3's stride
(:meth:`SiamMask.match_features`): 4 crop pixels apart instead of 8.
The score logits (three-branch: each anchor's object logit) get a learned gain
times the prior averaged over the exemplar's object cells placed at each RoW
(a correlation with the object's cell coverage, so it peaks where the object
lines up with the exemplar's), and the mask logits a learned gain times the
prior sampled on the RoW's window; the score head's and the mask branch's last
layers start at zero. The untrained network thus tracks by nearest-neighbour
matching to the first frame, which a self-supervised ``init`` backbone does
well on objects it never saw, and training learns a correction to it.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mast.common.checkpoints import load_checkpoint, save_checkpoint
from mast.common.config import require
from mast.models.backbone import BackboneConfig, ResNetBackbone, load_weights, saved_backbone_config
from mast.models.matching import cell_coverage, nearest_correlation
from mast.models.siammask.geometry import EXEMPLAR_FEATURES, EXEMPLAR_SIZE, RESPONSE_SIZE, SEARCH_SIZE, row_coordinates
from mast.ops.crops import square_crop

MASK_SIZE = 63
REFINED_SIZE = EXEMPLAR_SIZE
#: ``model.pt``'s ``format`` entry.
FORMAT = "mast-siammask"


@dataclass(frozen=True)
class SiamMaskConfig:
    """Attributes:
    branches: 2 (SiamFC-style similarity [+ mask]) or 3 (SiamRPN anchors: score + box [+ mask]).
    mask: the mask branch (off: plain SiamFC / SiamRPN).
    refine: the refinement module on the mask branch (off: the paper's "w/o R").
    channels: outputs of the adjust layers and the heads' hidden layer (256 in the paper).
    anchor_ratios: three-branch: ``h / w`` of the ``k`` anchors per RoW.
    anchor_scale: three-branch: anchor side ``8 * scale`` pixels of the search crop (square anchor).
    refine_width: channels of the refinement module's first stage (halved at each of the next two).
    nearest_match: match the search crop's cells to the exemplar's foreground and background cells
        and start the score and mask logits from it (module docstring); the exemplar's mask is needed.
    prior_gain: the initial weight of that match in the score and mask logits (learned; a cosine
        gap of 0.1 is then a logit of ``0.1 * prior_gain``).
    """

    branches: int = 3
    mask: bool = True
    refine: bool = False
    channels: int = 256
    anchor_ratios: tuple[float, ...] = (0.33, 0.5, 1.0, 2.0, 3.0)
    anchor_scale: float = 8.0
    refine_width: int = 32
    nearest_match: bool = False
    prior_gain: float = 20.0

    def __post_init__(self) -> None:
        require(self.branches in (2, 3), "branches", "must be 2 (SiamFC mode) or 3 (SiamRPN mode)", self.branches)
        require(self.channels >= 1, "channels", "must be an integer >= 1", self.channels)
        require(bool(self.anchor_ratios) and min(self.anchor_ratios) > 0, "anchor_ratios",
                "must be a non-empty list of ratios h / w > 0", self.anchor_ratios)
        require(self.anchor_scale > 0, "anchor_scale", "must be a number > 0", self.anchor_scale)
        require(self.mask or not self.refine, "refine", "needs mask: true (it refines the mask branch)", self.refine)
        require(self.refine_width >= 4 and self.refine_width % 4 == 0, "refine_width",
                "must be a multiple of 4, >= 4", self.refine_width)
        require(self.prior_gain > 0, "prior_gain", "must be a number > 0", self.prior_gain)
        object.__setattr__(self, "anchor_ratios", tuple(self.anchor_ratios))

    @property
    def num_anchors(self) -> int:
        """Anchors per RoW: ``len(anchor_ratios)`` for three branches, 1 (the RoW itself) for two."""
        return len(self.anchor_ratios) if self.branches == 3 else 1

    @property
    def mask_size(self) -> int:
        """The side of a predicted mask: 127 refined, else 63."""
        return REFINED_SIZE if self.refine else MASK_SIZE

    def branch_names(self) -> list[str]:
        return ["score"] + (["box"] if self.branches == 3 else []) + (["mask"] if self.mask else [])


def depthwise_correlation(search: torch.Tensor, kernel: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Per-channel cross-correlation of every search map with its own kernel, every ``stride`` cells.

    ``search`` ``(B, C, H, W)``, ``kernel`` ``(B, C, h, w)`` ->
    ``(B, C, (H - h) // stride + 1, (W - w) // stride + 1)``.
    """
    batch, channels = kernel.shape[:2]
    out = F.conv2d(search.reshape(1, batch * channels, *search.shape[-2:]),
                   kernel.reshape(batch * channels, 1, *kernel.shape[-2:]), stride=stride,
                   groups=batch * channels)
    return out.view(batch, channels, *out.shape[-2:])


def window_prior(prior: torch.Tensor, rows: torch.Tensor, size: int) -> torch.Tensor:
    """The prior ``(B, 1, h, w)`` (one value per search cell, cell ``m`` centred at search pixel
    ``stride * m``, ``stride`` 4 or 8 as ``h`` is 64 or 32) sampled on the mask grid of each RoW
    ``rows`` ``(N, 3)`` ``(batch index, i, j)``: ``(N, size, size)``, sample ``k`` at the window's
    ``centre + (k - (size - 1) / 2) * 127 / size`` (:func:`square_crop`; 0 off the crop)."""
    b, i, j = rows.unbind(1)
    stride = round(SEARCH_SIZE / prior.shape[-1])
    coords = row_coordinates(prior.device) / stride
    centers = torch.stack([coords[j], coords[i]], dim=1)
    sides = centers.new_full((len(rows),), EXEMPLAR_SIZE / stride)
    return square_crop(prior[b], centers, sides, size)[:, 0]


@contextmanager
def running_statistics(module: nn.Module) -> Iterator[None]:
    """Inside, the batch normalisation layers of ``module`` normalise with (and do not update)
    their running statistics; their train / eval modes are restored after."""
    layers = [layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
    modes = [layer.training for layer in layers]
    for layer in layers:
        layer.eval()
    try:
        yield
    finally:
        for layer, mode in zip(layers, modes):
            layer.train(mode)


@contextmanager
def unstrided(layer: nn.Module) -> Iterator[None]:
    """Inside, every convolution of ``layer`` runs at stride 1 (the same weights, unsubsampled)."""
    convs = [conv for conv in layer.modules() if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1)]
    strides = [conv.stride for conv in convs]
    for conv in convs:
        conv.stride = (1, 1)
    try:
        yield
    finally:
        for conv, stride in zip(convs, strides):
            conv.stride = stride


def _conv_bn(in_channels: int, out_channels: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class Refinement(nn.Module):
    """Stacked refinement modules: a RoW ``(N, C)`` deconvolved to ``16 x 16``, merged with its
    window's layer3 (``16 x 16``), layer2 (``32 x 32``) and layer1 (``64 x 64``) search features,
    upsampling by 2 between them; ``(N, 127, 127)`` mask logits."""

    def __init__(self, row_channels: int, skip_channels: tuple[int, int, int], width: int) -> None:
        super().__init__()
        widths = (width, width // 2, width // 4)
        self.deconv = nn.ConvTranspose2d(row_channels, widths[0], EXEMPLAR_FEATURES)
        # skips: layer3, layer2, layer1 (coarse to fine)
        self.skips = nn.ModuleList(nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True))
                                   for c, w in zip(skip_channels, widths))
        outs = (widths[1], widths[2], 1)
        self.merges = nn.ModuleList(nn.Conv2d(w, o, 3, padding=1) for w, o in zip(widths, outs))

    def forward(self, rows: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = F.relu(self.deconv(rows[:, :, None, None]))
        for index, (skip, project, merge) in enumerate(zip(skips, self.skips, self.merges)):
            x = merge(x + project(skip))
            if index < 2:
                x = F.interpolate(F.relu(x), scale_factor=2, mode="bilinear", align_corners=False)
        # layer1 samples every second search pixel of the window: 64 samples -> 127 pixels.
        return F.interpolate(x, size=(REFINED_SIZE, REFINED_SIZE), mode="bilinear", align_corners=True)[:, 0]


class SiamMask(nn.Module):
    """SiamMask / SiamFC / SiamRPN (module docstring) on ``ResNetBackbone(backbone_config)``."""

    def __init__(self, backbone_config: BackboneConfig, config: SiamMaskConfig) -> None:
        super().__init__()
        if backbone_config.output_stride != 8:
            raise ValueError(f"SiamMask needs a backbone of output stride 8, got model.output_stride "
                             f"{backbone_config.output_stride}")
        self.config = config
        self.backbone = ResNetBackbone(backbone_config)
        self.backbone.head = nn.Identity()  # the Siamese branches read layer4 through their adjust layers
        top, channels, k = backbone_config.widths[3], config.channels, config.num_anchors
        names = config.branch_names()
        self.adjust = nn.ModuleDict({name: nn.ModuleDict({"exemplar": _conv_bn(top, channels, relu=False),
                                                          "search": _conv_bn(top, channels, relu=False)})
                                     for name in names})
        outputs = {"score": 2 * k if config.branches == 3 else 1, "box": 4 * k}
        self.heads = nn.ModuleDict({name: nn.Sequential(_conv_bn(channels, channels, relu=True),
                                                        nn.Conv2d(channels, outputs[name], 1))
                                    for name in names if name != "mask"})
        if config.refine:
            self.refinement = Refinement(channels, tuple(backbone_config.widths[2::-1]), config.refine_width)
        elif config.mask:
            self.mask_hidden = _conv_bn(channels, channels, relu=True)
            # The last 1x1 conv of the mask head, applied only to the RoWs asked for.
            self.mask_out = nn.Linear(channels, MASK_SIZE * MASK_SIZE)
        if config.nearest_match:
            self._start_from_prior()

    def _start_from_prior(self) -> None:
        """``nearest_match``: zero last layers and learned gains, so that the untrained score and
        mask logits are the nearest-match prior's terms alone."""
        last = [self.heads["score"][-1]]
        if self.config.refine:
            last.append(self.refinement.merges[-1])
        elif self.config.mask:
            last.append(self.mask_out)
        for layer in last:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.score_gain = nn.Parameter(torch.tensor(float(self.config.prior_gain)))
        if self.config.mask:
            self.prior_gain = nn.Parameter(torch.tensor(float(self.config.prior_gain)))

    def templates(self, exemplar: torch.Tensor, exemplar_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Exemplar crops ``(B, 3, 127, 127)`` -> each branch's correlation kernel ``(B, C, 16, 16)``.

        With ``nearest_match`` also what the match needs of ``exemplar_mask`` ``(B, 127, 127)``
        in ``[0, 1]`` (required then): ``match_features`` ``(B, N, C')`` the cells of
        :meth:`match_features` (``N = 32 * 32``), ``match_foreground`` ``(B, N)`` bool the cells at
        least half covered by the mask, ``match_kernel`` ``(B, 1, 32, 32)`` each cell's coverage
        divided by their sum (the score's pooling over the object).

        The shared backbone normalises exemplars with its running statistics, in training too:
        those are the search crops' (:meth:`respond` updates them), so an exemplar is normalised
        the same way in training and tracking. With batch statistics the running statistics
        would blend exemplar and search crops (an exemplar is mostly object, a search region
        mostly background) and match neither in tracking, where every score fell (docs/baselines.md §7.2, Diagnosis).
        """
        with running_statistics(self.backbone):
            stages = self.backbone.stages(self.backbone.prepare(exemplar))
            kernels = {name: adjust["exemplar"](stages[-1]) for name, adjust in self.adjust.items()}
            if self.config.nearest_match:
                kernels.update(self._match_template(self.match_features(stages), exemplar_mask))
        return kernels

    def match_features(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """The features the nearest match compares, ``(B, C', h, w)`` L2-normalised: layer3 and
        layer4 run again on a crop's layer2 output ``stages[1]`` without layer3's stride.

        At output stride 8 layer3 subsamples, which a ``mast pretrain`` backbone (output stride 4)
        never did: its layer4 cells are then 8 crop pixels apart, too coarse to match an object
        a fraction of the crop wide (docs/baselines.md §7.2, *Nearest match*). Without the stride
        they are the pretrained network's own features at layer2's stride (4 pixels without
        ``stem_pool``): ``(B, C', 32, 32)`` for an exemplar, 64 x 64 for a search crop. The pass
        normalises with the running statistics, as in tracking.
        """
        with running_statistics(self.backbone), unstrided(self.backbone.layers[2]):
            top = self.backbone.layers[3](self.backbone.layers[2](stages[1]))
        return F.normalize(top, dim=1)

    @staticmethod
    def _match_template(top: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The exemplar's side of the nearest match (:meth:`templates`) from its normalised
        features ``top`` ``(B, C', h, w)`` and ``mask`` ``(B, 127, 127)``."""
        if mask is None or mask.dim() != 3 or mask.shape[0] != top.shape[0]:
            raise ValueError("siammask.nearest_match needs the exemplar's mask, (B, 127, 127) in [0, 1]; got "
                             f"{None if mask is None else tuple(mask.shape)}")
        coverage = cell_coverage(mask, top.shape[-2:])
        # A tiny object may half-cover no cell: its partial coverage still places the score's pooling.
        kernel = coverage / coverage.sum((1, 2), keepdim=True).clamp_min(1e-6)
        return {"match_features": top.flatten(2).transpose(1, 2),
                "match_foreground": (coverage >= 0.5).flatten(1), "match_kernel": kernel[:, None]}

    def respond(self, templates: dict[str, torch.Tensor], search: torch.Tensor) -> dict[str, Any]:
        """Search crops ``(B, 3, 255, 255)`` against ``templates`` (:meth:`templates`).

        Returns a dict: ``score`` (``(B, 1, 17, 17)`` or ``(B, k, 2, 17, 17)``), ``box``
        (``(B, k, 4, 17, 17)``, three branches), and with the mask branch either ``hidden``
        (the mask head's hidden layer, ``(B, C, 17, 17)``) or, refined, ``rows`` (the mask
        branch's correlation) and ``skips`` (layer3, layer2, layer1 search features); with
        ``nearest_match`` ``prior`` ``(B, 1, 64, 64)``, each :meth:`match_features` cell's best
        foreground minus best background cosine to the exemplar's cells.
        """
        stages = self.backbone.stages(self.backbone.prepare(search))
        batch, k = search.shape[0], self.config.num_anchors
        rows = {name: depthwise_correlation(adjust["search"](stages[-1]), templates[name])
                for name, adjust in self.adjust.items()}
        out: dict[str, Any] = {}
        score = self.heads["score"](rows["score"])
        out["score"] = score.view(batch, k, 2, *score.shape[-2:]) if self.config.branches == 3 else score
        if self.config.nearest_match:
            out["prior"], out["score"] = self._match(templates, self.match_features(stages), out["score"])
        if "box" in self.heads:
            box = self.heads["box"](rows["box"])
            out["box"] = box.view(batch, k, 4, *box.shape[-2:])
        if self.config.refine:
            out["rows"], out["skips"] = rows["mask"], stages[2::-1]
        elif self.config.mask:
            out["hidden"] = self.mask_hidden(rows["mask"])
        return out

    def _match(self, templates: dict[str, torch.Tensor], top: torch.Tensor,
               score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest match of the search crop's :meth:`match_features` ``top`` ``(B, C', 64, 64)``:
        its prior ``(B, 1, 64, 64)`` and ``score`` (:meth:`respond`'s) plus the gain times the prior
        pooled over the exemplar's object at every RoW (three-branch: on every anchor's object logit)."""
        nearest = nearest_correlation(templates["match_features"], templates["match_foreground"], top)
        prior = nearest[:, :1] - nearest[:, 1:]
        kernel = templates["match_kernel"]
        step = (prior.shape[-1] - kernel.shape[-1]) // (RESPONSE_SIZE - 1)  # match cells per RoW step (8 pixels)
        pooled = self.score_gain * depthwise_correlation(prior, kernel, step)  # (B, 1, 17, 17)
        if self.config.branches == 2:
            return prior, score + pooled
        return prior, torch.cat([score[:, :, :1], score[:, :, 1:] + pooled[:, None]], dim=2)

    def row_masks(self, response: dict[str, Any], rows: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(N, S, S)`` (``S`` = :attr:`SiamMaskConfig.mask_size`) of the RoWs
        ``rows`` ``(N, 3)`` long ``(batch index, i, j)`` of a :meth:`respond` output
        (with ``nearest_match``, plus the gain times the prior on each RoW's window)."""
        logits = self._branch_masks(response, rows)
        if not self.config.nearest_match:
            return logits
        return logits + self.prior_gain * window_prior(response["prior"], rows, logits.shape[-1])

    def _branch_masks(self, response: dict[str, Any], rows: torch.Tensor) -> torch.Tensor:
        """The mask branch's own logits ``(N, S, S)`` of ``rows`` (:meth:`row_masks`)."""
        b, i, j = rows.unbind(1)
        if not self.config.refine:
            return self.mask_out(response["hidden"][b, :, i, j]).view(-1, MASK_SIZE, MASK_SIZE)
        skips = []
        for factor, features in zip((1, 2, 4), response["skips"]):
            side = EXEMPLAR_FEATURES * factor
            skips.append(torch.stack([features[bn, :, factor * y:factor * y + side, factor * x:factor * x + side]
                                      for bn, y, x in rows.tolist()]))
        return self.refinement(response["rows"][b, :, i, j], skips)

    def forward(self, exemplar: torch.Tensor, search: torch.Tensor, rows: torch.Tensor | None = None,
                exemplar_mask: torch.Tensor | None = None) -> dict[str, Any]:
        """:meth:`respond` to :meth:`templates`, with ``masks`` (:meth:`row_masks`) of ``rows`` if given."""
        response = self.respond(self.templates(exemplar, exemplar_mask), search)
        if rows is not None and self.config.mask:
            response["masks"] = self.row_masks(response, rows)
        return response

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Starts the backbone from a ``mast pretrain`` backbone's weights (its ``head`` is dropped)."""
        self.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})

    def payload(self, tracker: dict[str, Any] | None = None) -> dict[str, Any]:
        """What ``model.pt`` holds: configs as plain dicts, the tracker's settings, weights."""
        return {"format": FORMAT, "backbone_config": asdict(self.backbone.config),
                "siammask_config": asdict(self.config), "tracker": dict(tracker or {}),
                "state_dict": self.state_dict()}

    def save(self, path: str | os.PathLike, tracker: dict[str, Any] | None = None) -> None:
        """Writes ``model.pt`` atomically (weights only, as every checkpoint of the library)."""
        save_checkpoint(self.payload(tracker), path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "SiamMask":
        """The model of a ``model.pt`` of :meth:`save`, in eval mode on ``map_location`` (its
        ``tracker`` section: :meth:`mast.models.siammask.tracker.SiamMaskTracker.from_checkpoint`)."""
        return cls.from_payload(load_checkpoint(path, "SiamMask checkpoint", map_location), path).to(map_location)

    @classmethod
    def from_payload(cls, payload: Any, path: str | os.PathLike) -> "SiamMask":
        """The model, in eval mode, of a loaded :meth:`save` payload (``path`` names it in errors)."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path} is not a SiamMask model.pt (mast train-baseline siammask writes one)")
        try:
            config = SiamMaskConfig(**payload["siammask_config"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} holds an invalid siammask_config: {error}") from error
        model = cls(saved_backbone_config(payload["backbone_config"], path), config)
        load_weights(model, payload["state_dict"], path)
        return model.eval()
