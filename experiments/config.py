"""Recipe configs: frozen dataclasses whose fields carry their allowed values.

A field is declared with :func:`param`, which stores the range or the choices in
the field's metadata. ``--set key=value`` strings are parsed to the field's type
and checked here, so every recipe validates its input the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """Bad user input for a config: one line that names the key and what is allowed."""


def param(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple | None = None,
    help: str = "",
) -> Any:
    """A config field with its allowed values (``lo <= value <= hi`` or one of ``choices``).

    For a tuple-valued field the bounds apply to every element.
    """
    metadata = {"lo": lo, "hi": hi, "choices": choices, "help": help}
    if isinstance(default, list | dict | set):
        raise TypeError("config defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


def field_types(cfg_cls) -> dict[str, Any]:
    return typing.get_type_hints(cfg_cls)


def _describe_allowed(meta: dict, typ: Any) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    name = getattr(typ, "__name__", str(typ))
    if lo is not None and hi is not None:
        return f"{name} in [{lo}, {hi}]"
    if lo is not None:
        return f"{name} >= {lo}"
    if hi is not None:
        return f"{name} <= {hi}"
    return name


def _parse_scalar(key: str, text: str, typ: type) -> Any:
    text = text.strip()
    if typ is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if typ is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
        return value
    if typ is str:
        return text
    raise ConfigError(f"{key}: fields of type {typ} cannot be set from the command line")


def _tuple_element_type(typ: Any) -> type | None:
    if typing.get_origin(typ) is tuple:
        args = typing.get_args(typ)
        if args and (len(args) == 1 or args[1] is Ellipsis):
            return args[0]
    return None


def _optional_inner(typ: Any) -> Any | None:
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(typ)) == 2:
            return args[0]
    return None


def parse_value(key: str, text: str, typ: Any) -> Any:
    """Parse ``text`` to ``typ`` (int, float, str, bool, ``T | None``, ``tuple[T, ...]``)."""
    inner = _optional_inner(typ)
    if inner is not None:
        if text.strip().lower() in ("none", "null", ""):
            return None
        return parse_value(key, text, inner)
    element = _tuple_element_type(typ)
    if element is not None:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise ConfigError(f"{key}: expected a comma-separated list, got {text!r}")
        return tuple(_parse_scalar(key, p, element) for p in parts)
    return _parse_scalar(key, text, typ)


def _check_scalar(key: str, value: Any, meta: dict, typ: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: got {value!r}; allowed: {_describe_allowed(meta, typ)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{key}: {value} is out of range; allowed: "
                              f"{_describe_allowed(meta, typ)}")


def check_value(key: str, value: Any, meta: dict, typ: Any) -> None:
    """Raise :class:`ConfigError` if ``value`` violates the field's range or choices."""
    if value is None:
        return
    if isinstance(value, tuple):
        for element in value:
            _check_scalar(key, element, meta, _tuple_element_type(typ) or typ)
        return
    _check_scalar(key, value, meta, typ)


def validate(cfg) -> None:
    """Check every field of a config instance against its declared range."""
    hints = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        check_value(f.name, getattr(cfg, f.name), dict(f.metadata), hints[f.name])


def nearest_keys(key: str, keys) -> list[str]:
    return difflib.get_close_matches(key, list(keys), n=3, cutoff=0.4)


def apply_overrides(cfg, assignments: list[str] | dict[str, Any]):
    """Return ``cfg`` with ``key=value`` overrides parsed, type-checked and range-checked.

    ``assignments`` is a list of ``"key=value"`` strings (from the CLI) or a dict of
    already-typed values (from Python). Raises :class:`ConfigError` with one line.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = field_types(type(cfg))
    if isinstance(assignments, dict):
        pairs = list(assignments.items())
    else:
        pairs = []
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            key, text = item.split("=", 1)
            pairs.append((key.strip(), text))
    changes: dict[str, Any] = {}
    for key, raw in pairs:
        if key not in fields:
            near = nearest_keys(key, fields)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"unknown config key {key!r}{hint} "
                              f"(keys: {', '.join(sorted(fields))})")
        typ = hints[key]
        value = parse_value(key, raw, typ) if isinstance(raw, str) and typ is not str else raw
        if isinstance(value, int) and not isinstance(value, bool) and typ is float:
            value = float(value)
        check_value(key, value, dict(fields[key].metadata), typ)
        changes[key] = value
    new = dataclasses.replace(cfg, **changes)
    validate(new)
    return new


def describe(cfg) -> list[tuple[str, Any, str]]:
    """(name, value, allowed) rows for help output."""
    hints = field_types(type(cfg))
    return [
        (f.name, getattr(cfg, f.name), _describe_allowed(dict(f.metadata), hints[f.name]))
        for f in dataclasses.fields(cfg)
    ]


def to_dict(cfg) -> dict[str, Any]:
    """The resolved config as JSON-ready data (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
