"""Recipe configs: frozen dataclasses whose fields carry their allowed values.

A field is declared with :func:`param`, which stores the range or the choices in
the field's metadata. ``--set key=value`` strings and Python override values take one
path (:func:`coerce_value`): text is parsed to the field's type, then every value is
converted to that type exactly (no float for an int, no bool for a number, ``None`` only
for ``T | None``, -0.0 stored as 0.0) and range-checked, so every recipe validates its
input the same way, from the CLI and from Python, with the same one-line errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import types
import typing
from collections.abc import Mapping
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


INT_LIMIT = 2**62
"""No int field may leave ``[-INT_LIMIT, INT_LIMIT]``: seeds plus offsets and counts
multiplied together stay inside int64 (torch and numpy), whatever a recipe declares."""


def _show(value: Any) -> str:
    """``repr`` for an error message, kept short (a huge int or a long string)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**60:
        digits = int(abs(value).bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}<an integer of about {digits} digits>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_scalar(key: str, text: str, typ: type) -> Any:
    text = text.strip()
    if typ is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {_show(text)}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {_show(text)}") from None
    if typ is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {_show(text)}") from None
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
            raise ConfigError(f"{key}: expected a comma-separated list, got {_show(text)}")
        return tuple(_parse_scalar(key, p, element) for p in parts)
    return _parse_scalar(key, text, typ)


_SCALARS = (bool, int, float, str)
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _settable(typ: Any) -> bool:
    """Whether values of ``typ`` are checked here (the types :func:`parse_value` reads)."""
    inner = _optional_inner(typ)
    if inner is not None:
        return _settable(inner)
    element = _tuple_element_type(typ)
    return (element if element is not None else typ) in _SCALARS


def _is_numpy_bool(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")


def _coerce_scalar(key: str, value: Any, typ: type) -> Any:
    """``value`` as exactly ``typ`` (numpy scalars become Python ones), or ConfigError.

    Nothing is rounded or reinterpreted: a bool is not an int, 2.0 is not an int, 1 is
    not true. An int is a float (converted), and -0.0 is stored as 0.0 so that ``-0``
    and ``0`` are one config (one cache key).
    """
    is_bool = isinstance(value, bool) or _is_numpy_bool(value)
    if typ is bool:
        if is_bool:
            return bool(value)
    elif typ is int:
        if isinstance(value, numbers.Integral) and not is_bool:
            return int(value)
    elif typ is float:
        if isinstance(value, numbers.Real) and not is_bool:
            try:
                number = float(value)
            except OverflowError:
                raise ConfigError(f"{key}: must be a finite number, got {_show(value)}") from None
            if not math.isfinite(number):
                raise ConfigError(f"{key}: must be a finite number, got {number}")
            return number + 0.0  # -0.0 + 0.0 is 0.0
    elif typ is str:
        if isinstance(value, str):
            return str(value)
    else:
        raise ConfigError(f"{key}: fields of type {typ} cannot be set")
    raise ConfigError(f"{key}: expected {_EXPECTED[typ]}, got {_show(value)}")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """``value`` converted to the field type ``typ`` and type-checked (not range-checked)."""
    inner = _optional_inner(typ)
    if inner is not None:
        return None if value is None else _coerce(key, value, inner)
    element = _tuple_element_type(typ)
    if element is not None:
        if not isinstance(value, tuple | list):
            raise ConfigError(f"{key}: expected a list of {_PLURAL.get(element, element)}, "
                              f"got {_show(value)}")
        if not value:
            raise ConfigError(f"{key}: expected at least one value, got {_show(value)}")
        return tuple(_coerce_scalar(key, v, element) for v in value)
    if value is None:
        raise ConfigError(f"{key}: expected {_EXPECTED.get(typ, typ)}, got None "
                          "(only optional fields take None)")
    return _coerce_scalar(key, value, typ)


def _check_scalar(key: str, value: Any, meta: dict, typ: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: got {_show(value)}; allowed: {_describe_allowed(meta, typ)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{key}: {_show(value)} is out of range; allowed: "
                              f"{_describe_allowed(meta, typ)}")
        if isinstance(value, int) and abs(value) > INT_LIMIT:
            raise ConfigError(f"{key}: {_show(value)} is out of range; allowed: "
                              "integers within ±2**62")


def check_value(key: str, value: Any, meta: dict, typ: Any) -> None:
    """Raise :class:`ConfigError` if ``value`` violates the field's range or choices."""
    if value is None:
        return
    inner = _optional_inner(typ)
    if inner is not None:
        typ = inner
    if isinstance(value, tuple | list):
        for element in value:
            _check_scalar(key, element, meta, _tuple_element_type(typ) or typ)
        return
    _check_scalar(key, value, meta, typ)


def coerce_value(key: str, value: Any, typ: Any, meta: dict | None = None) -> Any:
    """The value a field of type ``typ`` stores for ``value``, or :class:`ConfigError`.

    The one path for CLI text and Python values alike: a ``str`` for a non-``str`` field
    is parsed as ``--set`` text, then the value is converted to the field type exactly
    (see :func:`_coerce_scalar`) and checked against the field's range or choices.
    """
    if isinstance(value, str) and typ is not str:
        value = parse_value(key, value, typ)
    value = _coerce(key, value, typ)
    check_value(key, value, meta or {}, typ)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return (type(b) is tuple and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    return type(a) is type(b) and a == b


def validate(cfg) -> None:
    """Check every field of a config instance: its type, its range or choices, and the
    ±2**62 guard on ints (presets pass through here too)."""
    hints = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        value, typ, meta = getattr(cfg, f.name), hints[f.name], dict(f.metadata)
        if _settable(typ):
            stored = _coerce(f.name, value, typ)
            if not _same(stored, value):
                raise ConfigError(f"{f.name}: holds {_show(value)} ({type(value).__name__}); "
                                  f"a {getattr(typ, '__name__', typ)} field stores "
                                  f"{_show(stored)}")
        check_value(f.name, value, meta, typ)


def nearest_keys(key: str, keys) -> list[str]:
    return difflib.get_close_matches(key, list(keys), n=3, cutoff=0.4)


def apply_overrides(cfg, assignments: list[str] | dict[str, Any]):
    """Return ``cfg`` with ``key=value`` overrides parsed, type-checked and range-checked.

    ``assignments`` is a list of ``"key=value"`` strings (from the CLI) or a dict of
    already-typed values (from Python); both go through :func:`coerce_value`, so both are
    refused the same way. A key given twice in the list is refused. Raises
    :class:`ConfigError` with one line.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = field_types(type(cfg))
    if isinstance(assignments, Mapping):
        pairs = list(assignments.items())
    elif isinstance(assignments, str):
        raise ConfigError(f"--set expects a list of key=value, got {_show(assignments)}")
    else:
        pairs = []
        for item in assignments:
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"--set expects key=value, got {_show(item)}")
            key, text = item.split("=", 1)
            key = key.strip()
            if key in dict(pairs):
                raise ConfigError(f"--set {key}: given twice")
            pairs.append((key, text))
    changes: dict[str, Any] = {}
    for key, raw in pairs:
        if key not in fields:
            near = nearest_keys(str(key), fields)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"unknown config key {_show(key)}{hint} "
                              f"(keys: {', '.join(sorted(fields))})")
        changes[key] = coerce_value(key, raw, hints[key], dict(fields[key].metadata))
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


def _json_ready(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and value == 0.0:
        return 0.0  # -0.0 and 0.0 are one config: one cache key
    return value


def to_dict(cfg) -> dict[str, Any]:
    """The resolved config as JSON-ready data (tuples become lists, -0.0 becomes 0.0)."""
    return {k: _json_ready(v) for k, v in dataclasses.asdict(cfg).items()}
