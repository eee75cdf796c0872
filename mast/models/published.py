"""The field's published checkpoints, read as mast backbones (docs/models.md).

Four layouts besides mast's own ``backbone.pt``, told apart by their keys:

- ``mast``: the MAST release (Lai et al., CVPR 2020): ``{'state_dict': ...}`` with
  ``feature_extraction.*`` (a ResNet-18 with output stride 4) and ``post_convolution.*``
  (a 3x3 conv to 64 channels); its colorizer holds no weights. Frames: OpenCV's float
  LAB normalised by mean (50, 0, 0) and std (50, 127, 127).
- ``corrflow``: CorrFlow (Lai & Xie, BMVC 2019): the same network, saved through
  ``DataParallel`` (``module.``-prefixed keys). Frames: RGB in [0, 1], not normalised
  (its data loaders feed ``ToTensor`` of the RGB image to the network).
- ``crw``: the contrastive random walk (Jabri et al., NeurIPS 2020): ``{'model': ...}``
  with ``encoder.model.*`` keys (possibly ``module.``-prefixed), a torchvision ResNet-18
  with layer3/layer4 strides 1 and reflect padding; its evaluation drops layer4 (output
  stride 8, 256 channels) and the training head. Frames: RGB with the ImageNet mean/std.
- ``torchvision``: an ImageNet ResNet-18/34 state dict (``conv1.weight``, ``layer1.*``,
  ``fc.*``): the whole trunk with layer3/layer4 strides 1 (output stride 8, 512
  channels), the classifier dropped. Frames: RGB with the ImageNet mean/std.

Each converts to a :class:`BackboneConfig`, a state dict of
:class:`ResNetBackbone` and the propagation protocol of its paper
(:class:`PropagationKnobs`), so one propagation engine and one evaluator serve them all.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch

from mast.common.checkpoints import load_checkpoint
from mast.models.backbone import BackboneConfig, ResNetBackbone, backbone_payload, load_weights
from mast.models.protocol import PRESETS, PropagationConfig, PropagationKnobs

#: The name of mast's own ``backbone.pt`` layout among :data:`FORMATS`.
MAST_BACKBONE = "backbone.pt"


@dataclass(frozen=True)
class Converted:
    """A checkpoint read as a mast backbone.

    Attributes:
        format: a name of :data:`FORMATS` or :data:`MAST_BACKBONE`.
        config: the architecture and colour space.
        state_dict: :class:`ResNetBackbone` weights.
        knobs: the propagation protocol the features are meant for (its paper's, or the
            knobs a ``backbone.pt`` was saved with).
        dropped: the source keys deliberately left out (training heads, layers the
            authors' evaluation removes), for the record.
    """

    format: str
    config: BackboneConfig
    state_dict: dict[str, torch.Tensor]
    knobs: PropagationKnobs
    dropped: tuple[str, ...] = ()

    def backbone(self, path: str | os.PathLike) -> ResNetBackbone:
        """The :class:`ResNetBackbone` (every weight loaded, none left over; ``path`` names errors)."""
        model = ResNetBackbone(self.config)
        load_weights(model, self.state_dict, path)
        return model


def protocol_knobs(config: PropagationConfig) -> PropagationKnobs:
    """Every setting of a whole protocol as knobs (so a file carries the protocol whatever the preset)."""
    engine = {f.name: getattr(config.engine, f.name) for f in fields(config.engine)}
    engine["topk"] = engine["topk"] or 0  # the engine's "every key" is the knobs' 0
    return PropagationKnobs(long_term=config.policy.long_term, short_term=config.policy.short_term,
                            soft_labels=config.soft_labels, **engine)


#: MAST's test protocol (its benchmark.py): frames 0 and 5 and t-1, t-3, t-5, a 25x25 window
#: with ROI localisation for the long-term memory, raw dot products: the ``mast`` preset.
MAST_PROTOCOL = protocol_knobs(PRESETS["mast"])
#: CorrFlow's (its test.py): the previous prediction only, a 13x13 window, dot products.
CORRFLOW_PROTOCOL = protocol_knobs(PropagationConfig().with_knobs(PropagationKnobs(
    long_term=(), short_term=(1,), window=13, roi_localisation=False)))
#: CRW's (its README's test command): the ``crw`` preset (20 previous frames and the first,
#: radius 12, top-10, temperature 0.05, L2-normalised features, soft labels).
CRW_PROTOCOL = protocol_knobs(PRESETS["crw"])

_RESNET_BLOCKS = {(2, 2, 2, 2): "ResNet-18", (3, 4, 6, 3): "ResNet-34"}
_MAST_BLOCK = {"left.0": "conv1", "left.1": "bn1", "left.3": "conv2", "left.4": "bn2"}
_TORCHVISION_BLOCK = {"downsample": "shortcut"}


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``state`` under ``prefix``, without it."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _without_module(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without DataParallel's ``module.`` prefix, when every key has it."""
    return _strip(state, "module.") if state and all(k.startswith("module.") for k in state) else state


def _layer_key(key: str, block_names: dict[str, str]) -> str:
    """``layerN.J.rest`` -> ``layers.N-1.J.rest`` with the block's sub-module names mapped."""
    match = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", key)
    if match is None:
        return key
    layer, block, rest = match.groups()
    for theirs, ours in block_names.items():
        if rest.startswith(theirs + "."):
            rest = ours + rest[len(theirs):]
            break
    return f"layers.{int(layer) - 1}.{block}.{rest}"


def _colorization_net(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """MAST/CorrFlow keys (without ``module.``) -> :class:`ResNetBackbone` keys."""
    mapped = {"head." + key: value for key, value in _strip(state, "post_convolution.").items()}
    for key, value in _strip(state, "feature_extraction.").items():
        if key.startswith("conv1."):  # conv1 is Sequential(conv, BatchNorm, ReLU): the stem
            mapped["stem." + key[len("conv1."):]] = value
        else:
            mapped[_layer_key(key, _MAST_BLOCK)] = value
    return mapped


def _torchvision_net(state: dict[str, Any], stages: int) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """torchvision ResNet keys -> :class:`ResNetBackbone` keys of layers 1..``stages``; also the
    keys left out (the classifier, the layers past ``stages``)."""
    mapped, dropped = {}, []
    for key, value in state.items():
        if key.startswith("conv1."):
            mapped["stem.0." + key[len("conv1."):]] = value
        elif key.startswith("bn1."):
            mapped["stem.1." + key[len("bn1."):]] = value
        elif re.match(rf"layer[1-{stages}]\.", key):
            mapped[_layer_key(key, _TORCHVISION_BLOCK)] = value
        else:
            dropped.append(key)
    return mapped, tuple(dropped)


def _resnet_blocks(state: dict[str, Any], path: str | os.PathLike) -> tuple[int, int, int, int]:
    """Basic blocks per layer of a torchvision ResNet state dict (ResNet-18 or -34)."""
    if any(".conv3." in key for key in state):
        raise ValueError(f"{path} holds a ResNet with bottleneck blocks (ResNet-50 or deeper); mast reads "
                         "ResNet-18 and ResNet-34 (basic blocks) only")
    blocks = tuple(len({key.split(".")[1] for key in state if key.startswith(f"layer{n}.")}) for n in range(1, 5))
    if blocks not in _RESNET_BLOCKS:
        raise ValueError(f"{path} holds a ResNet with {blocks} blocks per layer; mast reads "
                         f"{' and '.join(f'{name} {b}' for b, name in _RESNET_BLOCKS.items())}")
    return blocks


def _read_mast(payload: dict, path: str | os.PathLike) -> Converted:
    return Converted("mast", BackboneConfig(colour_space="lab"), _colorization_net(payload["state_dict"]),
                     MAST_PROTOCOL)


def _read_corrflow(payload: dict, path: str | os.PathLike) -> Converted:
    state = _colorization_net(_without_module(payload["state_dict"]))
    return Converted("corrflow", BackboneConfig(colour_space="rgb01"), state, CORRFLOW_PROTOCOL)


def _read_crw(payload: dict, path: str | os.PathLike) -> Converted:
    state = _without_module(payload["model"])
    encoder = _strip(state, "encoder.model.")
    # CRW's test.py renames these keys of older checkpoints before loading them; so do we.
    encoder = {re.sub(r"\.(conv[12])\.1\.weight$", r".\1.weight", key): value for key, value in encoder.items()}
    mapped, dropped = _torchvision_net(encoder, stages=3)
    config = BackboneConfig(colour_space="rgb", output_stride=8, feature_dim=256, widths=(64, 128, 256, 512),
                            blocks=_resnet_blocks(encoder, path), stem_pool=True, padding_mode="reflect",
                            stages=3, head=False)
    others = tuple(key for key in state if not key.startswith("encoder.model."))
    return Converted("crw", config, mapped, CRW_PROTOCOL, tuple("encoder.model." + k for k in dropped) + others)


def _read_torchvision(payload: dict, path: str | os.PathLike) -> Converted:
    state = _without_module(payload)
    mapped, dropped = _torchvision_net(state, stages=4)
    config = BackboneConfig(colour_space="rgb", output_stride=8, feature_dim=512, widths=(64, 128, 256, 512),
                            blocks=_resnet_blocks(state, path), stem_pool=True, head=False)
    return Converted("torchvision", config, mapped, CRW_PROTOCOL, dropped)


def _keys(payload: Any, entry: str | None = None) -> list[str]:
    """The string keys of ``payload`` (or of its dict ``entry``), DataParallel prefix kept."""
    inner = payload.get(entry) if entry is not None and isinstance(payload, dict) else payload
    return [key for key in inner if isinstance(key, str)] if isinstance(inner, dict) else []


def _has(keys: list[str], *prefixes: str) -> bool:
    return all(any(key.startswith(prefix) for key in keys) for prefix in prefixes)


#: The published layouts: name -> (what it is, how it is recognised, how it converts).
FORMATS: dict[str, tuple[str, Callable[[Any], bool], Callable[[dict, str | os.PathLike], Converted]]] = {
    "mast": ("MAST (zlai0/MAST: state_dict with feature_extraction.* and post_convolution.*)",
             lambda p: _has(_keys(p, "state_dict"), "feature_extraction.", "post_convolution."), _read_mast),
    "corrflow": ("CorrFlow (zlai0/CorrFlow: state_dict with module.feature_extraction.*)",
                 lambda p: _has(_keys(p, "state_dict"), "module.feature_extraction.", "module.post_convolution."),
                 _read_corrflow),
    "crw": ("CRW (ajabri/videowalk: model with encoder.model.*)",
            lambda p: _has([k.removeprefix("module.") for k in _keys(p, "model")], "encoder.model.layer1."),
            _read_crw),
    "torchvision": ("torchvision ResNet-18/34 (conv1.weight, bn1.*, layer1.* ... fc.*)",
                    lambda p: _has([k.removeprefix("module.") for k in _keys(p)], "conv1.weight", "bn1.", "layer1."),
                    _read_torchvision),
}


def is_mast_payload(payload: Any) -> bool:
    """Whether ``payload`` is one of mast's own (a ``backbone.pt`` or a training checkpoint)."""
    return isinstance(payload, dict) and ("backbone_config" in payload or "format" in payload)


def detect(payload: Any) -> str | None:
    """The name of the published layout of loaded ``payload`` (None: none of :data:`FORMATS`)."""
    if is_mast_payload(payload):
        return None
    return next((name for name, (_, matches, _) in FORMATS.items() if matches(payload)), None)


def unknown_format(payload: Any, path: str | os.PathLike) -> ValueError:
    """The one-line error for a file of no known layout: some keys it holds and the layouts known."""
    keys = _keys(payload)
    if {"state", "param_groups"} <= set(keys):
        found = "an optimizer's state only (state, param_groups), no network weights"
    elif keys:
        inner = next((entry for entry in ("state_dict", "model") if _keys(payload, entry)), None)
        shown = _keys(payload, inner) if inner else keys
        found = (f"{f'{inner} with ' if inner else ''}keys {', '.join(shown[:4])}"
                 f"{f' ... ({len(shown)} in all)' if len(shown) > 4 else ''}")
    else:
        found = f"a {type(payload).__name__}, not a dict of weights"
    known = "; ".join([f"mast {MAST_BACKBONE}"] + [what for what, _, _ in FORMATS.values()])
    return ValueError(f"{path} is no checkpoint mast can read: it holds {found}. Known formats: {known}")


def convert(payload: Any, path: str | os.PathLike, format: str | None = None) -> Converted:
    """Loaded ``payload`` (of file ``path``) as a mast backbone; ``format`` (a name of
    :data:`FORMATS`) skips detection. mast's own ``backbone.pt`` passes through with its
    saved knobs. Raises a one-line ValueError for anything else."""
    if format is None and is_mast_payload(payload):
        config, state = backbone_payload(payload, path)
        return Converted(MAST_BACKBONE, config, state, saved_knobs(payload, path))
    name = format or detect(payload)
    if name is None:
        raise unknown_format(payload, path)
    if not FORMATS[name][1](payload):
        raise ValueError(f"{path} is not in the {name} layout: {FORMATS[name][0]}")
    return FORMATS[name][2](payload, path)


def load_any(path: str | os.PathLike, map_location: str | torch.device = "cpu",
             format: str | None = None) -> Converted:
    """Reads checkpoint ``path`` (``weights_only=True``) of any known layout (see :func:`convert`)."""
    return convert(load_checkpoint(path, "backbone checkpoint", map_location), path, format)


def as_mast_payload(payload: Any, path: str | os.PathLike) -> Any:
    """``payload`` as a mast ``backbone.pt`` payload when it is in a published layout, else
    unchanged (mast's own files, and anything else, are left to the caller to judge)."""
    if detect(payload) is None:
        return payload
    converted = convert(payload, path)
    return {"backbone_config": asdict(converted.config), "state_dict": converted.state_dict,
            "propagation": converted.knobs.as_overrides()}


def saved_knobs(payload: dict, path: str | os.PathLike) -> PropagationKnobs:
    """The propagation knobs a ``backbone.pt`` payload was saved with (none: all unset)."""
    saved = payload.get("propagation") or {}
    try:
        return PropagationKnobs.from_settings(dict(saved), str(path))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds invalid propagation settings {saved!r}: {error}") from error
