"""The shared feature extractor: a ResNet-18 family encoder written here.

MAST's configuration (docs/algorithm.md §1): conv1 7x7 stride 2 without max-pool,
layer2 stride 2, layers 3-4 stride 1 -> output stride 4, 256 channels, then a
3x3 conv to 64-d features. ``output_stride=8`` strides layer3 as well (the
Siamese baselines). The published networks read by :mod:`mast.models.published`
(docs/models.md) are this module under other settings: CRW's is a torchvision
ResNet-18 (max-pool after conv1, reflect padding, no layer4, no 3x3 head). Every
model of the library builds on this module, so comparisons between them are like
for like.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mast.common.checkpoints import load_checkpoint, save_checkpoint
from mast.common.config import require
from mast.common.colour import normalize_lab, rgb_to_lab
from mast.models.protocol import PropagationKnobs

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
#: The colour spaces :meth:`ResNetBackbone.prepare` converts RGB frames to.
COLOUR_SPACES = ("lab", "rgb", "rgb01")


@dataclass(frozen=True)
class BackboneConfig:
    """Attributes:
    colour_space: "lab" (MAST: normalised LAB), "rgb" (ImageNet-style normalised RGB) or
        "rgb01" (RGB in [0, 1] as it is: CorrFlow); :meth:`ResNetBackbone.prepare` converts
        RGB frames accordingly.
    in_channels: 3 for LAB or RGB frames.
    output_stride: 4 (MAST) or 8; with ``stem_pool`` 8 or 16.
    feature_dim: channels of the output features (64 in MAST); without ``head`` it must be
        the width of the last stage used.
    widths: channels of layer1..layer4.
    blocks: basic blocks per layer (2, 2, 2, 2 is ResNet-18).
    stem_pool: a 3x3 stride-2 max-pool after conv1, as in torchvision's ResNet (CRW).
    padding_mode: "zeros" or "reflect" (CRW), for every padded convolution.
    stages: how many of layer1..layer4 run (3: layer4 dropped, as CRW's evaluation does).
    head: the 3x3 convolution to ``feature_dim`` channels after the last stage (MAST's
        ``post_convolution``); without it the features are the last stage's output.
    """

    colour_space: str = "lab"
    in_channels: int = 3
    output_stride: int = 4
    feature_dim: int = 64
    widths: tuple[int, int, int, int] = (64, 128, 256, 256)
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    stem_pool: bool = False
    padding_mode: str = "zeros"
    stages: int = 4
    head: bool = True

    def __post_init__(self) -> None:
        # FieldError (a ValueError) names the field, so a config file's error names model.widths.
        require(self.colour_space in COLOUR_SPACES, "colour_space", f"must be {' or '.join(COLOUR_SPACES)}",
                self.colour_space)
        base = self.stem_stride * 2  # layer2 strides by 2
        require(self.output_stride in (base, 2 * base), "output_stride", f"must be {base} or {2 * base}",
                self.output_stride)
        require(self.padding_mode in ("zeros", "reflect"), "padding_mode", "must be zeros or reflect",
                self.padding_mode)
        require(self.stages in (3, 4), "stages", "must be 3 or 4 (layer1..layer3 or ..layer4)", self.stages)
        require(self.feature_dim >= 1, "feature_dim", "must be >= 1", self.feature_dim)
        require(self.in_channels >= 1, "in_channels", "must be >= 1", self.in_channels)
        # zip() over four layers would silently drop a fifth width; a 0-block layer would still build one block.
        for name, values in (("widths", self.widths), ("blocks", self.blocks)):
            require(len(values) == 4 and min(values) >= 1, name, "must be 4 integers >= 1 (one per layer1..layer4)",
                    values)
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.head:
            require(self.feature_dim == self.widths[self.stages - 1], "feature_dim",
                    f"must be the width of layer{self.stages} without a head", self.feature_dim)

    @property
    def stem_stride(self) -> int:
        """The stride after conv1 (and the max-pool, if any)."""
        return 4 if self.stem_pool else 2

    @property
    def layer_strides(self) -> tuple[int, ...]:
        """The strides of the layers that run (layer3 strides when ``output_stride`` asks for it)."""
        layer3 = self.output_stride // (self.stem_stride * 2)
        return (1, 2, layer3, 1)[: self.stages]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34 block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, padding_mode=padding_mode)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, padding_mode=padding_mode)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetBackbone(nn.Module):
    """ResNet-18 family encoder with a configurable output stride and feature size.

    ``forward``: ``(B, in_channels, H, W)`` -> ``(B, feature_dim, ceil(H/s), ceil(W/s))``
    with ``s = output_stride``. ``stages`` gives the intermediate maps for
    heads that need a pyramid (baselines).
    """

    def __init__(self, config: BackboneConfig | None = None) -> None:
        super().__init__()
        self.config = config or BackboneConfig()
        cfg = self.config
        pad = cfg.padding_mode
        stem = [nn.Conv2d(cfg.in_channels, cfg.widths[0], 7, 2, 3, bias=False, padding_mode=pad),
                nn.BatchNorm2d(cfg.widths[0]), nn.ReLU(inplace=True)]
        # The max-pool holds no weights, so the stem's state-dict keys are the same with or without it.
        self.stem = nn.Sequential(*stem, *([nn.MaxPool2d(3, 2, 1)] if cfg.stem_pool else []))
        layers, in_channels = [], cfg.widths[0]
        for width, count, stride in zip(cfg.widths, cfg.blocks, cfg.layer_strides):
            blocks = [BasicBlock(in_channels, width, stride, pad)]
            blocks += [BasicBlock(width, width, padding_mode=pad) for _ in range(count - 1)]
            layers.append(nn.Sequential(*blocks))
            in_channels = width
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(in_channels, cfg.feature_dim, 3, 1, 1, padding_mode=pad) if cfg.head else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stages(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the layers that run (layer1..layer4): strides 2, 4, 4 (8), 4 (8), each
        doubled with ``stem_pool``."""
        x = self.stem(frames)
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs

    def prepare(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB frames ``(B, 3, H, W)`` in ``[0, 1]`` -> the normalised input this backbone expects."""
        if self.config.colour_space == "lab":
            return normalize_lab(rgb_to_lab(rgb))
        if self.config.colour_space == "rgb01":
            return rgb
        mean = torch.tensor(RGB_MEAN, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
        std = torch.tensor(RGB_STD, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
        return (rgb - mean) / std

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[1] != self.config.in_channels:
            raise ValueError(
                f"frames must have shape (B, {self.config.in_channels}, H, W), got {tuple(frames.shape)}"
            )
        return self.head(self.stages(frames)[-1])

    @property
    def stride(self) -> int:
        """Features are ``1/stride`` of the frame's resolution."""
        return self.config.output_stride

    @property
    def channels(self) -> int:
        """Feature channels ``C``."""
        return self.config.feature_dim

    @torch.no_grad()
    def extract(self, frame: np.ndarray) -> torch.Tensor:
        """One RGB uint8 frame ``(H, W, 3)`` (numpy) -> its features ``(C, ceil(H/s), ceil(W/s))``,
        after this backbone's own colour conversion (:meth:`prepare`), in eval mode."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be an RGB uint8 array (H, W, 3), got {frame.dtype} {frame.shape}")
        device = next(self.parameters()).device
        rgb = torch.tensor(frame, device=device).permute(2, 0, 1).unsqueeze(0).float() / 255
        was_training = self.training
        features = self.eval()(self.prepare(rgb))[0]
        self.train(was_training)
        return features

    def save(self, path: str | os.PathLike, knobs: PropagationKnobs | None = None) -> None:
        """Writes config and weights atomically (temp file + rename).

        ``knobs``: the propagation settings these features are meant to be used
        with (e.g. :data:`~mast.models.protocol.COSINE`), stored as the flat
        ``propagation`` dict of those that are set; trackers loaded from the
        file apply them unless the caller overrides them.
        """
        payload = {"backbone_config": asdict(self.config), "state_dict": self.state_dict()}
        if knobs is not None and knobs.as_overrides():
            payload["propagation"] = knobs.as_overrides()
        save_checkpoint(payload, path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "ResNetBackbone":
        """Loads a backbone written by :meth:`save` (``weights_only=True``)."""
        return cls.from_payload(load_checkpoint(path, "backbone checkpoint", map_location), path)

    @classmethod
    def from_payload(cls, payload: Any, path: str | os.PathLike) -> "ResNetBackbone":
        """The backbone of a loaded :meth:`save` payload (``path`` names it in errors)."""
        config, state = backbone_payload(payload, path)
        model = cls(config)
        load_weights(model, state, path)
        return model


def backbone_payload(payload: Any, path: str | os.PathLike) -> tuple[BackboneConfig, Any]:
    """The config and weights of a loaded :meth:`ResNetBackbone.save` payload, or a one-line
    ValueError naming ``path`` when it is not one."""
    if not isinstance(payload, dict) or "state_dict" not in payload or "backbone_config" not in payload:
        raise ValueError(f"{path} is not a mast backbone checkpoint (no backbone_config/state_dict)")
    if "format" in payload:  # a supervised baseline's model.pt, which holds a backbone among its weights
        name = str(payload["format"]).removeprefix("mast-")
        raise ValueError(f"{path} is the model.pt of a {name} run, not a backbone; track it as model {name}")
    return saved_backbone_config(payload["backbone_config"], path), payload["state_dict"]


def load_weights(model: nn.Module, state: Any, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)`` with a one-line ``ValueError`` naming ``path`` and the first
    mismatch (a wrong shape, or how many keys are missing and unexpected), never a key dump."""
    try:
        result = model.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [repr(error)]
        first = lines[1] if len(lines) > 1 else lines[0]  # torch's first line only names the class
        raise ValueError(f"{path} does not match the {type(model).__name__} architecture it names: {first}") from None
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        examples = "; ".join(f"{len(keys)} {kind} (e.g. {keys[0]})" for kind, keys in
                             (("missing", missing), ("unexpected", unexpected)) if keys)
        raise ValueError(f"{path} does not hold {type(model).__name__} weights: {examples}")


def saved_backbone_config(saved: Any, path: str | os.PathLike) -> BackboneConfig:
    """The :class:`BackboneConfig` stored in checkpoint ``path`` (a dict of its fields)."""
    try:
        return BackboneConfig(**saved)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds an invalid backbone_config {saved!r}: {error}") from error
