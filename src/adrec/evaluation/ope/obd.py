"""Off-policy evaluation on the Open Bandit Dataset (ZOZOTOWN; Saito et al., NeurIPS 2021 D&B).

:func:`read_obd` reads one campaign's log through the ``obd`` importer (so a bad row gets the same error, naming
its file, line and column, as ``adrec import``) into a :class:`~adrec.evaluation.ope.BanditLog`: action = item id,
position = slot - 1, reward = click, pscore = the logging policy's ``propensity_score``. The context of a round is
the one-hot encoding of its four hashed user features; an action's features are its one-hot item id.

:func:`evaluate_obd` estimates a target policy's CTR from that log with every estimator and its bootstrap
interval. ``bts`` is ZOZOTOWN's Bernoulli Thompson sampling policy with the prior it started the data collection
with (:func:`~adrec.evaluation.ope.policies.zozotown_prior`), its slot marginals by Monte Carlo; ``random`` is the
uniform-random policy, whose estimate must cover the logged CTR of uniform-random logs (a sanity check).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.data.records import CtrExample
from adrec.data.schema import Ad, Advertiser, Campaign, EventBatch, EventType, User
from adrec.evaluation.ope.estimators import BanditLog, Estimate, standard_estimators
from adrec.evaluation.ope.policies import bernoulli_ts, uniform_random, zozotown_prior
from adrec.evaluation.ope.reward import cross_fit, one_hot
from adrec.exceptions import ValidationError

__all__ = ["CAMPAIGNS", "POLICIES", "ObdLog", "evaluate_obd", "read_obd"]

CAMPAIGNS = ("all", "men", "women")
POLICIES = ("bts", "random")
_USER_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")


@dataclass(frozen=True)
class ObdLog:
    """One campaign's log as a bandit log, with the reward model's features."""

    campaign: str
    folder: Path
    log: BanditLog
    context: npt.NDArray[np.float64]
    actions: npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Appended:
    inserted: int
    duplicates: int = 0


class _Collect:
    """The import sink that keeps the users and events of an OBD import in memory."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, str]] = {}
        self.ads: list[str] = []
        self.batches: list[EventBatch] = []

    def upsert_advertisers(self, advertisers: Iterable[Advertiser]) -> int:
        return len(list(advertisers))

    def upsert_campaigns(self, campaigns: Iterable[Campaign]) -> int:
        return len(list(campaigns))

    def upsert_ads(self, ads: Iterable[Ad]) -> int:
        got = [a.ad_id for a in ads]
        self.ads += got
        return len(got)

    def upsert_users(self, users: Iterable[User]) -> int:
        got = {u.user_id: {k: str(v) for k, v in u.attrs.items()} for u in users}
        self.users.update(got)
        return len(got)

    def append_events(self, events: EventBatch) -> _Appended:
        self.batches.append(events)
        return _Appended(len(events.event_id))

    def append_ctr_examples(self, examples: Sequence[CtrExample]) -> int:
        raise ValidationError("--data", "the obd importer wrote CTR examples: not an Open Bandit log")


def _campaign_folder(path: Path, campaign: str) -> Path:
    for folder in (path, path / campaign, path / "random" / campaign):
        if (folder / "item_context.csv").is_file() and (folder / f"{campaign}.csv").is_file():
            return folder
    raise ValidationError(
        "--data",
        f"no log of campaign {campaign!r} under {path}: expected {campaign}.csv beside item_context.csv in "
        f"{path}, {path / campaign} or {path / 'random' / campaign}",
    )


def read_obd(path: str | Path, campaign: str) -> ObdLog:
    """The log of ``campaign`` under ``path`` (the dataset root, a policy folder or the campaign folder)."""
    from adrec.data.importers import IMPORTERS
    from adrec.data.importers.base import execute

    if campaign not in CAMPAIGNS:
        raise ValidationError("--campaign", f"unknown campaign {campaign!r}; known: {', '.join(CAMPAIGNS)}")
    folder = _campaign_folder(Path(path), campaign)
    sink = _Collect()
    execute(IMPORTERS["obd"], folder, sink, skip_bad=False, progress=False)
    prefix = f"obd:{campaign}:"
    items = sorted(int(a.removeprefix(prefix)) for a in sink.ads)
    n_actions = items[-1] + 1 if items else 0
    if items != list(range(n_actions)):
        raise ValidationError("item_context.csv", f"item ids of {folder} must be 0..{n_actions - 1} without gaps")
    ids = np.concatenate([b.event_id for b in sink.batches])
    kind = np.concatenate([b.type for b in sink.batches])
    users = np.concatenate([b.user_id for b in sink.batches])
    ads = np.concatenate([b.ad_id for b in sink.batches])
    placement = np.concatenate([b.placement for b in sink.batches])
    pscore = np.concatenate([b.propensity for b in sink.batches])
    imp = kind == int(EventType.IMPRESSION)
    clicked = {str(e).removesuffix(":clk") for e in ids[~imp].tolist()}
    reward = np.array([str(e).removesuffix(":imp") in clicked for e in ids[imp].tolist()], dtype=np.float64)
    action = np.array([int(str(a).removeprefix(prefix)) for a in ads[imp].tolist()], dtype=np.int64)
    position = np.array([int(p) - 1 for p in placement[imp].tolist()], dtype=np.int64)
    log = BanditLog(action, position, reward, pscore[imp], n_actions, int(position.max()) + 1)
    attrs = [sink.users[u] for u in users[imp].tolist()]
    context = np.hstack([one_hot([a.get(f, "") for a in attrs]) for f in _USER_FEATURES])
    return ObdLog(campaign, folder, log, context, np.eye(n_actions))


def evaluate_obd(
    path: str | Path,
    campaign: str,
    policy: str,
    *,
    n_sim: int = 100_000,
    folds: int = 3,
    l2: float = 1.0,
    tau: float = 100.0,
    lambda_: float = 100.0,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Every estimator's estimate of ``policy``'s CTR (clicks per impression) from ``campaign``'s log, with its
    ``1 - alpha`` bootstrap interval; the JSON-able report ``adrec ope obd`` prints and writes."""
    if policy not in POLICIES:
        raise ValidationError("--policy", f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    data = read_obd(path, campaign)
    log = data.log
    if policy == "bts":
        alpha_, beta_ = zozotown_prior(campaign)
        if len(alpha_) != log.n_actions:
            raise ValidationError(
                "--campaign",
                f"the {campaign} prior has {len(alpha_)} items but {data.folder} has {log.n_actions}",
            )
        dist = bernoulli_ts(alpha_, beta_, len_list=log.len_list, n_rounds=log.n_rounds, n_sim=n_sim, random_state=seed)
    else:
        dist = uniform_random(log.n_rounds, log.n_actions, log.len_list)
    q_hat = cross_fit(log, data.context, data.actions, k=folds, l2=l2, random_state=seed)
    results: list[Estimate] = [
        e.estimate_interval(log, dist, q_hat, alpha=alpha, n_bootstrap=n_bootstrap, random_state=seed)
        for e in standard_estimators(tau, lambda_)
    ]
    return {
        "dataset": "obd",
        "folder": str(data.folder),
        "campaign": campaign,
        "policy": policy,
        "rounds": log.n_rounds,
        "actions": log.n_actions,
        "slots": log.len_list,
        "logged_ctr": float(log.reward.mean()),
        "settings": {
            "n_sim": n_sim if policy == "bts" else None,
            "folds": folds,
            "l2": l2,
            "tau": tau,
            "lambda": lambda_,
            "n_bootstrap": n_bootstrap,
            "alpha": alpha,
            "seed": seed,
            "reward_model": "logistic regression on one-hot user features, item and slot, cross-fitted",
        },
        "estimates": {r.name: r.as_dict() for r in results},
    }
