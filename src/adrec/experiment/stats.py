"""Confidence intervals of per-arm ratio metrics and of their differences, clustered by user.

Every metric of an arm is a ratio of sums over its users, ``R = Σ y_u / Σ n_u`` (CTR: clicks over impressions;
revenue per request: revenue over requests). A user's events are correlated, so the unit of sampling is the user:
the variance of ``R`` is the delta-method (linearisation) estimate ``Σ (y_u − R n_u)² / (Σ n_u)²`` with the
small-sample factor ``m / (m − 1)`` for ``m`` users. Arms hold disjoint users (hash assignment), so the variance
of a difference is the sum of the two. Intervals are normal, at 95 % by default; the p-value is two-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Comparison", "RatioEstimate", "compare_ratios", "ratio_estimate"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class RatioEstimate:
    """``mean`` = Σy / Σn over the users of one arm, with its standard error and 95 % interval."""

    mean: float
    se: float
    users: int

    @property
    def ci_low(self) -> float:
        return self.mean - Z95 * self.se

    @property
    def ci_high(self) -> float:
        return self.mean + Z95 * self.se

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "se": self.se}


@dataclass(frozen=True)
class Comparison:
    """``arm`` against ``baseline`` on ``metric``: the difference, the relative lift, their 95 % intervals and the
    two-sided p-value of no difference; ``mde`` is the smallest difference this many users would detect with 80 %
    power at α = 0.05."""

    arm: str
    baseline: str
    metric: str
    difference: float
    ci_low: float
    ci_high: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    p_value: float
    mde: float

    def as_dict(self) -> dict[str, float | str]:
        return dict(self.__dict__)


def ratio_estimate(y: npt.ArrayLike, n: npt.ArrayLike) -> RatioEstimate:
    """The ratio Σy / Σn of per-user sums ``y`` and ``n`` with its user-clustered standard error."""
    ys, ns = np.asarray(y, dtype=np.float64), np.asarray(n, dtype=np.float64)
    m = len(ys)
    total = ns.sum()
    if m == 0 or total <= 0:
        return RatioEstimate(math.nan, math.nan, m)
    r = ys.sum() / total
    resid = ys - r * ns
    var = float((resid**2).sum()) / total**2 * (m / (m - 1) if m > 1 else math.inf)
    return RatioEstimate(float(r), math.sqrt(var), m)


def _p_value(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def compare_ratios(arm: str, baseline: str, metric: str, a: RatioEstimate, b: RatioEstimate) -> Comparison:
    """``a`` (the arm) against ``b`` (the baseline): difference ``a − b`` and lift ``a / b − 1``.

    The lift's interval comes from the delta method on ``log(a / b)`` (exact for neither, close for both when the
    standard errors are small against the means).
    """
    diff = a.mean - b.mean
    se = math.sqrt(a.se**2 + b.se**2)
    p = _p_value(diff / se) if se > 0 else (0.0 if diff != 0 else 1.0)
    if math.isnan(diff) or math.isnan(se):  # an arm without a denominator (no clicks for CVR, no users): unknown
        p = math.nan
    lift = a.mean / b.mean - 1.0 if b.mean else math.nan
    if a.mean > 0 and b.mean > 0:
        se_log = math.sqrt((a.se / a.mean) ** 2 + (b.se / b.mean) ** 2)
        lo, hi = (
            math.exp(math.log(a.mean / b.mean) - Z95 * se_log) - 1,
            math.exp(math.log(a.mean / b.mean) + Z95 * se_log) - 1,
        )
    else:
        lo = hi = math.nan
    mde = (Z95 + 0.8416212335729143) * se
    return Comparison(arm, baseline, metric, diff, diff - Z95 * se, diff + Z95 * se, lift, lo, hi, p, mde)
