"""Sohl-Dickstein 2024, linear, full batch, N = 16: plane, zoom, dimension.

Every pixel is the paper's width-16 network trained with its own hyperparameters
(``toy_models.fractal``); see ``experiments.recipes._sohldickstein2024`` for the
zoom, the colouring and the claims, and ``papers/sohldickstein2024.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import param  # noqa: F401
from experiments.recipes import _sohldickstein2024 as common

PAPER = common.PAPER
DESCRIPTION = "linear (identity) net, N = 16, full-batch GD, η₀ vs η₁"
TITLE = "linear, full batch, N = 16"
_META = common.FIELD_META


@dataclass(frozen=True)
class Config(common.FractalConfig):
    activation: str = param("identity", **_META['activation'])
    n_data: int = param(16, **_META['n_data'])


PRESETS = {
    "quick": Config(x_range=(0.8, 2.8), y_range=(1.0, 3.0)),
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
