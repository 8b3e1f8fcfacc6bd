"""Merging nested `{section: {key: value}}` updates into frozen config dataclasses, with type checks, and parsing
`--section.key=value` overrides. Generic: it knows no config section (those are `pipeline/core/config.py`)."""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any, Literal

import yaml

from pipeline.core.errors import ConfigError


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and lightly coerce) `value` against annotation `tp`: ints are accepted for floats, lists for tuples,
    "true" and "false" (any case) for bools."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, coerced = _type_ok(value, arg)
            if ok:
                return True, coerced
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if tp is type(None):
        return value is None, value
    if tp is float:
        return _float_ok(value)
    if tp is bool and isinstance(value, str) and value.lower() in ("true", "false"):  # `--key=true`, as YAML writes it
        return True, value.lower() == "true"
    if tp in (int, str, bool):  # a bool is no int here, though Python says it is
        return isinstance(value, tp) and (tp is bool or not isinstance(value, bool)), value
    if origin in (tuple, dict):
        return _container_ok(value, tp)
    return isinstance(value, tp), value


def _float_ok(value: Any) -> tuple[bool, Any]:
    """A float, or an int (not a bool) or a decimal string: YAML 1.1 reads `1e-4` (no dot) as a string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True, float(value)
    if isinstance(value, str):
        try:
            return True, float(value)
        except ValueError:
            return False, value
    return False, value


def _container_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """`tuple[X, ...]` (a list or tuple of X) or `dict[K, V]`, item by item."""
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_type_ok(v, typing.get_args(tp)[0]) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if not isinstance(value, dict):
        return False, value
    key_tp, val_tp = typing.get_args(tp)
    checked = {k: _type_ok(v, val_tp) for k, v in value.items()}
    ok = all(_type_ok(k, key_tp)[0] for k in value) and all(ok for ok, _ in checked.values())
    return ok, {k: v for k, (_, v) in checked.items()}


def merge_section(obj: Any, updates: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    """`obj` (a config dataclass) with the nested `updates` merged in and type-checked; each problem is appended to
    `problems`, naming its key under `prefix`."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            problems.append(f"unknown config key '{path}' (known: {', '.join(sorted(names))})")
            continue
        current = getattr(obj, key)
        entry_type = _entry_type(hints[key])
        if entry_type is not None:  # a mapping of names to config sections, e.g. data.custom_tasks
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a mapping of names to {entry_type.__name__} keys, got {value!r}")
                continue
            entries = dict(current)
            for name, entry in value.items():
                if not isinstance(entry, dict):
                    problems.append(f"'{path}.{name}' must be a mapping of {entry_type.__name__} keys, got {entry!r}")
                    continue
                before = current.get(str(name), entry_type())
                entries[str(name)] = merge_section(before, entry, f"{path}.{name}.", problems)
            changes[key] = entries
            continue
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                problems.append(f"'{path}' must be a mapping of {type(current).__name__} keys, got {value!r}")
                continue
            changes[key] = merge_section(current, value, f"{path}.", problems)
            continue
        if isinstance(current, dict) and isinstance(value, dict):
            value = {**current, **value}  # `--data.max_train_examples.mrpc=100` sets one key, keeps the others
        ok, coerced = _type_ok(value, hints[key])
        if not ok:
            problems.append(f"'{path}' expects {type_name(hints[key])}, got {value!r} ({type(value).__name__})")
            continue
        changes[key] = coerced
    return dataclasses.replace(obj, **changes)


def _entry_type(tp: Any) -> Any:
    """The dataclass `X` of a `dict[str, X]` annotation; None for any other annotation."""
    args = typing.get_args(tp)
    return args[1] if typing.get_origin(tp) is dict and dataclasses.is_dataclass(args[1]) else None


def type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _literals(value: Any) -> Any:
    """YAML scalars read as strings → Python literals where they are one (`100`, `1e-4`, `None`), else the string:
    a task named `no` or `on` stays a name, not YAML 1.1's boolean."""
    if isinstance(value, list):
        return [_literals(v) for v in value]
    if isinstance(value, dict):
        return {k: _literals(v) for k, v in value.items()}
    if value in ("null", "~"):
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return value


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """Turn `--a.b=value` tokens into a nested dict; values go through `ast.literal_eval`, then YAML for flow lists
    and mappings (`--data.tasks=[sst2,mrpc]`), else stay strings."""
    nested: dict[str, Any] = {}
    problems = []
    for token in tokens:
        if not token.startswith("--") or "=" not in token:
            problems.append(f"unrecognised argument '{token}' (overrides look like --section.key=value)")
            continue
        key, raw = token[2:].split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            value = raw
            if raw.strip().startswith(("[", "{")):
                try:
                    value = _literals(yaml.load(raw, Loader=yaml.BaseLoader))  # every scalar a string first
                except (yaml.YAMLError, RecursionError):
                    problems.append(f"'{key}': '{raw}' is neither a Python literal nor a YAML list or mapping")
        if raw in ("null", "None"):
            value = None
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"'{key}': '{part}' was given a value and cannot also hold keys")
                break
        else:
            node[leaf] = value
    if problems:
        raise ConfigError("\n".join(problems))
    return nested
