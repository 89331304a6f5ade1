"""Reward models for the model-based estimators (DM and the DR family), fitted by cross-fitting.

:class:`LogisticReward` predicts a round's click probability for every action in every slot from three blocks of
features: the round's context ``(n_rounds, d)``, the action's ``(n_actions, e)`` and the slot (one-hot). The
logit is linear in them (L2-penalised, fitted by L-BFGS), so predicting all actions × slots for a round costs
one sum of three terms.

:func:`cross_fit` splits the rounds into ``k`` folds and predicts each fold with a model fitted on the others:
the DR family's correction term then has mean zero whatever the model got wrong (Chernozhukov et al., "Double/
debiased machine learning", 2018), which a model fitted on the same rounds it corrects does not guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import minimize

from adrec.evaluation.ope.estimators import BanditLog
from adrec.exceptions import ValidationError

__all__ = ["LogisticReward", "cross_fit", "one_hot"]

Floats = npt.NDArray[np.float64]


def one_hot(values: npt.ArrayLike) -> Floats:
    """Columns of indicators, one per distinct value (in sorted order)."""
    _, codes = np.unique(np.asarray(values), return_inverse=True)
    out = np.zeros((len(codes), int(codes.max()) + 1 if len(codes) else 0))
    out[np.arange(len(codes)), codes] = 1.0
    return out


@dataclass
class LogisticReward:
    """``P(click | context x, action a, slot p) = σ(b + x·u + f_a·v + w_p)`` with penalty ``l2/2 · |weights|²``
    on the summed log-loss (the bias is not penalised)."""

    l2: float = 1.0
    coef_: Floats = field(init=False, repr=False, default_factory=lambda: np.zeros(0))

    def fit(self, context: Floats, actions: Floats, log: BanditLog) -> LogisticReward:
        if self.l2 < 0:
            raise ValidationError("l2", f"must be >= 0 (got {self.l2})")
        x = self._design(context, actions, log.action, log.position, log.len_list)
        y = log.reward.astype(np.float64)
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValidationError("reward", "a logistic reward model needs 0/1 rewards")
        penalty = np.ones(x.shape[1])
        penalty[0] = 0.0  # the bias

        def loss(w: Floats) -> tuple[float, Floats]:
            z = x @ w
            nll = float(np.sum(np.logaddexp(0.0, z) - y * z))
            grad = np.asarray(x.T @ (1.0 / (1.0 + np.exp(-z)) - y)).ravel()
            return nll + 0.5 * self.l2 * float(np.sum(penalty * w * w)), grad + self.l2 * penalty * w

        w0 = np.zeros(x.shape[1])
        rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        w0[0] = np.log(rate / (1 - rate))
        result = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        self.coef_ = np.asarray(result.x, dtype=np.float64)
        return self

    def predict(self, context: Floats, actions: Floats, len_list: int) -> Floats:
        """``(n_rounds, n_actions, len_list)`` probabilities for every round of ``context``."""
        if not len(self.coef_):
            raise ValidationError("reward model", "call fit first")
        d, e = context.shape[1], actions.shape[1]
        w = self.coef_
        ctx = context @ w[1 : 1 + d]
        act = actions @ w[1 + d : 1 + d + e]
        slot = w[1 + d + e :]
        z = w[0] + ctx[:, None, None] + act[None, :, None] + slot[None, None, :]
        out: Floats = 1.0 / (1.0 + np.exp(-z))
        return out

    @staticmethod
    def _design(
        context: Floats, actions: Floats, action: npt.NDArray[np.int64], position: npt.NDArray[np.int64], slots: int
    ) -> sp.csr_matrix:
        """Sparse rows ``[1, context, actions[action], one-hot slot]`` (one-hot blocks stay cheap at 1M rounds)."""
        n = len(action)
        pos = sp.csr_matrix((np.ones(n), (np.arange(n), position)), shape=(n, slots))
        blocks = [sp.csr_matrix(np.ones((n, 1))), sp.csr_matrix(context), sp.csr_matrix(actions)[action], pos]
        return sp.hstack(blocks, format="csr")


def cross_fit(
    log: BanditLog,
    context: Floats,
    actions: Floats,
    *,
    k: int = 3,
    l2: float = 1.0,
    random_state: int | None = 0,
) -> Floats:
    """``q_hat`` ``(n_rounds, n_actions, len_list)``: each round predicted by a :class:`LogisticReward` fitted on
    the other ``k - 1`` folds (``k`` = 1: fitted on every round, the plain plug-in)."""
    if context.shape[0] != log.n_rounds:
        raise ValidationError("context", f"has {context.shape[0]} rows; the log has {log.n_rounds} rounds")
    if actions.shape[0] != log.n_actions:
        raise ValidationError("actions", f"has {actions.shape[0]} rows; the log has {log.n_actions} actions")
    if not 1 <= k <= log.n_rounds:
        raise ValidationError("k", f"must lie in [1, {log.n_rounds}] (got {k})")
    q_hat = np.empty((log.n_rounds, log.n_actions, log.len_list))
    if k == 1:
        model = LogisticReward(l2).fit(context, actions, log)
        q_hat[:] = model.predict(context, actions, log.len_list)
        return q_hat
    fold = np.random.default_rng(random_state).permutation(log.n_rounds) % k
    for f in range(k):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        model = LogisticReward(l2).fit(context[train], actions, log.take(train))
        q_hat[test] = model.predict(context[test], actions, log.len_list)
    return q_hat
