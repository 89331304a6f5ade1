"""The closed loop, measured: simulated users served live through adrec's own :class:`~adrec.serving.Pipeline`,
their clicks and conversions (drawn from the market's true models) fed back through the token-checked ledger,
models retrained from the store on a simulated clock, and arms compared with user-clustered confidence intervals.

:mod:`.assign` splits users between arms, :mod:`.stats` compares them, :mod:`.live` runs the loop.
"""

from adrec.experiment.assign import assign_arms
from adrec.experiment.live import ArmConfig, ArmResult, ExperimentConfig, ExperimentReport, run_experiment
from adrec.experiment.stats import Comparison, RatioEstimate, compare_ratios, ratio_estimate

__all__ = [
    "ArmConfig",
    "ArmResult",
    "Comparison",
    "ExperimentConfig",
    "ExperimentReport",
    "RatioEstimate",
    "assign_arms",
    "compare_ratios",
    "ratio_estimate",
    "run_experiment",
]
