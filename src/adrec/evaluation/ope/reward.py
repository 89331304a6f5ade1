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

__all__ = ["LogisticReward", "cross_fit", "fit_folds", "one_hot"]

Floats = npt.NDArray[np.float64]


def one_hot(values: npt.ArrayLike) -> Floats:
    """Columns of indicators, one per distinct value (in sorted order)."""
    _, codes = np.unique(np.asarray(values), return_inverse=True)
    out = np.zeros((len(codes), int(codes.max()) + 1 if len(codes) else 0))
    out[np.arange(len(codes)), codes] = 1.0
    return out


@dataclass
class LogisticReward:
    """``P(click | x, a, p) = σ(b + x·u + f_a·v + w_p + c·M[:, g_a])`` with penalty ``l2/2 · |weights|²`` on the
    summed log-loss (the bias is not penalised). The action features may be a sparse matrix (e.g. a sparse
    identity: one weight per action, for many actions).

    ``x`` is the round's context, ``f_a`` the action's features, ``w_p`` the slot's weight. The optional cross
    term lets the context interact with a grouping of the actions: ``c`` is a per-round vector (``cross``, e.g.
    the user's interest per category) and ``g_a`` the action's group (``groups``, e.g. its category), so ``M``
    learns how much each part of ``c`` matters for each group of actions.
    """

    l2: float = 1.0
    groups: npt.NDArray[np.int64] | None = None
    coef_: Floats = field(init=False, repr=False, default_factory=lambda: np.zeros(0))
    _shape: tuple[int, int, int, int] = field(init=False, repr=False, default=(0, 0, 0, 0))

    def fit(
        self, context: Floats, actions: Floats | sp.spmatrix, log: BanditLog, cross: Floats | None = None
    ) -> LogisticReward:
        if self.l2 < 0:
            raise ValidationError("l2", f"must be >= 0 (got {self.l2})")
        self._check_cross(cross, log.n_rounds, actions.shape[0])
        x = self._design(context, actions, log.action, log.position, log.len_list, cross)
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
        self._shape = (context.shape[1], actions.shape[1], log.len_list, 0 if cross is None else cross.shape[1])
        return self

    def predict(
        self, context: Floats, actions: Floats | sp.spmatrix, len_list: int, cross: Floats | None = None
    ) -> Floats:
        """``(n_rounds, n_actions, len_list)`` probabilities for every round of ``context`` (and ``cross``)."""
        if not len(self.coef_):
            raise ValidationError("reward model", "call fit first")
        d, e, slots, c = self._shape
        if (context.shape[1], actions.shape[1], len_list, 0 if cross is None else cross.shape[1]) != self._shape:
            raise ValidationError("context", "the features must have the widths the model was fitted on")
        self._check_cross(cross, context.shape[0], actions.shape[0])
        w = self.coef_
        ctx = context @ w[1 : 1 + d]
        act = np.asarray(actions @ w[1 + d : 1 + d + e]).ravel()
        slot = w[1 + d + e : 1 + d + e + slots]
        z = w[0] + ctx[:, None, None] + act[None, :, None] + slot[None, None, :]
        if cross is not None and self.groups is not None:
            m = w[1 + d + e + slots :].reshape(c, -1)  # (c, groups)
            z = z + ((cross @ m)[:, self.groups])[:, :, None]
        out: Floats = 1.0 / (1.0 + np.exp(-z))
        return out

    def _check_cross(self, cross: Floats | None, n_rounds: int, n_actions: int) -> None:
        if (cross is None) != (self.groups is None):
            raise ValidationError("cross", "the cross term needs both a per-round cross vector and action groups")
        if cross is not None and cross.shape[0] != n_rounds:
            raise ValidationError("cross", f"has {cross.shape[0]} rows; expected {n_rounds} (one per round)")
        if self.groups is not None and self.groups.shape != (n_actions,):
            raise ValidationError("groups", f"must hold one group per action ({n_actions})")

    def _design(
        self,
        context: Floats,
        actions: Floats | sp.spmatrix,
        action: npt.NDArray[np.int64],
        position: npt.NDArray[np.int64],
        slots: int,
        cross: Floats | None,
    ) -> sp.csr_matrix:
        """Sparse rows ``[1, context, actions[action], one-hot slot, cross placed at the action's group]``."""
        n = len(action)
        pos = sp.csr_matrix((np.ones(n), (np.arange(n), position)), shape=(n, slots))
        blocks = [sp.csr_matrix(np.ones((n, 1))), sp.csr_matrix(context), sp.csr_matrix(actions)[action], pos]
        if cross is not None and self.groups is not None:
            n_groups = int(self.groups.max()) + 1
            c = cross.shape[1]
            rows = np.repeat(np.arange(n), c)
            cols = (np.tile(np.arange(c), n) * n_groups + np.repeat(self.groups[action], c)).astype(np.int64)
            blocks.append(sp.csr_matrix((cross.reshape(-1), (rows, cols)), shape=(n, c * n_groups)))
        return sp.hstack(blocks, format="csr")


def fit_folds(
    log: BanditLog,
    context: Floats,
    actions: Floats,
    *,
    k: int = 3,
    l2: float = 1.0,
    random_state: int | None = 0,
    cross: Floats | None = None,
    groups: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], list[LogisticReward]]:
    """Each round's fold (``0..k-1``) and, per fold, a :class:`LogisticReward` (with the cross term when ``cross``
    and ``groups`` are given) fitted on the other folds' rounds
    (``k`` = 1: one fold, its model fitted on every round, the plain plug-in). Predict a round only with its own
    fold's model; :func:`cross_fit` does that for action spaces small enough to hold every prediction."""
    if context.shape[0] != log.n_rounds:
        raise ValidationError("context", f"has {context.shape[0]} rows; the log has {log.n_rounds} rounds")
    if actions.shape[0] != log.n_actions:
        raise ValidationError("actions", f"has {actions.shape[0]} rows; the log has {log.n_actions} actions")
    if not 1 <= k <= log.n_rounds:
        raise ValidationError("k", f"must lie in [1, {log.n_rounds}] (got {k})")
    if k == 1:
        return np.zeros(log.n_rounds, dtype=np.int64), [LogisticReward(l2, groups).fit(context, actions, log, cross)]
    fold = (np.random.default_rng(random_state).permutation(log.n_rounds) % k).astype(np.int64)
    models = []
    for f in range(k):
        train = np.flatnonzero(fold != f)
        part = None if cross is None else cross[train]
        models.append(LogisticReward(l2, groups).fit(context[train], actions, log.take(train), part))
    return fold, models


def cross_fit(
    log: BanditLog,
    context: Floats,
    actions: Floats,
    *,
    k: int = 3,
    l2: float = 1.0,
    random_state: int | None = 0,
    cross: Floats | None = None,
    groups: npt.NDArray[np.int64] | None = None,
) -> Floats:
    """``q_hat`` ``(n_rounds, n_actions, len_list)``: each round predicted by the model of its fold
    (:func:`fit_folds`), which never saw it (``k`` = 1: by the model fitted on every round)."""
    fold, models = fit_folds(log, context, actions, k=k, l2=l2, random_state=random_state, cross=cross, groups=groups)
    q_hat = np.empty((log.n_rounds, log.n_actions, log.len_list))
    for f, model in enumerate(models):
        rows = np.flatnonzero(fold == f)
        q_hat[rows] = model.predict(context[rows], actions, log.len_list, None if cross is None else cross[rows])
    return q_hat
