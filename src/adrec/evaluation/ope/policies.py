"""Target policies as action distributions ``(n_rounds, n_actions, len_list)`` for the estimators.

- :func:`uniform_random`: every action equally likely in every slot (a slate without repeats drawn uniformly
  has the same marginals).
- :func:`bernoulli_ts`: Bernoulli Thompson sampling with Beta priors, as the Open Bandit Dataset's BTS policy
  served (Saito et al., NeurIPS 2021 D&B): each impression draws a click rate per action from its Beta posterior
  and shows the ``len_list`` highest in order. Its slot marginals have no closed form: they are estimated by Monte
  Carlo over ``n_sim`` draws, as the Open Bandit paper does; the error of each probability is at most
  ``sqrt(p (1 - p) / n_sim)`` per standard deviation.
- :data:`ZOZOTOWN_PRIOR`: the Beta priors ZOZOTOWN's BTS policy started its data collection with, per campaign.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt

from adrec.exceptions import ValidationError

__all__ = ["bernoulli_ts", "deterministic", "uniform_random", "zozotown_prior"]

Floats = npt.NDArray[np.float64]


def uniform_random(n_rounds: int, n_actions: int, len_list: int = 1) -> Floats:
    return np.full((n_rounds, n_actions, len_list), 1.0 / n_actions)


def deterministic(slates: npt.NDArray[np.int64], n_actions: int) -> Floats:
    """The distribution of a policy that shows ``slates[i]`` (``(n_rounds, len_list)`` action ids) in round ``i``."""
    n, slots = slates.shape
    dist = np.zeros((n, n_actions, slots))
    dist[np.arange(n)[:, None], slates, np.arange(slots)[None, :]] = 1.0
    return dist


def bernoulli_ts(
    alpha: Floats,
    beta: Floats,
    *,
    len_list: int,
    n_rounds: int,
    n_sim: int = 100_000,
    random_state: int | None = 0,
) -> Floats:
    """The slot marginals of context-free Bernoulli Thompson sampling with ``Beta(alpha, beta)`` per action, by
    ``n_sim`` Monte Carlo draws, repeated for ``n_rounds`` rounds (the policy ignores the context)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if alpha.shape != beta.shape or alpha.ndim != 1:
        raise ValidationError("alpha", "alpha and beta must be 1-D of the same length (one per action)")
    if (alpha <= 0).any() or (beta <= 0).any():
        raise ValidationError("alpha", "Beta parameters must be > 0")
    n_actions = len(alpha)
    if not 1 <= len_list <= n_actions:
        raise ValidationError("len_list", f"must lie in [1, {n_actions}] (got {len_list})")
    if n_sim < 1:
        raise ValidationError("n_sim", f"must be >= 1 (got {n_sim})")
    rng = np.random.default_rng(random_state)
    counts = np.zeros((n_actions, len_list))
    chunk = max(1, 2_000_000 // n_actions)
    for start in range(0, n_sim, chunk):
        b = min(chunk, n_sim - start)
        theta = rng.beta(alpha, beta, size=(b, n_actions))
        top = np.argsort(-theta, axis=1, kind="stable")[:, :len_list]
        for slot in range(len_list):
            counts[:, slot] += np.bincount(top[:, slot], minlength=n_actions)
    return np.broadcast_to(counts / n_sim, (n_rounds, n_actions, len_list)).copy()


@cache
def _priors() -> dict[str, dict[str, list[float]]]:
    text = resources.files("adrec.evaluation.ope").joinpath("zozotown_bts_prior.json").read_text()
    loaded: dict[str, dict[str, list[float]]] = json.loads(text)["campaigns"]
    return loaded


def zozotown_prior(campaign: str) -> tuple[Floats, Floats]:
    """``(alpha, beta)`` of ZOZOTOWN's BTS policy for ``campaign`` (all, men or women), as published with the Open
    Bandit Pipeline (github.com/st-tech/zr-obp, ``obp/policy/conf/prior_bts.yaml``, Apache-2.0)."""
    priors = _priors()
    if campaign not in priors:
        raise ValidationError("--campaign", f"unknown campaign {campaign!r}; known: {', '.join(sorted(priors))}")
    p = priors[campaign]
    return np.array(p["alpha"], dtype=np.float64), np.array(p["beta"], dtype=np.float64)
