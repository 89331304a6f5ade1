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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.data.importers.obd import read_logs
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
    if campaign not in CAMPAIGNS:
        raise ValidationError("--campaign", f"unknown campaign {campaign!r}; known: {', '.join(CAMPAIGNS)}")
    folder = _campaign_folder(Path(path), campaign)
    rows = read_logs(folder)
    prefix = f"obd:{campaign}:"
    items = sorted(int(a.removeprefix(prefix)) for a in rows.ads)
    n_actions = items[-1] + 1 if items else 0
    if items != list(range(n_actions)):
        raise ValidationError("item_context.csv", f"item ids of {folder} must be 0..{n_actions - 1} without gaps")
    action = np.array([int(str(a).removeprefix(prefix)) for a in rows.ad_id.tolist()], dtype=np.int64)
    position = rows.position - 1
    log = BanditLog(action, position, rows.click, rows.propensity, n_actions, int(position.max()) + 1)
    attrs = [rows.users[u] for u in rows.user_id.tolist()]
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
