"""Off-policy evaluation: what a target policy would earn, estimated from logs another policy collected.

- :mod:`~adrec.evaluation.ope.estimators`: the estimators (DM, IPW, SNIPW, DR, SNDR, Switch-DR, DRos, replay;
  for slates, independent-position IPS and the pseudo-inverse estimator), each with a bootstrap interval;
- :mod:`~adrec.evaluation.ope.reward`: the cross-fitted reward model of the model-based ones;
- :mod:`~adrec.evaluation.ope.policies`: target policies as slot-wise action distributions;
- :mod:`~adrec.evaluation.ope.obd`: the Open Bandit Dataset (``adrec ope obd``).
"""

from adrec.evaluation.ope.estimators import (
    BanditLog,
    DirectMethod,
    DoublyRobust,
    DRos,
    Estimate,
    Estimator,
    IndependentIPS,
    InverseProbabilityWeighting,
    PseudoInverse,
    Replay,
    RoundValues,
    SelfNormalizedDoublyRobust,
    SelfNormalizedIPW,
    SwitchDoublyRobust,
    Target,
    Terms,
    standard_estimators,
    uniform_slate_gamma,
)
from adrec.evaluation.ope.policies import bernoulli_ts, deterministic, uniform_random, zozotown_prior
from adrec.evaluation.ope.reward import LogisticReward, cross_fit, fit_folds, one_hot

__all__ = [
    "BanditLog",
    "DRos",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Estimator",
    "IndependentIPS",
    "InverseProbabilityWeighting",
    "LogisticReward",
    "PseudoInverse",
    "Replay",
    "RoundValues",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedIPW",
    "SwitchDoublyRobust",
    "Target",
    "Terms",
    "bernoulli_ts",
    "cross_fit",
    "deterministic",
    "fit_folds",
    "one_hot",
    "standard_estimators",
    "uniform_random",
    "uniform_slate_gamma",
    "zozotown_prior",
]
