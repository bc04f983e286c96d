"""Typed, validated dataclasses from YAML mappings: every key and every type checked, each error one sentence naming
the dotted key (config.py's sections are built with it)."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from medical_r1 import UserError


class ConfigError(UserError):
    """A params.yaml value that cannot be used; the message names the key."""


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """tree["a"]["b"] = value for dotted = "a.b", creating missing levels."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def build(cls: type, raw: Any, prefix: str = ""):
    """Build dataclass `cls` from a mapping, checking every key and type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'params'}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
    missing = [key for key in fields if key not in raw]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}: missing; params.yaml must set every key (conf/config.yaml "
                          "holds them all: `python scripts/compose_params.py` writes a complete params.yaml)")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for inner in options:
            try:
                return _coerce(inner, value, key)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        expected = " or ".join(", ".join(typing.get_args(a)) if typing.get_origin(a) is Literal else a.__name__
                               for a in options)
        raise ConfigError(f"{key}: expected {expected}; got {type(value).__name__} {value!r}")
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        for name in value:
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"{key}: {name!r} is not a name (letters, digits and _, not starting with a digit)")
        return {name: _coerce(args[1], item, f"{key}.{name}") for name, item in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads `2e-4` as a string
            number = float(value)
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
            return number
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def value_at(tree: Any, dotted: str) -> Any:
    """tree.a.b for dotted = "a.b"."""
    return functools.reduce(getattr, dotted.split("."), tree)


@functools.cache
def transformers_names(enum: str) -> set[str]:
    """The values of transformers' OptimizerNames or SchedulerType, read from its source: importing it would load
    torch and peft (seconds) in every stage that reads params.yaml. tests/test_config.py compares with the enums."""
    import importlib.util

    module = {"OptimizerNames": "training_args", "SchedulerType": "trainer_utils"}[enum]
    origin = Path(importlib.util.find_spec("transformers").origin).parent / f"{module}.py"
    tree = ast.parse(origin.read_text(encoding="utf-8"))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == enum).body
    return {stmt.value.value for stmt in body if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)}
