"""Platt scaling: a score (a model's similarity, or a click model's logit) turned into a click probability.

Shared by serving (which calibrates collaborative-filtering scores, :mod:`adrec.serving.calibration`) and the
click-rate models (:mod:`adrec.models.ctr`), which calibrate their logits on held-out data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit

__all__ = ["Calibrator"]


@dataclass(frozen=True)
class Calibrator:
    """Platt scaling: ``pCTR = sigmoid(a * (score - mean) / std + b)``, fitted on logged impressions and clicks.

    ``n`` is the number of impressions it was fitted on (0: not fitted; then ``base_rate`` is used for every ad
    and ranking falls back to bid order within the candidates).
    """

    a: float = 0.0
    b: float = -4.6
    mean: float = 0.0
    std: float = 1.0
    base_rate: float = 0.01
    n: int = 0
    z_max: float = math.inf
    """Standardised scores are clipped here (the 99.9th percentile of the fitting data): no extrapolation."""
    held_out: bool = False
    """True when fitted on impressions of pairs outside the model's training data (else in-sample: optimistic)."""

    def __call__(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        z = np.minimum((np.asarray(scores, dtype=np.float64) - self.mean) / self.std, self.z_max)
        out: npt.NDArray[np.float64] = expit(self.a * z + self.b)  # no overflow far from the fitted range
        return out

    @classmethod
    def fit(
        cls, scores: npt.ArrayLike, clicked: npt.ArrayLike, *, base_rate: float | None = None, iterations: int = 50
    ) -> Calibrator:
        """Logistic regression of the click on the standardised score (Newton's method, tiny L2 for stability).

        ``base_rate`` is the pCTR of ads without a model score (default: the smoothed click rate of ``clicked``).
        """
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(clicked, dtype=np.float64)
        base = float((y.sum() + 1.0) / (len(y) + 2.0))
        prior = base if base_rate is None else base_rate
        if len(s) < 50 or y.sum() == 0 or y.sum() == len(y):
            return cls(b=math.log(base / (1 - base)), base_rate=prior, n=len(s))
        mean, std = float(s.mean()), float(s.std()) or 1.0
        x = np.stack([(s - mean) / std, np.ones_like(s)], axis=1)
        w = np.array([0.0, math.log(base / (1 - base))])
        for _ in range(iterations):
            p = expit(x @ w)
            grad = x.T @ (p - y) + 1e-6 * w
            hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        z_max = float(np.percentile(x[:, 0], 99.9))
        return cls(a=float(w[0]), b=float(w[1]), mean=mean, std=std, base_rate=prior, n=len(s), z_max=z_max)
