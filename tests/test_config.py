from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from experiments.config import ConfigError, apply_overrides, param, parse_value, validate


@dataclass(frozen=True)
class Cfg:
    seed: int = param(0, lo=0)
    lr: float = param(0.1, lo=0.0, hi=10.0)
    dtype: str = param("float32", choices=("float32", "float64"))
    widths: tuple[int, ...] = param((8, 8), lo=1, hi=4096)
    bias: bool = param(True)
    data_dir: str | None = param(None)


def test_values_are_parsed_to_the_field_type():
    cfg = apply_overrides(Cfg(), ["seed=3", "lr=2.5e-1", "dtype=float64", "widths=4,5,6",
                                  "bias=false", "data_dir=/tmp/x"])
    assert cfg == Cfg(seed=3, lr=0.25, dtype="float64", widths=(4, 5, 6), bias=False,
                      data_dir="/tmp/x")
    assert isinstance(cfg.lr, float) and isinstance(cfg.seed, int)


def test_python_overrides_are_checked_too():
    assert apply_overrides(Cfg(), {"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="lr"):
        apply_overrides(Cfg(), {"lr": 11.0})


@pytest.mark.parametrize("assignment, fragment", [
    ("lrr=0.1", "did you mean lr"),
    ("seed=abc", "expected an integer"),
    ("lr=fast", "expected a number"),
    ("lr=-1", "out of range"),
    ("lr=nan", "finite"),
    ("lr=inf", "finite"),
    ("dtype=float16", "one of float32, float64"),
    ("widths=8,0", "out of range"),
    ("bias=maybe", "true or false"),
    ("seed", "key=value"),
])
def test_bad_input_raises_one_line_naming_the_key(assignment, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Cfg(), [assignment])
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_validate_catches_a_bad_preset():
    with pytest.raises(ConfigError, match="seed"):
        validate(Cfg(seed=-1))


def test_parse_optional_none():
    assert parse_value("data_dir", "none", str | None) is None
    assert math.isclose(parse_value("lr", "1e-3", float), 1e-3)
