"""The lab that runs and measures the toy models: training loop, probes, recipes, store, CLI.

In Jupyter::

    import experiments
    outcome = experiments.run("cohen2021-stability-thresholds", scale="quick")
    outcome.claims, outcome.figure()
"""

from experiments.api import run

__all__ = ["run"]
