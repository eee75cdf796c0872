"""The shared feature extractor: a ResNet-18 family encoder written here.

MAST's configuration (docs/algorithm.md §1): conv1 7x7 stride 2 without max-pool,
layer2 stride 2, layers 3-4 stride 1 -> output stride 4, 256 channels, then a
3x3 conv to 64-d features. ``output_stride=8`` strides layer3 as well (the
Siamese baselines and the CRW protocol). Every model of the library builds on
this module, so comparisons between them are like for like.
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


@dataclass(frozen=True)
class BackboneConfig:
    """Attributes:
    colour_space: "lab" (MAST: normalised LAB) or "rgb" (ImageNet-style normalised RGB);
        :meth:`ResNetBackbone.prepare` converts RGB frames accordingly.
    in_channels: 3 for LAB or RGB frames.
    output_stride: 4 (MAST) or 8.
    feature_dim: channels of the output features (64 in MAST).
    widths: channels of layer1..layer4.
    blocks: basic blocks per layer (2, 2, 2, 2 is ResNet-18).
    """

    colour_space: str = "lab"
    in_channels: int = 3
    output_stride: int = 4
    feature_dim: int = 64
    widths: tuple[int, int, int, int] = (64, 128, 256, 256)
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)

    def __post_init__(self) -> None:
        # FieldError (a ValueError) names the field, so a config file's error names model.widths.
        require(self.colour_space in ("lab", "rgb"), "colour_space", "must be lab or rgb", self.colour_space)
        require(self.output_stride in (4, 8), "output_stride", "must be 4 or 8", self.output_stride)
        require(self.feature_dim >= 1, "feature_dim", "must be >= 1", self.feature_dim)
        require(self.in_channels >= 1, "in_channels", "must be >= 1", self.in_channels)
        # zip() over four layers would silently drop a fifth width; a 0-block layer would still build one block.
        for name, values in (("widths", self.widths), ("blocks", self.blocks)):
            require(len(values) == 4 and min(values) >= 1, name, "must be 4 integers >= 1 (one per layer1..layer4)",
                    values)
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "blocks", tuple(self.blocks))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34 block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
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
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(cfg.widths[0]),
            nn.ReLU(inplace=True),
        )
        strides = (1, 2, 2 if cfg.output_stride == 8 else 1, 1)
        layers, in_channels = [], cfg.widths[0]
        for width, count, stride in zip(cfg.widths, cfg.blocks, strides):
            blocks = [BasicBlock(in_channels, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(count - 1)]
            layers.append(nn.Sequential(*blocks))
            in_channels = width
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(in_channels, cfg.feature_dim, 3, 1, 1)
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
        """Outputs of layer1..layer4: strides 2, 4, 4 (8), 4 (8)."""
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
        if not isinstance(payload, dict) or "state_dict" not in payload or "backbone_config" not in payload:
            raise ValueError(f"{path} is not a mast backbone checkpoint (no backbone_config/state_dict)")
        if "format" in payload:  # a supervised baseline's model.pt, which holds a backbone among its weights
            name = str(payload["format"]).removeprefix("mast-")
            raise ValueError(f"{path} is the model.pt of a {name} run, not a backbone; track it as model {name}")
        model = cls(saved_backbone_config(payload["backbone_config"], path))
        load_weights(model, payload["state_dict"], path)
        return model


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
