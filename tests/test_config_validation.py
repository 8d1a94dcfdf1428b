"""One validation path for ``--set`` text and Python override values, and bounds on
every numeric field of every recipe (seeds included). Only resolve/validate paths run
here: no recipe is computed."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

from experiments import api, config, recipes
from experiments.config import ConfigError, apply_overrides, param, to_dict, validate

SEED_HI = 2**31 - 1


@dataclass(frozen=True)
class Cfg:
    seed: int = param(0, lo=0, hi=SEED_HI)
    steps: int = param(10, lo=1, hi=1000)
    lr: float = param(0.1, lo=-1.0, hi=10.0)
    widths: tuple[int, ...] = param((8, 8), lo=1, hi=4096)
    offsets: tuple[float, ...] = param((0.0, 1.0), lo=-5.0, hi=5.0)
    goal: float | None = param(None, lo=0.0, hi=1.0)
    bias: bool = param(True)
    name: str = param("a", choices=("a", "b"))
    unbounded: int = param(0)


def _error(cfg, assignments) -> str:
    with pytest.raises(ConfigError) as err:
        apply_overrides(cfg, assignments)
    message = str(err.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- today's failures

@pytest.mark.parametrize("value", [1.5, 2.0, np.float64(3.0)])
def test_float_for_an_int_field_is_refused(value):
    message = _error(Cfg(), {"steps": value})
    assert message.startswith("steps:") and "expected an integer" in message


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bool_for_an_int_or_float_field_is_refused(value):
    assert "expected an integer" in _error(Cfg(), {"steps": value})
    assert "expected a number" in _error(Cfg(), {"lr": value})
    assert "expected an integer" in _error(Cfg(), {"widths": (4, value)})


def test_a_number_for_a_bool_field_is_refused():
    assert "true or false" in _error(Cfg(), {"bias": 1})
    assert apply_overrides(Cfg(), {"bias": np.bool_(False)}).bias is False


@pytest.mark.parametrize("key", ["steps", "lr", "widths", "bias", "name", "seed"])
def test_none_is_refused_for_a_field_that_is_not_optional(key):
    message = _error(Cfg(), {key: None})
    assert message.startswith(f"{key}:") and "None" in message


def test_none_is_taken_by_an_optional_field():
    cfg = apply_overrides(Cfg(goal=0.5), {"goal": None})
    assert cfg.goal is None
    assert apply_overrides(Cfg(), {"goal": 1}).goal == 1.0
    assert "out of range" in _error(Cfg(), {"goal": 2.0})
    assert "out of range" in _error(Cfg(), ["goal=2"])


def test_a_list_for_a_tuple_field_is_converted_and_range_checked():
    cfg = apply_overrides(Cfg(), {"widths": [4, np.int64(5)], "offsets": [1, 2.5]})
    assert cfg.widths == (4, 5) and type(cfg.widths) is tuple
    assert all(type(w) is int for w in cfg.widths)
    assert cfg.offsets == (1.0, 2.5) and all(type(x) is float for x in cfg.offsets)
    assert "out of range" in _error(Cfg(), {"widths": [4, 0]})
    assert "out of range" in _error(Cfg(), {"widths": (4, 5000)})
    assert "expected an integer" in _error(Cfg(), {"widths": [4, 2.5]})
    assert "expected a list" in _error(Cfg(), {"widths": 4})
    assert "at least one" in _error(Cfg(), {"widths": []})


def test_float_seed_is_refused():
    for value in (1.5, 2.0, True):
        message = _error(Cfg(), {"seed": value})
        assert message.startswith("seed:")
    assert "expected an integer" in _error(Cfg(), {"seed": 2.0})


@pytest.mark.parametrize("assignments", [
    {"seed": 10**30}, {"seed": -1}, {"seed": SEED_HI + 1}, ["seed=99999999999999999999"],
    {"seed": 10**5000},
])
def test_huge_seed_is_refused(assignments):
    message = _error(Cfg(), assignments)
    assert message.startswith("seed:") and "out of range" in message
    assert len(message) < 200


def test_ints_without_declared_bounds_stay_within_int64():
    assert apply_overrides(Cfg(), {"unbounded": 2**62}).unbounded == 2**62
    assert "2**62" in _error(Cfg(), {"unbounded": 2**62 + 1})
    assert "2**62" in _error(Cfg(), [f"unbounded={-(2**63)}"])
    with pytest.raises(ConfigError, match="unbounded"):
        validate(Cfg(unbounded=2**63))


def test_a_repeated_set_key_is_refused():
    assert _error(Cfg(), ["lr=0.1", "lr=0.2"]) == "--set lr: given twice"
    assert _error(Cfg(), ["lr=0.1", " lr =0.1"]) == "--set lr: given twice"


def test_numpy_scalars_become_python_ones():
    cfg = apply_overrides(Cfg(), {"steps": np.int32(7), "lr": np.float32(0.5), "seed": np.uint8(3)})
    assert (cfg.steps, cfg.lr, cfg.seed) == (7, 0.5, 3)
    assert type(cfg.steps) is int and type(cfg.lr) is float and type(cfg.seed) is int
    json.dumps(to_dict(cfg))


def test_a_string_in_the_python_dict_is_parsed_like_cli_text():
    cfg = apply_overrides(Cfg(), {"steps": "12", "widths": "3,4", "bias": "off", "goal": "none"})
    assert (cfg.steps, cfg.widths, cfg.bias, cfg.goal) == (12, (3, 4), False, None)
    assert "expected an integer" in _error(Cfg(), {"steps": "2.0"})
    assert "expected a string" in _error(Cfg(), {"name": 1})


@pytest.mark.parametrize("python, text", [
    ({"steps": 2.0}, "steps=2.0"), ({"steps": 0}, "steps=0"), ({"lr": math.inf}, "lr=inf"),
    ({"lr": math.nan}, "lr=nan"), ({"lr": 11}, "lr=11"), ({"widths": (1, 0)}, "widths=1,0"),
    ({"name": "c"}, "name=c"), ({"lr": 10**400}, "lr=1e400"),
])
def test_python_values_and_cli_text_get_the_same_error(python, text):
    def without_got(message: str) -> str:  # the value is shown as given: 2.0 or '2.0'
        return re.sub(r"got [^;]*", "got ...", message)

    assert without_got(_error(Cfg(), python)) == without_got(_error(Cfg(), [text]))


# ---------------------------------------------------------------- -0 is 0

def test_negative_zero_is_stored_as_zero():
    zero = apply_overrides(Cfg(), {"lr": 0.0, "offsets": (0.0, 1.0)})
    for assignments in ({"lr": -0.0, "offsets": (-0.0, 1.0)}, {"lr": 0, "offsets": [0, 1]},
                        ["lr=-0", "offsets=-0,1"], ["lr=-0.0", "offsets=-0.0,1.0"]):
        cfg = apply_overrides(Cfg(), assignments)
        assert math.copysign(1.0, cfg.lr) == 1.0
        assert math.copysign(1.0, cfg.offsets[0]) == 1.0
        assert to_dict(cfg) == to_dict(zero)
        assert json.dumps(to_dict(cfg)) == json.dumps(to_dict(zero))
    # a config built directly with -0.0 still gives the same JSON (the cache key)
    assert json.dumps(to_dict(Cfg(lr=-0.0, offsets=(-0.0, 1.0)))) == json.dumps(to_dict(zero))


def test_negative_zero_in_a_real_recipe_gives_one_cache_key():
    _, plain = api.resolve("kumar2024-lazy-to-rich", "quick")
    _, negative = api.resolve("kumar2024-lazy-to-rich", "quick", ["target=1,-0,1"])
    _, python = api.resolve("kumar2024-lazy-to-rich", "quick", {"target": [1, -0.0, 1]})
    assert plain.target[1] == 0.0
    assert to_dict(negative) == to_dict(plain) == to_dict(python)
    module = recipes.load("kumar2024-lazy-to-rich")
    assert (api.run_directory("kumar2024-lazy-to-rich", module, negative)
            == api.run_directory("kumar2024-lazy-to-rich", module, plain))


# ---------------------------------------------------------------- validate

def test_validate_refuses_a_config_holding_the_wrong_type():
    for bad, key in ((Cfg(steps=2.0), "steps"), (Cfg(lr=1), "lr"), (Cfg(widths=[8]), "widths"),
                     (Cfg(seed=True), "seed"), (Cfg(steps=None), "steps"),
                     (Cfg(seed=np.int64(1)), "seed")):
        with pytest.raises(ConfigError, match=f"^{key}:"):
            validate(bad)
    validate(Cfg(lr=-0.0))


# ---------------------------------------------------------------- real recipes

RECIPE = "cohen2021-stability-thresholds"  # seed (int), momentum (float), steps (int)


@pytest.mark.parametrize("overrides, key", [
    ({"steps": 1000.0}, "steps"), ({"steps": True}, "steps"), ({"momentum": None}, "momentum"),
    ({"seed": 1.5}, "seed"), ({"seed": 10**30}, "seed"), (["seed=99999999999999999999"], "seed"),
    (["momentum=0.5", "momentum=0.6"], "--set momentum"), ({"dtype": None}, "dtype"),
])
def test_a_real_recipe_refuses_bad_overrides(overrides, key):
    with pytest.raises(ConfigError) as err:
        api.resolve(RECIPE, "quick", overrides)
    assert str(err.value).startswith(f"{key}:")


def test_a_real_recipe_seed_goes_through_apply_overrides():
    _, cfg = api.resolve(RECIPE, "quick")
    assert apply_overrides(cfg, {"seed": 7}).seed == 7
    assert apply_overrides(cfg, {"seed": SEED_HI}).seed == SEED_HI
    for value in (1.5, 2.0, True, 10**30, -1, SEED_HI + 1):
        with pytest.raises(ConfigError, match="^seed:"):
            apply_overrides(cfg, {"seed": value})


def test_a_real_tuple_field_is_range_checked_from_python():
    recipe = "cohen2021-progressive-sharpening"
    _, cfg = api.resolve(recipe, "quick", {"lrs": [0.1, 1], "accuracy_goal": 1})
    assert cfg.lrs == (0.1, 1.0) and cfg.accuracy_goal == 1.0
    with pytest.raises(ConfigError, match="^lrs: .*out of range"):
        api.resolve(recipe, "quick", {"lrs": [0.1, 100.0]})
    _, cfg = api.resolve(recipe, "quick", {"accuracy_goal": None})
    assert cfg.accuracy_goal is None


def _numeric(typ) -> bool:
    inner = config._optional_inner(typ)
    typ = inner if inner is not None else typ
    element = config._tuple_element_type(typ)
    return (element if element is not None else typ) in (int, float)


def _is_seed(name: str) -> bool:
    return name in ("seed", "seeds") or name.endswith("_seed")


def _recipe_fields():
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        hints = config.field_types(module.Config)
        for f in dataclasses.fields(module.Config):
            yield recipe_id, module, f, hints[f.name]


def test_every_numeric_recipe_field_declares_both_bounds():
    unbounded = [f"{recipe_id}.{f.name}" for recipe_id, _, f, typ in _recipe_fields()
                 if _numeric(typ) and f.metadata.get("choices") is None
                 and (f.metadata.get("lo") is None or f.metadata.get("hi") is None)]
    assert unbounded == []


def test_seed_fields_are_bounded_so_runs_cannot_overflow():
    seeds = [(recipe_id, f) for recipe_id, _, f, _ in _recipe_fields() if _is_seed(f.name)]
    assert seeds
    for recipe_id, f in seeds:
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        where = f"{recipe_id}.{f.name}"
        assert lo >= 0, where
        # seed * 1_000_003 + offsets (jacot2018) must stay inside torch.manual_seed's range
        assert hi <= SEED_HI, where


def test_every_preset_validates_and_round_trips_through_its_own_cli_text():
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        hints = config.field_types(module.Config)
        for scale, preset in module.PRESETS.items():
            validate(preset)
            _, resolved = api.resolve(recipe_id, scale)
            texts = []
            for f in dataclasses.fields(preset):
                value = getattr(preset, f.name)
                if value is None or hints[f.name] is str:
                    continue
                shown = ",".join(map(repr, value)) if isinstance(value, tuple) else repr(value)
                texts.append(f"{f.name}={shown}")
            assert apply_overrides(preset, texts) == preset, (recipe_id, scale)
            assert apply_overrides(preset, to_dict(preset)) == resolved, (recipe_id, scale)
