"""A seeded, vectorized ad-market simulator with a known ground truth.

:class:`Market` holds the truth (users' demographics and latent interests, advertisers, campaigns with
budgets, bids, schedules and targeting, ads with categories, brands, prices and creative text) and the click
and conversion models (:meth:`Market.true_ctr`, :meth:`Market.true_cvr`). :func:`simulate_history` logs
requests, impressions, clicks and conversions under a documented logging policy, chunk by chunk;
:func:`simulate` writes all of it into a store and saves the truth next to it, so that calibration and A/B
tests can compare against it.

Examples
--------
>>> from adrec.simulate import SimulationConfig, simulate
>>> from adrec.store import open_store
>>> with open_store("sqlite:///demo/adrec.db") as store:  # doctest: +SKIP
...     report = simulate(SimulationConfig(seed=7), store, out_dir="demo/truth")
>>> market = Market.load("demo/truth")  # doctest: +SKIP
>>> market.true_ctr([0, 1], [10, 20], position=1)  # doctest: +SKIP
"""

from adrec.simulate.config import SimulationConfig
from adrec.simulate.history import ImpressionLog, LoggingPolicy, simulate_history
from adrec.simulate.market import Market
from adrec.simulate.runner import SimulationReport, simulate

__all__ = [
    "ImpressionLog",
    "LoggingPolicy",
    "Market",
    "SimulationConfig",
    "SimulationReport",
    "simulate",
    "simulate_history",
]
