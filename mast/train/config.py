"""Training configuration: typed defaults, YAML files, ``--set key=value`` overrides.

A config is a nested dict validated against :data:`DEFAULTS`: every key of a
YAML file or override must exist there (a typo is an error naming the key and
listing the known ones), values keep the default's type, and ``phases`` is a
list of phase dicts, each completed from :data:`PHASE_DEFAULTS`. Then every
value is checked against its rule (:data:`RULES`, :data:`PHASE_RULES`), so a
bad value fails up front, before a run writes anything.
"""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mast.common.files import atomic_write_text

PHASE_DEFAULTS: dict[str, Any] = {
    "name": "phase",
    "mode": "pairs",  # pairs: query + one reference (MAST phase 1); memory: the full long/short-term memory
    "steps": 1000,
    "lr": 1.0e-3,
    "lr_milestones": [0.4, 0.6, 0.8],  # fractions of the phase's steps
    "lr_gamma": 0.5,
    "pair_gaps": [2, 5, 8],
    "pair_gap_probs": [0.4, 0.4, 0.2],
}

DEFAULTS: dict[str, Any] = {
    "model": {
        "colour_space": "lab",
        "output_stride": 4,
        "feature_dim": 64,
        "widths": [64, 128, 256, 256],  # ResNet-18 (MAST); smaller for quick CPU runs
        "blocks": [2, 2, 2, 2],
    },
    "objective": {
        "name": "lab-huber",  # lab-huber | kmeans-ce | mask-ce
        "upsample": True,  # compare at full resolution (thesis Table 4.3)
        "huber_scale": 20.0,
        "clusters": 16,
        "centroids": None,  # kmeans-ce: a centroids file; built from the training videos when missing
        "keep_all_prob": 0.3,  # kmeans-ce (CorrFlow) channel dropout
        "max_objects": 10,  # mask-ce: object ids 1..max_objects
    },
    "engine": {"window": 13, "temperature": 1.0, "topk": None, "normalize": False, "near_range": 15},
    "memory": {"long_term": [0, 5], "short_term": [1, 3, 5]},
    "data": {"size": 256, "frame_stride": 1, "scale": [0.25, 1.0], "hflip": 0.5, "rotate90": False, "workers": 2},
    "train": {
        "seed": 0,
        "batch_size": 24,
        "clip_grad": 1.0,
        "amp": True,  # mixed precision on CUDA (ignored on CPU)
        "log_every": 10,
        "image_every": 200,
        "checkpoint_every": 1000,
        "max_bad_steps": 10,  # consecutive non-finite losses before the run aborts
        "time_budget_minutes": None,  # stop (with a checkpoint and backbone.pt) after this much training time
        "device": "auto",
    },
    "phases": [dict(PHASE_DEFAULTS, name="pairs")],
}


OBJECTIVES = ("lab-huber", "kmeans-ce", "mask-ce")


class ConfigError(ValueError):
    """A config file or override that does not fit :data:`DEFAULTS` or a rule."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(low: int) -> Callable[[Any], bool]:
    return lambda value: _integer(value) and value >= low


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _probability(value: Any) -> bool:
    return _number(value) and 0 <= value <= 1


def _ints(low: int, length: int | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return (isinstance(value, list) and (length is None or len(value) == length)
                and all(_integer(v) and v >= low for v in value))
    return check


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _scale(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_number, value)) and 0 < value[0] <= value[1] <= 1


#: ``dotted key -> (check, what a valid value is)``; keys of phases are in :data:`PHASE_RULES`.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.colour_space": (_one_of("lab", "rgb"), "lab or rgb"),
    "model.output_stride": (_one_of(4, 8), "4 or 8"),
    "model.feature_dim": (_at_least(1), "an integer >= 1"),
    "model.widths": (_ints(1, 4), "a list of 4 integers >= 1 (channels of layer1..layer4)"),
    "model.blocks": (_ints(1, 4), "a list of 4 integers >= 1 (blocks of layer1..layer4)"),
    "objective.name": (_one_of(*OBJECTIVES), f"one of {', '.join(OBJECTIVES)}"),
    "objective.huber_scale": (_positive, "a number > 0"),
    "objective.clusters": (_at_least(1), "an integer >= 1"),
    "objective.centroids": (_optional(lambda v: isinstance(v, str) and bool(v)), "a file path or null"),
    "objective.keep_all_prob": (_probability, "a probability in [0, 1]"),
    "objective.max_objects": (_at_least(1), "an integer >= 1"),
    "engine.window": (lambda v: _at_least(1)(v) and v % 2 == 1, "an odd integer >= 1"),
    "engine.temperature": (_positive, "a number > 0"),
    "engine.topk": (_optional(_at_least(1)), "an integer >= 1 or null"),
    "engine.near_range": (_at_least(1), "an integer >= 1"),
    "memory.long_term": (_ints(0), "a list of frame indices >= 0"),
    "memory.short_term": (_ints(1), "a list of offsets >= 1 (frames back)"),
    "data.size": (_at_least(1), "an integer >= 1 (pixels)"),
    "data.frame_stride": (_at_least(1), "an integer >= 1"),
    "data.scale": (_scale, "[low, high] with 0 < low <= high <= 1"),
    "data.hflip": (_probability, "a probability in [0, 1]"),
    "data.workers": (_at_least(0), "an integer >= 0"),
    "train.seed": (_at_least(0), "an integer >= 0"),
    "train.batch_size": (_at_least(1), "an integer >= 1"),
    "train.clip_grad": (_positive, "a number > 0"),
    "train.log_every": (_at_least(1), "an integer >= 1"),
    "train.image_every": (_at_least(1), "an integer >= 1"),
    "train.checkpoint_every": (_at_least(1), "an integer >= 1"),
    "train.max_bad_steps": (_at_least(1), "an integer >= 1"),
    "train.time_budget_minutes": (_optional(_positive), "a number of minutes > 0 or null"),
    "train.device": (lambda v: isinstance(v, str) and bool(v.strip()), "a device name (auto, cpu, cuda, cuda:N)"),
}

PHASE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty name"),
    "mode": (_one_of("pairs", "memory"), "pairs or memory"),
    "steps": (_at_least(1), "an integer >= 1"),
    "lr": (_positive, "a number > 0"),
    "lr_milestones": (lambda v: isinstance(v, list) and all(_number(f) and 0 < f < 1 for f in v),
                      "a list of fractions of the phase's steps, each in (0, 1)"),
    "lr_gamma": (_positive, "a number > 0"),
    "pair_gaps": (lambda v: _ints(1)(v) and bool(v), "a non-empty list of frame gaps >= 1"),
    "pair_gap_probs": (lambda v: isinstance(v, list) and all(map(_probability, v)),
                       "a list of probabilities in [0, 1]"),
}


def _merge(base: Any, update: Any, where: str) -> Any:
    if isinstance(base, dict):
        if not isinstance(update, dict):
            raise ConfigError(f"{where or 'config'} must be a mapping, got {update!r}")
        merged = copy.deepcopy(base)
        for key, value in update.items():
            if key not in base:
                known = ", ".join(sorted(base))
                raise ConfigError(f"unknown config key {where + '.' if where else ''}{key} (known here: {known})")
            merged[key] = _merge(base[key], value, f"{where}.{key}" if where else key)
        return merged
    if where == "phases":
        if not isinstance(update, list) or not update:
            raise ConfigError("phases must be a non-empty list of phase mappings")
        return [_merge(PHASE_DEFAULTS, phase, f"phases.{i}") for i, phase in enumerate(update)]
    return _coerce(base, update, where)


def _coerce(default: Any, value: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool) and isinstance(value, (int, float)):
        if isinstance(default, int) and not isinstance(default, bool) and float(value) != int(value):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return type(default)(value)
    if isinstance(default, list) and isinstance(value, list):
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{where} must be a {type(default).__name__}, got {value!r}")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides.

    Override values are parsed as YAML (``train.lr=1e-4``, ``engine.topk=null``,
    ``memory.short_term=[1,2]``); list items are addressed by index
    (``phases.1.steps=500``).
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        try:
            config = _merge(config, loaded, "")
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    for override in overrides or []:
        config = apply_override(config, override)
    try:
        validate_config(config)
    except ConfigError as error:
        if path is not None and not overrides:
            raise ConfigError(f"{path}: {error}") from None
        raise
    return config


def apply_override(config: dict[str, Any], override: str) -> dict[str, Any]:
    """One ``dotted.key=value`` override, its key and type checked like a YAML file's.

    Values are checked against the rules by :func:`load_config` once every
    override is in (``pair_gaps`` and ``pair_gap_probs`` may change one at a time).
    """
    if "=" not in override:
        raise ConfigError(f"--set expects key=value, got {override!r}")
    dotted, raw = override.split("=", 1)
    dotted = dotted.strip()
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    updated = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    node: Any = updated
    for depth, key in enumerate(parents):
        node = _child(node, key, dotted, depth)
    if isinstance(node, list):
        node[_index(node, last, dotted)] = value
    elif isinstance(node, dict) and last in node:
        node[last] = value
    else:
        raise _unknown_key(node, dotted, len(parents))
    return _merge(DEFAULTS, updated, "")


def _child(node: Any, key: str, dotted: str, depth: int) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, dotted)]
    if not isinstance(node, dict) or key not in node:
        raise _unknown_key(node, dotted, depth)
    return node[key]


def _unknown_key(node: Any, dotted: str, depth: int) -> ConfigError:
    """The error for ``dotted``, whose part ``depth`` does not exist in ``node``."""
    where = ".".join(dotted.split(".")[:depth]) or "the top level"
    if not isinstance(node, dict):
        return ConfigError(f"unknown config key {dotted}: {where} holds {node!r}, not a mapping")
    return ConfigError(f"unknown config key {dotted} (known at {where}: {', '.join(sorted(node))})")


def _index(items: list, key: str, dotted: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(f"{dotted}: {key!r} is not an index of a list of {len(items)}")
    return int(key)


def load_from_dict(config: dict[str, Any]) -> dict[str, Any]:
    """Validates a full config dict against the defaults and rules (returns a clean copy)."""
    merged = _merge(DEFAULTS, config, "")
    validate_config(merged)
    return merged


def validate_config(config: dict[str, Any]) -> None:
    """Checks every value of a merged config against :data:`RULES` and :data:`PHASE_RULES`,
    and the values that must agree with each other; raises ConfigError naming the key."""
    for dotted, rule in RULES.items():
        section, key = dotted.split(".")
        _check(config[section][key], rule, dotted)
    for index, phase in enumerate(config["phases"]):
        for key, rule in PHASE_RULES.items():
            _check(phase[key], rule, f"phases.{index}.{key}")
        gaps, probs = phase["pair_gaps"], phase["pair_gap_probs"]
        if len(probs) != len(gaps) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ConfigError(f"phases.{index}.pair_gap_probs must give one probability per pair gap "
                              f"{gaps} and sum to 1, got {probs}")
    if not config["memory"]["long_term"] and not config["memory"]["short_term"]:
        raise ConfigError("memory.long_term and memory.short_term must not both be empty")
    if config["objective"]["name"] == "lab-huber" and config["model"]["colour_space"] != "lab":
        raise ConfigError("objective.name lab-huber reconstructs LAB colour: it needs model.colour_space lab, "
                          f"got {config['model']['colour_space']!r}")


def _check(value: Any, rule: tuple[Callable[[Any], bool], str], where: str) -> None:
    check, wanted = rule
    if not check(value):
        raise ConfigError(f"{where} must be {wanted}, got {value!r}")


def save_config(config: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
