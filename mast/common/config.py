"""Dataclasses as config schemas: built from YAML mappings, type-checked, overridden by dotted ``key=value`` overrides.

A schema is a (nested) dataclass. Its type hints say what a YAML value may
be; its ``__post_init__`` says which values are valid. :func:`from_dict`
builds one from plain data, :func:`to_dict` turns one back into plain data
(dicts, lists, numbers, strings, None: what YAML files and weights-only
checkpoints hold), and :func:`apply_overrides` applies ``dotted.key=value``
overrides. :func:`read_yaml` reads YAML as PyYAML's safe loader does, except that
``1e-4`` is a number. Every error is one :class:`ConfigError` line naming the dotted
key (``phases.0.lr``) and the value as it was written.

Supported hints: ``int``, ``float`` (integers accepted), ``bool``, ``str``,
``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]`` and nested
dataclasses (also as items of a tuple or list).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that does not fit its schema (a one-line message)."""


class FieldError(ConfigError):
    """A field whose value breaks a rule, raised by a schema's ``__post_init__``.

    ``key`` is the field's name within the dataclass that raised it; the loader
    re-raises the error with the full dotted key and the value as written
    (``memory.short_term ... got [0]``, not the converted ``(0,)``).
    """

    def __init__(self, key: str, rule: str, value: Any) -> None:
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"{key} {rule}, got {value!r}")


def require(valid: bool, key: str, rule: str, value: Any) -> None:
    """Raises ``FieldError(key, rule, value)`` unless ``valid``; ``rule`` reads "must be ..."."""
    if not valid:
        raise FieldError(key, rule, value)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``1e-4`` is a number, as in YAML 1.2 (YAML 1.1,
    which PyYAML follows, reads a float without a dot as a string)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+.0123456789"))


def read_yaml(text: str) -> Any:
    """The data of a YAML document (a file's text or an override's value); see :class:`_Loader`.

    Raises:
        yaml.YAMLError: ``text`` is not YAML.
    """
    return yaml.load(text, Loader=_Loader)


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """The dataclass ``cls`` built from plain ``data`` (a mapping; nested mappings and
    lists for nested fields); fields ``data`` lacks keep their defaults.

    ``where`` is the dotted key of ``data`` itself, prefixed to every key an error names.

    Raises:
        ConfigError: an unknown key (naming the keys known at its level), a value
            of the wrong type, or one a ``__post_init__`` refuses.
    """
    return _convert(cls, data, where, build=True)


def complete(cls: type, data: Any, where: str = "") -> dict[str, Any]:
    """``data`` with every field it lacks filled in from ``cls``'s defaults, as plain data.

    Keys and types are checked as by :func:`from_dict`; values are kept as written
    and not checked against the rules (so that related values may still change
    one at a time).
    """
    return _convert(cls, data, where, build=False)


def to_dict(config: Any) -> Any:
    """Plain data of a dataclass (tuples become lists), which :func:`from_dict` rebuilds."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    return config


def apply_overrides(config: Any, overrides: Iterable[str], schema: type | None = None) -> Any:
    """``dotted.key=value`` overrides, values parsed as YAML (``engine.topk=null``,
    ``memory.short_term=[1,2]``), list items addressed by index (``phases.0.lr=1e-4``).

    Args:
        config: a dataclass instance, or plain data of the dataclass ``schema``.
        overrides: applied in order; after each, every level is completed from
            the defaults, so a key of a replaced list item can be set next.
        schema: the dataclass of plain ``config`` (ignored for an instance).

    Returns:
        For an instance, a new instance, checked once every override is in (so
        related values may change one at a time); for plain data, plain data.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return from_dict(type(config), apply_overrides(to_dict(config), overrides, type(config)))
    if schema is None:
        raise TypeError("apply_overrides needs the schema of plain config data")
    data = complete(schema, config)
    for override in overrides:
        data = complete(schema, _override(data, override))
    return data


# -- conversion ---------------------------------------------------------------------------------------------------


def _convert(hint: Any, value: Any, key: str, build: bool) -> Any:
    """``value`` checked against ``hint``: built (dataclasses, tuples) or as plain data."""
    if dataclasses.is_dataclass(hint):
        return _convert_dataclass(hint, value, key, build)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_optional(hint, args, value, key, build)
    if origin in (tuple, list):
        return _convert_sequence(hint, origin, args, value, key, build)
    if hint in _SCALARS:
        return _convert_scalar(hint, value, key, build)
    raise TypeError(f"{key}: config schemas do not support the type hint {hint!r}")


def _convert_dataclass(cls: type, value: Any, where: str, build: bool) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in value:
        if name not in fields:
            known = f"known at {where or 'the top level'}: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown config key {_join(where, str(name))} ({known})")
    for name, field in fields.items():
        if name not in value and not _has_default(field):
            raise ConfigError(f"{_join(where, name)} is missing ({cls.__name__} has no default for it)")
    hints = typing.get_type_hints(cls)
    converted = {name: _convert(hints[name], value[name], _join(where, name), build) for name in fields if name in value}
    if not build:
        return {name: converted[name] if name in converted else _default(field) for name, field in fields.items()}
    try:
        return cls(**converted)
    except FieldError as error:
        written = value.get(error.key, error.value)
        raise FieldError(_join(where, error.key), error.rule, written) from None
    except ValueError as error:  # a rule that names no single field
        raise ConfigError(f"{where}: {error}" if where else str(error)) from None


def _has_default(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def _default(field: dataclasses.Field) -> Any:
    """The field's default as plain data."""
    if field.default is not dataclasses.MISSING:
        return to_dict(field.default)
    return to_dict(field.default_factory())


def _convert_optional(hint: Any, args: tuple, value: Any, key: str, build: bool) -> Any:
    options = [arg for arg in args if arg is not type(None)]
    if len(options) != 1 or len(args) != 2:
        raise TypeError(f"{key}: config schemas support only 'X | None' unions, not {hint!r}")
    if value is None:
        return None
    return _convert_part(hint, value, key, options[0], value, key, build)


def _convert_sequence(hint: Any, origin: type, args: tuple, value: Any, key: str, build: bool) -> Any:
    fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
    if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
        raise ConfigError(f"{key} must be {_describe(hint)}, got {value!r}")
    item_hints = args if fixed else (args[0],) * len(value)
    items = [_convert_part(hint, value, key, item_hint, item, f"{key}.{i}", build)
             for i, (item_hint, item) in enumerate(zip(item_hints, value))]
    return tuple(items) if build and origin is tuple else items


def _convert_part(hint: Any, value: Any, key: str, part: Any, part_value: Any, part_key: str, build: bool) -> Any:
    """``part_value`` (an item of ``value``, or ``value`` itself for ``X | None``) converted
    to ``part``. A scalar that fails names the whole ``value`` at ``key`` as it was written
    (``model.widths must be a list of 4 integers, got [8, 'a', 8, 8]``); errors inside
    a nested dataclass name their own key (``phases.1.lr``)."""
    try:
        return _convert(part, part_value, part_key, build)
    except ConfigError:
        if dataclasses.is_dataclass(part):
            raise
        raise ConfigError(f"{key} must be {_describe(hint)}, got {value!r}") from None


def _convert_scalar(hint: type, value: Any, key: str, build: bool) -> Any:
    """``value`` as ``hint`` (``3`` -> ``3.0`` for a float) when building, else as written,
    so that a later error quotes what the user wrote."""
    if hint is bool:
        valid = isinstance(value, bool)
    elif hint is str:
        valid = isinstance(value, str)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        valid = False
    else:  # YAML reads 1000.0 as a float, 1000 as an int: both are numbers, neither .inf nor .nan is
        valid = isinstance(value, int) or (math.isfinite(value) and (hint is float or value.is_integer()))
    if not valid:
        raise ConfigError(f"{key} must be {_describe(hint)}, got {value!r}")
    return hint(value) if build else value


_SCALARS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(hint: Any) -> str:
    """What a value of ``hint`` is, in words: ``a list of 4 integers``, ``a number or null``."""
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return f"{_describe(next(arg for arg in args if arg is not type(None)))} or null"
    if origin in (tuple, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(set(args)) == 1:
                return f"a list of {len(args)} {_plural(args[0])}"
            return f"a list of {len(args)} items ({', '.join(_describe(arg) for arg in args)})"
        return f"a list of {_plural(args[0])}"
    return _SCALARS.get(hint, repr(hint))


def _plural(hint: Any) -> str:
    if dataclasses.is_dataclass(hint):
        return "mappings"
    return {int: "integers", float: "numbers", bool: "booleans", str: "strings"}.get(hint, f"items, each {_describe(hint)}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# -- overrides ----------------------------------------------------------------------------------------------------


def _override(data: Any, override: str) -> Any:
    """A copy of plain ``data`` with one ``dotted.key=value`` override set (the key must exist)."""
    if "=" not in override:
        raise ConfigError(f"an override is key=value, got {override!r}")
    dotted, raw = override.split("=", 1)
    dotted = dotted.strip()
    try:
        value = read_yaml(raw)
    except yaml.YAMLError:  # not YAML (e.g. an unbalanced bracket): the text itself
        value = raw
    updated = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = updated
    for depth, key in enumerate(parents):
        node = node[_index(node, key, dotted)] if isinstance(node, list) else _child(node, key, dotted, depth)
    if isinstance(node, list):
        node[_index(node, last, dotted)] = value
    elif isinstance(node, dict) and last in node:
        node[last] = value
    else:
        raise _unknown_key(node, dotted, len(parents))
    return updated


def _child(node: Any, key: str, dotted: str, depth: int) -> Any:
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


def comma_names(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``: the names of a comma-separated list (None -> [])."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]
