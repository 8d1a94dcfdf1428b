"""Sohl-Dickstein 2024, tanh, a single data point: plane, zoom, dimension.

Every pixel is the paper's width-16 network trained with its own hyperparameters
(``toy_models.fractal``); see ``experiments.recipes._sohldickstein2024`` for the
zoom, the colouring and the claims, and ``papers/sohldickstein2024.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import param  # noqa: F401
from experiments.recipes import _sohldickstein2024 as common

PAPER = common.PAPER
DESCRIPTION = "tanh net trained on N = 1 data point, η₀ vs η₁"
TITLE = "tanh, a single data point"
_META = common.FIELD_META


@dataclass(frozen=True)
class Config(common.FractalConfig):
    n_data: int = param(1, **_META['n_data'])


PRESETS = {
    "quick": Config(x_range=(2.6, 3.0), y_range=(1.1, 1.3)),
    "paper": Config(**common.PAPER_SCALE),
}


def run(cfg: Config, device: str) -> dict:
    return common.run(cfg, device)


def plot(result: dict, cfg: Config):
    return common.plot(result, cfg, TITLE)


def claims(result: dict, cfg: Config) -> list:
    return common.claims(result, cfg)


# split into tiles by ``python -m experiments sweep <id> --tiles N``, stitched back here
stitch = common.stitch
draw_stitched = common.draw_stitched
