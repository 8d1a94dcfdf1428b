"""Grid axes: ``--grid key=spec`` strings parsed into the values of each axis.

An integer range (``seed=0:5``) stays an :class:`IntRange` until the plan has checked the
grid's size, so ``--grid seed=0:100000000`` is refused at once (:func:`grid_size` reads
the axes' lengths, it never enumerates them).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from experiments import config as config_mod
from experiments.config import ConfigError

_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")


class IntRange(Sequence):
    """``range(start, stop, step)`` as value strings, made one at a time when asked for.

    :attr:`size` is the number of values by arithmetic (no ``sys.maxsize`` limit, unlike
    ``len``), so a grid's size is known before anything is enumerated.
    """

    def __init__(self, start: int, stop: int, step: int = 1) -> None:
        if step == 0:
            raise ValueError("range step must not be 0")
        self.start, self.stop, self.step = start, stop, step

    @property
    def size(self) -> int:
        if self.step > 0:
            return max(0, -(-(self.stop - self.start) // self.step))
        return max(0, -(-(self.start - self.stop) // -self.step))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        values = range(self.start, self.stop, self.step)
        if isinstance(index, slice):
            return [str(v) for v in values[index]]
        return str(values[index])

    def __iter__(self) -> Iterator[str]:
        return (str(v) for v in range(self.start, self.stop, self.step))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IntRange):
            return range(self.start, self.stop, self.step) == range(other.start, other.stop,
                                                                    other.step)
        if isinstance(other, list | tuple):
            return len(other) == self.size and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # like a list

    def __repr__(self) -> str:
        return f"IntRange({self.start}, {self.stop}, {self.step})"


def axis_size(values: Sequence[str]) -> int:
    return values.size if isinstance(values, IntRange) else len(values)


def grid_size(axes: Iterable[tuple[str, Sequence[str]]]) -> int:
    """The number of points of the Cartesian product, from the axes' lengths alone."""
    return math.prod(axis_size(values) for _, values in axes)


def axis_values(key: str, spec: str, typ: Any) -> Sequence[str]:
    """The values of one ``--grid key=spec``: a list of strings, or an :class:`IntRange`."""
    base = config_mod._optional_inner(typ) or typ
    if ";" in spec:
        values: Sequence[str] = [v.strip() for v in spec.split(";")]
    elif ":" in spec and base is not str:
        match = _RANGE.match(spec)
        if base is not int or match is None:
            raise ConfigError(f"--grid {key}: a:b[:step] ranges take integers and an integer "
                              f"key; list the values instead ({key}=v1,v2,...)")
        start, stop, step = (int(g) if g is not None else 1 for g in match.groups())
        if step == 0:
            raise ConfigError(f"--grid {key}: range step must not be 0")
        values = IntRange(start, stop, step)
        if values.size == 0:
            raise ConfigError(f"--grid {key}: no values in {spec!r}")
        return values  # a range lists no value twice
    else:
        values = [v.strip() for v in spec.split(",")]
    values = [v for v in values if v]
    if not values:
        raise ConfigError(f"--grid {key}: no values in {spec!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid {key}: a value is listed twice in {spec!r}")
    return values


def grid_values(key: str, spec: str, typ: Any) -> list[str]:
    """The values of one ``--grid key=spec`` as strings for ``--set``.

    ``a,b,c`` lists values; ``a:b`` or ``a:b:step`` is an integer range (Python's, end
    excluded: ``seed=0:5`` is 0..4); ``;`` separates values that hold commas themselves
    (a tuple-valued field: ``x_range=0,1;1,2``). This list is the whole axis; the plan
    itself keeps a range lazy (:func:`axis_values`) until it has checked the grid's size.
    """
    return list(axis_values(key, spec, typ))


def parse_grid(items: Iterable[str], cfg: Any) -> list[tuple[str, Sequence[str]]]:
    """[(key, values)] from ``--grid key=spec`` strings, keys checked against the config;
    integer ranges stay :class:`IntRange` (see :func:`grid_size`)."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    hints = config_mod.field_types(type(cfg))
    grid: list[tuple[str, Sequence[str]]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,... or key=a:b, got {item!r}")
        key, spec = (part.strip() for part in item.split("=", 1))
        if key not in fields:
            near = config_mod.nearest_keys(key, fields)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"--grid: unknown config key {key!r}{hint} "
                              f"(keys: {', '.join(sorted(fields))})")
        if key in dict(grid):
            raise ConfigError(f"--grid {key}: given twice")
        grid.append((key, axis_values(key, spec, hints[key])))
    return grid
