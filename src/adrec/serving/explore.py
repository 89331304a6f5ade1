"""Exploration: how the pipeline fills a response's slots when it does not only exploit, and the probability with
which it put each served ad in its slot (the propensity logged with the impression, for off-policy evaluation).

Every strategy fills the slots one after another with the pipeline's re-ranking rules (:func:`rerank`: at most
``max_per_advertiser`` ads of one advertiser, each ad's eCPM decayed by ``category_decay`` per ad of its category
already placed). The exploiting choice of a slot is the open ad with the best decayed eCPM. The strategies
(:data:`STRATEGIES`):

- ``none``: exploit only (the pipeline keeps its fixed share of slots for fresh ads; no propensity is logged);
- ``egreedy``: each slot takes, with probability ``epsilon``, an ad drawn uniformly from the ads it may still take,
  else the exploiting choice;
- ``softmax``: each slot draws an open ad with probability proportional to its decayed eCPM to the power
  ``1 / temperature`` (a softmax over log-eCPM; → exploit as the temperature → 0);
- ``thompson``: each request draws every candidate's click rate from an approximate posterior, ``logit(pCTR) +
  N(0, 1 / (prior_precision + n p (1 - p)))`` with ``n`` the ad's logged impressions and ``p`` its pCTR (the
  Laplace approximation of the posterior of the ad's own logit weight; Chapelle & Li, "An empirical evaluation of
  Thompson sampling", NIPS 2011), rescales the eCPM of its CPC and CPA ads by the drawn click rate over the
  estimated one, and fills the slots greedily on the drawn values.

``max_explore`` caps the exploratory slots of one request: a slot is exploratory when its ad is not the
exploiting choice given the slots above it; once a request has ``max_explore`` of them, every later slot
exploits. ``explorable`` marks the ads exploration may pick at all (the pipeline clears it for campaigns whose
exploratory impressions reached their cap): any other ad fills a slot only as its exploiting choice.

Propensities: slot 1 of ``egreedy`` and ``softmax`` has a closed form (``(1 - ε) [a = best] + ε / n_open``; the
softmax's own probability), used exactly. Every other slot, and every slot of ``thompson``, whose marginal
probabilities have no closed form under the re-ranking rules, is estimated by Monte Carlo: ``draws`` more
independent runs of the whole selection beside the served one, and the propensity of the served ad in slot ``j``
is the share of the ``draws + 1`` runs that put it there (so at least ``1 / (draws + 1)``; its relative error is
about ``sqrt((1 - p) / (p (draws + 1)))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from adrec.exceptions import ConfigError

__all__ = ["STRATEGIES", "Exploration", "Filled", "Runs", "fill_slots", "slot_runs"]

STRATEGIES = ("none", "egreedy", "softmax", "thompson")
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Exploration:
    """The exploration settings of a pipeline (see the module docs)."""

    strategy: str = "none"
    epsilon: float = 0.1
    temperature: float = 0.25
    prior_precision: float = 1.0
    max_explore: int = 2
    draws: int = 200

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"exploration must be one of {', '.join(STRATEGIES)} (got {self.strategy!r})")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"epsilon must be in [0, 1] (got {self.epsilon})")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0 (got {self.temperature})")
        if not self.prior_precision > 0:
            raise ConfigError(f"prior_precision must be > 0 (got {self.prior_precision})")
        if self.max_explore < 0 or self.draws < 0:
            raise ConfigError(f"max_explore and draws must be >= 0 (got {self.max_explore}, {self.draws})")


@dataclass(frozen=True)
class Filled:
    """The served slots: ``picks`` are positions into the pool, in slot order; ``propensity`` the probability of
    each served ad in its slot (the closed form at slot 1 where there is one, else Monte Carlo)."""

    picks: Ints
    propensity: Floats
    explored: npt.NDArray[np.bool_]
    """Per served slot, whether it was exploratory (its ad not the exploiting choice given the slots above)."""


@dataclass(frozen=True)
class Runs:
    """Independent runs of the whole selection (:func:`slot_runs`): ``picks`` ``(runs, k)`` (pool positions, -1
    where a run filled fewer slots), whether each slot of run 0 explored, and slot 1's exact distribution over the
    pool where the strategy has one (None otherwise)."""

    picks: Ints
    explored: npt.NDArray[np.bool_]
    first: Floats | None


def slot_runs(
    values: Floats,
    advertiser: Ints,
    category: Ints,
    k: int,
    explore: Exploration,
    rng: np.random.Generator,
    runs: int,
    *,
    max_per_advertiser: int,
    category_decay: float,
    pctr: Floats | None = None,
    impressions: Floats | None = None,
    ctr_priced: npt.NDArray[np.bool_] | None = None,
    explorable: npt.NDArray[np.bool_] | None = None,
) -> Runs:
    """``runs`` independent selections of the strategy at once (see :func:`fill_slots` for the arguments). The
    shares of the runs that put each ad in each slot are unbiased estimates of the policy's slot marginals: the
    propensities :func:`fill_slots` logs, and a target policy's distribution for off-policy evaluation
    (:mod:`adrec.serving.replay`)."""
    if runs < 1:
        raise ConfigError(f"runs must be >= 1 (got {runs})")
    n = len(values)
    if k <= 0 or n == 0:
        return Runs(np.full((runs, max(k, 0)), -1, dtype=np.int64), np.zeros(max(k, 0), dtype=bool), None)
    base = np.broadcast_to(np.asarray(values, dtype=np.float64), (runs, n))
    drawn = base
    if explore.strategy == "thompson":
        if pctr is None or impressions is None or ctr_priced is None:
            raise ConfigError("thompson sampling needs the candidates' pctr, impressions and pricing")
        p = np.clip(pctr, 1e-9, 1 - 1e-9)
        sd = 1.0 / np.sqrt(explore.prior_precision + impressions * p * (1 - p))
        z = np.log(p / (1 - p))[None, :] + rng.standard_normal((runs, n)) * sd[None, :]
        ratio = np.where(ctr_priced[None, :], 1.0 / (1.0 + np.exp(-z)) / p[None, :], 1.0)
        drawn = base * ratio
    adv = np.unique(advertiser, return_inverse=True)[1].astype(np.int64)
    cat = np.unique(category, return_inverse=True)[1].astype(np.int64)
    adv_count = np.zeros((runs, int(adv.max()) + 1), dtype=np.int64)
    cat_count = np.zeros((runs, int(cat.max()) + 1), dtype=np.int64)
    taken = np.zeros((runs, n), dtype=bool)
    explored = np.zeros(runs, dtype=np.int64)
    rows = np.arange(runs)
    picks = np.full((runs, k), -1, dtype=np.int64)
    was_explored = np.zeros(k, dtype=bool)
    may = np.ones(n, dtype=bool) if explorable is None else np.asarray(explorable, dtype=bool)
    first: Floats | None = None
    for slot in range(k):
        open_ = ~taken & (adv_count[:, adv] < max_per_advertiser)
        alive: npt.NDArray[np.bool_] = np.asarray(open_.any(axis=1))
        if not alive.any():
            break
        decay = category_decay ** cat_count[:, cat]
        best = np.argmax(np.where(open_, base * decay, -np.inf), axis=1)
        open_ = open_ & (may[None, :] | (np.arange(n)[None, :] == best[:, None]))  # what exploration may pick
        if explore.strategy == "egreedy":
            uniform = np.argmax(np.where(open_, rng.random((runs, n)), -1.0), axis=1)
            pick = np.where(rng.random(runs) < explore.epsilon, uniform, best)
        elif explore.strategy == "softmax":
            with np.errstate(divide="ignore"):
                logits = np.log(np.maximum(base * decay, 1e-300)) / explore.temperature
            gumbel = -np.log(-np.log(rng.random((runs, n)) * (1 - 1e-12) + 1e-12))
            pick = np.argmax(np.where(open_, logits + gumbel, -np.inf), axis=1)
        elif explore.strategy == "thompson":
            pick = np.argmax(np.where(open_, drawn * decay, -np.inf), axis=1)
        else:
            pick = best
        pick = np.where(explored >= explore.max_explore, best, pick)
        if slot == 0 and explore.strategy in ("egreedy", "softmax"):
            first = _first_slot(explore, base[0], open_[0], int(best[0]))
        was_explored[slot] = bool(alive[0] and pick[0] != best[0])
        explored += pick != best
        pick = np.where(alive, pick, -1)
        picks[:, slot] = pick
        live = rows[alive]
        taken[live, pick[alive]] = True
        np.add.at(adv_count, (live, adv[pick[alive]]), 1)
        np.add.at(cat_count, (live, cat[pick[alive]]), 1)
    return Runs(picks, was_explored, first)


def fill_slots(
    values: Floats,
    advertiser: Ints,
    category: Ints,
    k: int,
    explore: Exploration,
    rng: np.random.Generator,
    *,
    max_per_advertiser: int,
    category_decay: float,
    pctr: Floats | None = None,
    impressions: Floats | None = None,
    ctr_priced: npt.NDArray[np.bool_] | None = None,
    explorable: npt.NDArray[np.bool_] | None = None,
) -> Filled:
    """Fill up to ``k`` slots from a pool of candidates (``values``: their eCPM, best first; ``advertiser``,
    ``category``: small integer codes) with the strategy of ``explore``; ``thompson`` also needs each candidate's
    ``pctr``, logged ``impressions`` and whether its eCPM scales with its click rate (``ctr_priced``: CPC, CPA).

    Runs ``explore.draws + 1`` selections at once (row 0 is the one served) for the Monte Carlo propensities."""
    if k <= 0 or len(values) == 0:
        return Filled(np.array([], np.int64), np.array([]), np.array([], bool))
    got = slot_runs(
        values,
        advertiser,
        category,
        k,
        explore,
        rng,
        explore.draws + 1,
        max_per_advertiser=max_per_advertiser,
        category_decay=category_decay,
        pctr=pctr,
        impressions=impressions,
        ctr_priced=ctr_priced,
        explorable=explorable,
    )
    picks = got.picks
    served = picks[0][picks[0] >= 0]
    share = (picks[:, : len(served)] == served[None, :]).mean(axis=0)
    if explore.strategy == "none":
        share[:] = 1.0
    elif got.first is not None and len(served):
        share[0] = got.first[served[0]]
    return Filled(served, share.astype(np.float64), got.explored[: len(served)])


def _first_slot(explore: Exploration, values: Floats, open_: npt.NDArray[np.bool_], best: int) -> Floats:
    """Slot 1's exact distribution over the pool (no category has been placed yet: no decay)."""
    out = np.zeros(len(values))
    n_open = int(open_.sum())
    if explore.max_explore == 0 or n_open == 0:
        out[best] = 1.0
        return out
    if explore.strategy == "egreedy":
        out[open_] = explore.epsilon / n_open
        out[best] += 1 - explore.epsilon
        return out
    logits = np.where(open_, np.log(np.maximum(values, 1e-300)) / explore.temperature, -np.inf)
    top = logits.max()
    if not math.isfinite(top):
        out[open_] = 1.0 / n_open
        return out
    weights: Floats = np.exp(logits - top)
    weights /= weights.sum()
    return weights
