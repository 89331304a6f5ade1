"""Off-policy estimators: the value of a target policy from logs another (the logging) policy collected.

The inputs are plain arrays, in the layout of the Open Bandit Pipeline (Saito et al., NeurIPS 2021 Datasets &
Benchmarks), so the two can be compared on the same inputs:

- a :class:`BanditLog`: per logged impression (a *round*), the ``action`` shown, its ``position`` (slot, from 0),
  the ``reward`` (a click), the logging policy's ``pscore`` (its probability of that action in that slot) and,
  for the slate estimators, the ``slate`` the impression belongs to;
- ``action_dist`` ``(n_rounds, n_actions, len_list)``: the target policy's probability of each action in each slot
  for each round's context;
- ``q_hat`` ``(n_rounds, n_actions, len_list)``: a reward model's predictions, fitted on other folds than the
  round's own (:func:`adrec.evaluation.ope.reward.cross_fit`).

Every estimator here has the form ``mean(base) + mean(num) / mean(den)`` over units (rounds, or slates for the
slate estimators), with ``w = action_dist[i, a_i, p_i] / pscore_i`` and ``DM_i = Σ_a action_dist[i, a, p_i]
q_hat[i, a, p_i]``:

=========  =====================  ==============================================  ===========
estimator  base                   num                                             den
=========  =====================  ==============================================  ===========
DM         ``DM_i``               0                                               1
IPW        0                      ``w r``                                         1
SNIPW      0                      ``w r``                                         ``w``
DR         ``DM_i``               ``w (r - q_i)``                                 1
SNDR       ``DM_i``               ``w (r - q_i)``                                 ``w``
Switch-DR  ``DM_i``               ``1[w <= tau] w (r - q_i)``                     1
DRos       ``DM_i``               ``lambda w / (w² + lambda) (r - q_i)``          1
Replay     0                      ``1[pi picks a_i] r``                           ``1[...]``
=========  =====================  ==============================================  ===========

(Dudík et al., ICML 2011; Swaminathan & Joachims, NeurIPS 2015; Wang et al., ICML 2017; Su et al., ICML 2020;
Li et al., WSDM 2011.) So a bootstrap replicate re-weights the units and recomputes the ratio itself, not just a
mean of per-round terms: :meth:`Estimator.estimate_interval` gives the percentile interval of those replicates.

For slates (the whole list's reward, additive over slots): :class:`IndependentIPS` (each slot weighted by its own
marginal propensities) and :class:`PseudoInverse` (Swaminathan et al., "Off-policy evaluation for slate
recommendation", NeurIPS 2017), which is unbiased under additive rewards whenever the target's slot marginals lie
in the span of the logging policy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adrec.exceptions import ValidationError

__all__ = [
    "BanditLog",
    "DRos",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Estimator",
    "IndependentIPS",
    "InverseProbabilityWeighting",
    "PseudoInverse",
    "Replay",
    "RoundValues",
    "SelfNormalizedDoublyRobust",
    "SelfNormalizedIPW",
    "SwitchDoublyRobust",
    "Target",
    "Terms",
    "standard_estimators",
    "uniform_slate_gamma",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BanditLog:
    """Logged rounds as columns (see the module docs); ``slate`` is optional (the slate estimators need it)."""

    action: Ints
    position: Ints
    reward: Floats
    pscore: Floats
    n_actions: int
    len_list: int = 1
    slate: Ints | None = None

    def __post_init__(self) -> None:
        n = len(self.action)
        for name in ("position", "reward", "pscore"):
            if len(getattr(self, name)) != n:
                raise ValidationError(name, f"has {len(getattr(self, name))} rounds; action has {n}")
        if self.slate is not None and len(self.slate) != n:
            raise ValidationError("slate", f"has {len(self.slate)} rounds; action has {n}")
        if n == 0:
            raise ValidationError("action", "the log holds no rounds")
        if self.action.min() < 0 or self.action.max() >= self.n_actions:
            raise ValidationError("action", f"must lie in [0, {self.n_actions}) (n_actions)")
        if self.position.min() < 0 or self.position.max() >= self.len_list:
            raise ValidationError("position", f"must lie in [0, {self.len_list}) (len_list)")
        if not (np.all(self.pscore > 0) and np.all(self.pscore <= 1)):
            raise ValidationError("pscore", "the logging policy's probabilities must lie in (0, 1]")
        if np.isnan(self.reward).any():
            raise ValidationError("reward", "holds NaN")

    @property
    def n_rounds(self) -> int:
        return len(self.action)

    def take(self, rows: Ints) -> BanditLog:
        """The rounds ``rows`` (e.g. one fold)."""
        return BanditLog(
            self.action[rows],
            self.position[rows],
            self.reward[rows],
            self.pscore[rows],
            self.n_actions,
            self.len_list,
            None if self.slate is None else self.slate[rows],
        )

    def check_dist(self, dist: Floats, name: str = "action_dist") -> None:
        want = (self.n_rounds, self.n_actions, self.len_list)
        if dist.shape != want:
            raise ValidationError(name, f"must have shape {want} (rounds, actions, slots); got {dist.shape}")


@dataclass(frozen=True)
class Terms:
    """Per unit, the three terms of ``mean(base) + mean(num) / mean(den)`` (see the module docs)."""

    base: Floats
    num: Floats
    den: Floats

    def value(self) -> float:
        den = float(self.den.mean())
        return float(self.base.mean()) + (float(self.num.mean()) / den if den > 0 else math.nan)

    def bootstrap(self, n_bootstrap: int, seed: int | None, cluster: Ints | None = None) -> Floats:
        """``n_bootstrap`` values on units resampled with replacement (each a multinomial re-weighting); with
        ``cluster`` (one id per unit, e.g. its user), whole clusters are resampled, as units of one cluster are not
        independent."""
        n = len(self.base)
        rng = np.random.default_rng(seed)
        stacked = np.stack([self.base, self.num, self.den, np.ones(n)], axis=1)
        if cluster is not None:
            if len(cluster) != n:
                raise ValidationError("cluster", f"has {len(cluster)} ids; there are {n} units")
            _, inverse = np.unique(cluster, return_inverse=True)
            groups = int(inverse.max()) + 1 if n else 0
            stacked = np.stack([np.bincount(inverse, weights=c, minlength=groups) for c in stacked.T], axis=1)
        m = len(stacked)
        out = np.empty(n_bootstrap)
        chunk = max(1, min(n_bootstrap, 20_000_000 // max(m, 1)))
        for start in range(0, n_bootstrap, chunk):
            b = min(chunk, n_bootstrap - start)
            counts = rng.multinomial(m, np.full(m, 1.0 / m), size=b).astype(np.float64)
            sums = counts @ stacked  # (b, 4): Σ base, Σ num, Σ den, units
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(sums[:, 2] > 0, sums[:, 1] / sums[:, 2], np.nan)
            out[start : start + b] = sums[:, 0] / sums[:, 3] + ratio
        return out


@dataclass(frozen=True)
class Estimate:
    """A policy value with its bootstrap percentile interval."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class RoundValues:
    """What the estimators need of a target policy and a reward model, per round: ``pi``, the target's probability
    of the logged action in the logged slot; ``dm``, ``Σ_a pi(a | x, p) q_hat(x, a, p)`` at the logged slot; ``q``,
    ``q_hat`` of the logged action (``dm`` and ``q`` are None without a reward model).

    Built from dense ``(n_rounds, n_actions, len_list)`` arrays by :meth:`from_dists`, or directly when the action
    space is too large to hold those arrays for every round (compute them per context, keep these three)."""

    pi: Floats
    dm: Floats | None = None
    q: Floats | None = None

    @classmethod
    def from_dists(cls, log: BanditLog, action_dist: Floats, q_hat: Floats | None = None) -> RoundValues:
        log.check_dist(action_dist)
        rows = np.arange(log.n_rounds)
        pi = action_dist[rows, log.action, log.position]
        if q_hat is None:
            return cls(pi)
        log.check_dist(q_hat, "q_hat")
        dm = (action_dist[rows, :, log.position] * q_hat[rows, :, log.position]).sum(axis=1)
        return cls(pi, dm, q_hat[rows, log.action, log.position])

    def check(self, log: BanditLog) -> None:
        for name in ("pi", "dm", "q"):
            v = getattr(self, name)
            if v is not None and v.shape != (log.n_rounds,):
                raise ValidationError(name, f"must have shape ({log.n_rounds},) (one per round); got {v.shape}")
        if (self.pi < 0).any() or (self.pi > 1).any():
            raise ValidationError("pi", "the target's probabilities must lie in [0, 1]")


Target = Floats | RoundValues
"""A target policy as its dense action distribution ``(n_rounds, n_actions, len_list)`` or its :class:`RoundValues`
(which then carry the reward model's predictions too)."""


class Estimator:
    """An off-policy estimator: :meth:`terms` of each unit; the value and its interval follow from them."""

    name: str = ""
    needs_reward_model: bool = False

    def terms(self, log: BanditLog, target: Target, q_hat: Floats | None = None) -> Terms:
        values = target if isinstance(target, RoundValues) else RoundValues.from_dists(log, target, q_hat)
        values.check(log)
        if self.needs_reward_model and (values.dm is None or values.q is None):
            raise ValidationError("q_hat", f"{self.name} needs a reward model's predictions")
        return self._terms(log, values)

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        raise NotImplementedError

    def estimate_policy_value(self, log: BanditLog, target: Target, q_hat: Floats | None = None) -> float:
        return self.terms(log, target, q_hat).value()

    def estimate_interval(
        self,
        log: BanditLog,
        target: Target,
        q_hat: Floats | None = None,
        *,
        alpha: float = 0.05,
        n_bootstrap: int = 1000,
        random_state: int | None = 0,
        cluster: Ints | None = None,
    ) -> Estimate:
        """The estimate with the ``1 - alpha`` percentile interval of ``n_bootstrap`` resampled replicates (NaN
        replicates, a resample without one usable unit, are dropped; ``cluster``: resample whole clusters of units,
        see :meth:`Terms.bootstrap`). The reward model stays as fitted: the interval of DM reflects the sampling of
        the rounds, not the model's own error."""
        if not 0 < alpha < 1:
            raise ValidationError("alpha", f"must lie in (0, 1) (got {alpha})")
        if n_bootstrap < 1:
            raise ValidationError("n_bootstrap", f"must be >= 1 (got {n_bootstrap})")
        terms = self.terms(log, target, q_hat)
        reps = terms.bootstrap(n_bootstrap, random_state, cluster)
        reps = reps[~np.isnan(reps)]
        lo, hi = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if len(reps) else (math.nan,) * 2
        return Estimate(self.name, terms.value(), float(lo), float(hi))


def _ones(n: int) -> Floats:
    return np.ones(n)


def _model(v: RoundValues) -> tuple[Floats, Floats]:
    assert v.dm is not None and v.q is not None  # Estimator.terms checked
    return v.dm, v.q


@dataclass(frozen=True)
class DirectMethod(Estimator):
    name: str = "dm"
    needs_reward_model: bool = True

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        dm, _ = _model(v)
        return Terms(dm, np.zeros(log.n_rounds), _ones(log.n_rounds))


@dataclass(frozen=True)
class InverseProbabilityWeighting(Estimator):
    name: str = "ipw"

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        return Terms(np.zeros(log.n_rounds), w * log.reward, _ones(log.n_rounds))


@dataclass(frozen=True)
class SelfNormalizedIPW(Estimator):
    name: str = "snipw"

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        return Terms(np.zeros(log.n_rounds), w * log.reward, w)


@dataclass(frozen=True)
class DoublyRobust(Estimator):
    name: str = "dr"
    needs_reward_model: bool = True

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        dm, q = _model(v)
        return Terms(dm, w * (log.reward - q), _ones(log.n_rounds))


@dataclass(frozen=True)
class SelfNormalizedDoublyRobust(Estimator):
    name: str = "sndr"
    needs_reward_model: bool = True

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        dm, q = _model(v)
        return Terms(dm, w * (log.reward - q), w)


@dataclass(frozen=True)
class SwitchDoublyRobust(Estimator):
    """DR where the weight is at most ``tau``; the DM term alone elsewhere (Wang et al., ICML 2017)."""

    tau: float = 100.0
    name: str = "switch-dr"
    needs_reward_model: bool = True

    def __post_init__(self) -> None:
        if not self.tau >= 0:
            raise ValidationError("tau", f"must be >= 0 (got {self.tau})")

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        dm, q = _model(v)
        return Terms(dm, (w <= self.tau) * w * (log.reward - q), _ones(log.n_rounds))


@dataclass(frozen=True)
class DRos(Estimator):
    """DR with the weight shrunk to ``lambda w / (w² + lambda)`` (Su et al., "Doubly robust off-policy evaluation
    with shrinkage", ICML 2020): ``lambda`` = 0 is DM, ``lambda`` → ∞ is DR."""

    lambda_: float = 100.0
    name: str = "dros"
    needs_reward_model: bool = True

    def __post_init__(self) -> None:
        if not self.lambda_ >= 0:
            raise ValidationError("lambda_", f"must be >= 0 (got {self.lambda_})")

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        dm, q = _model(v)
        if math.isinf(self.lambda_):
            shrunk = w
        else:
            denom = w**2 + self.lambda_
            shrunk = np.divide(self.lambda_ * w, denom, out=np.zeros_like(w), where=denom > 0)
        return Terms(dm, shrunk * (log.reward - q), _ones(log.n_rounds))


@dataclass(frozen=True)
class Replay(Estimator):
    """The mean reward of the rounds where a deterministic target policy picks the logged action in the logged
    slot (Li et al., WSDM 2011); unbiased for uniform-random logs. NaN when it never does."""

    name: str = "replay"

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        match = (v.pi == 1.0).astype(np.float64)
        return Terms(np.zeros(log.n_rounds), match * log.reward, match)


def standard_estimators(tau: float = 100.0, lambda_: float = 100.0) -> list[Estimator]:
    """DM, IPW, SNIPW, DR, SNDR, Switch-DR and DRos (Switch-DR's ``tau`` and DRos's ``lambda_`` as given)."""
    return [
        DirectMethod(),
        InverseProbabilityWeighting(),
        SelfNormalizedIPW(),
        DoublyRobust(),
        SelfNormalizedDoublyRobust(),
        SwitchDoublyRobust(tau=tau),
        DRos(lambda_=lambda_),
    ]


# -- slates ------------------------------------------------------------------------------------------------------
def _slates(log: BanditLog) -> tuple[Ints, int]:
    if log.slate is None:
        raise ValidationError("slate", "the slate estimators need each round's slate id")
    _, inverse = np.unique(log.slate, return_inverse=True)
    return inverse.astype(np.int64), int(inverse.max()) + 1


@dataclass(frozen=True)
class IndependentIPS(Estimator):
    """Per slate, the sum over its slots of ``r_j · pi(a_j in slot j) / mu(a_j in slot j)`` with the target's and
    the logging policy's *marginal* slot propensities (``action_dist`` holds the target's): unbiased when each
    slot's reward depends on its own action only. The value is per slate (the whole list's reward)."""

    name: str = "iips"

    def _terms(self, log: BanditLog, v: RoundValues) -> Terms:
        w = v.pi / log.pscore
        unit, n = _slates(log)
        num = np.bincount(unit, weights=w * log.reward, minlength=n).astype(np.float64)
        return Terms(np.zeros(n), num, _ones(n))


def uniform_slate_gamma(n_actions: int, len_list: int) -> Floats:
    """``E[1_s 1_sᵀ]`` of slates drawn uniformly without replacement (indices ``slot * n_actions + action``)."""
    m, slots = n_actions, len_list
    if slots > m:
        raise ValidationError("len_list", f"a slate of {slots} distinct actions needs >= {slots} actions (got {m})")
    gamma = np.zeros((slots * m, slots * m))
    for j in range(slots):
        for k in range(slots):
            block = np.eye(m) / m if j == k else (np.ones((m, m)) - np.eye(m)) / (m * (m - 1))
            gamma[j * m : (j + 1) * m, k * m : (k + 1) * m] = block
    return gamma


@dataclass(frozen=True)
class PseudoInverse(Estimator):
    """The pseudo-inverse estimator (Swaminathan et al., NeurIPS 2017): per slate ``s`` with total reward ``r``,
    ``r · q_piᵀ Γ⁺ 1_s``, where ``q_pi`` are the target's slot marginals (``action_dist`` of the slate's rounds)
    and ``Γ = E_mu[1_s 1_sᵀ]`` the logging policy's (context-free here: one ``gamma`` for every slate; see
    :func:`uniform_slate_gamma`). Every slate must log all ``len_list`` slots."""

    gamma: Floats = field(default_factory=lambda: np.zeros((0, 0)))
    name: str = "pi"

    def terms(self, log: BanditLog, target: Target, q_hat: Floats | None = None) -> Terms:
        if isinstance(target, RoundValues):
            raise ValidationError("action_dist", "the pseudo-inverse estimator needs the target's slot marginals")
        action_dist = target
        log.check_dist(action_dist)
        m, slots = log.n_actions, log.len_list
        if self.gamma.shape != (m * slots, m * slots):
            raise ValidationError("gamma", f"must be {(m * slots, m * slots)} (slot × action, twice)")
        unit, n = _slates(log)
        if not np.array_equal(np.bincount(unit, minlength=n), np.full(n, slots)):
            raise ValidationError("slate", f"every slate must have exactly {slots} logged slots")
        pinv = np.linalg.pinv(self.gamma, hermitian=True)
        order = np.lexsort((log.position, unit))  # rounds grouped by slate, slots in order
        rows = order.reshape(n, slots)
        # q_pi per slate from its first round (the context is the slate's): index slot * m + action.
        q_pi = action_dist[rows[:, 0]].transpose(0, 2, 1).reshape(n, slots * m)
        chosen = log.position[rows] * m + log.action[rows]  # (n, slots) indices of 1_s
        proj = q_pi @ pinv  # (n, slots*m)
        coef = np.take_along_axis(proj, chosen, axis=1).sum(axis=1)
        total = log.reward[rows].sum(axis=1)
        return Terms(np.zeros(n), total * coef, _ones(n))
