"""The lab that runs and measures the toy models: training loop, probes, recipes, store, CLI.

In Jupyter::

    import experiments
    experiments.list()                       # every recipe, its paper and its verdict
    outcome = experiments.run("cohen2021-stability-thresholds", scale="quick")
    outcome.claims                           # a table
    outcome.figure()

``run`` takes ``--set``-style strings, a dict, or a whole ``Config``
(``dataclasses.replace(outcome.config, lr=0.02)``).
"""

from experiments.api import catalogue as list  # noqa: A001 (experiments.list(), by design)
from experiments.api import run

__all__ = ["list", "run"]
