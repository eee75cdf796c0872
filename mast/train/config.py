"""Training configuration: typed defaults, YAML files, ``--set key=value`` overrides.

A config is a nested dict validated against :data:`DEFAULTS`: every key of a
YAML file or override must exist there (a typo is an error naming the key),
values keep the default's type, and ``phases`` is a list of phase dicts,
each completed from :data:`PHASE_DEFAULTS`.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

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


class ConfigError(ValueError):
    """A config file or override that does not fit :data:`DEFAULTS`."""


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
    return config


def apply_override(config: dict[str, Any], override: str) -> dict[str, Any]:
    """One ``dotted.key=value`` override, validated like a YAML file's keys."""
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
    for key in parents:
        node = _child(node, key, dotted)
    if isinstance(node, list):
        node[_index(node, last, dotted)] = value
    elif isinstance(node, dict) and last in node:
        node[last] = value
    else:
        raise ConfigError(f"unknown config key {dotted} in --set {override!r}")
    return load_from_dict(updated)


def _child(node: Any, key: str, dotted: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, dotted)]
    if not isinstance(node, dict) or key not in node:
        raise ConfigError(f"unknown config key {dotted}")
    return node[key]


def _index(items: list, key: str, dotted: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(f"{dotted}: {key!r} is not an index of a list of {len(items)}")
    return int(key)


def load_from_dict(config: dict[str, Any]) -> dict[str, Any]:
    """Validates a full config dict against the defaults (returns a clean copy)."""
    return _merge(DEFAULTS, config, "")


def save_config(config: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML, atomically."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(temporary, path)
