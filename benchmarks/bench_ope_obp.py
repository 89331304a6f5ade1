"""Parity of adrec's off-policy estimators with the Open Bandit Pipeline (``obp`` 0.4.1) on the same inputs.

    python -m benchmarks.bench_ope_obp [--obp-python .venv-obp/bin/python]

``obp`` pins clash with adrec's, so it lives in its own environment (``make .venv-obp/.installed`` builds it) and
runs ``benchmarks/obp_side.py`` on the arrays adrec built: the same logs, the same target action distributions
and the same reward-model predictions, so every difference is a difference of the estimators. Cases:

- ``obd-men``, ``obd-women``: the Open Bandit Dataset's uniform-random logs, ZOZOTOWN's Bernoulli TS as the
  target (adrec's Monte Carlo marginals), adrec's cross-fitted logistic reward model;
- ``synthetic``: a contextual bandit with 20 actions and 3 slots whose logging and target policies differ
  sharply (weights up to ~100), with Switch-DR's ``tau`` and DRos's ``lambda`` small enough to switch and shrink;
- ``replay``: uniform-random logs and a deterministic target (the replay method);
- ``slates``: slates of 3 slots drawn uniformly without repeats, the independent-position IPS.

Also compared: the two Monte Carlo estimates of Bernoulli TS's slot marginals (different random streams, so they
agree within Monte Carlo error, reported as the largest difference in standard errors).

Writes ``benchmarks/results/ope-obp.{json,md}``. Target: every shared estimator within 1e-6.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from adrec.evaluation.ope import BanditLog, bernoulli_ts, cross_fit, deterministic, uniform_random, zozotown_prior
from adrec.evaluation.ope import standard_estimators as estimators
from adrec.evaluation.ope.estimators import IndependentIPS, Replay
from adrec.evaluation.ope.obd import read_obd
from benchmarks.common import write_results

REPO = Path(__file__).resolve().parents[1]
TARGET = 1e-6


def _case(
    arrays: dict[str, np.ndarray],
    name: str,
    log: BanditLog,
    dist: np.ndarray,
    q_hat: np.ndarray,
    tau: float,
    lam: float,
) -> None:
    arrays[f"{name}/reward"] = log.reward
    arrays[f"{name}/action"] = log.action
    arrays[f"{name}/position"] = log.position
    arrays[f"{name}/pscore"] = log.pscore
    arrays[f"{name}/action_dist"] = dist
    arrays[f"{name}/q_hat"] = q_hat
    arrays[f"{name}/params"] = np.array([tau, lam])
    if log.slate is not None:
        arrays[f"{name}/slate"] = log.slate


def _synthetic(seed: int) -> tuple[BanditLog, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, m, slots, types = 20_000, 20, 3, 8
    ctx = rng.integers(0, types, n)
    truth = rng.uniform(0.01, 0.3, (types, m, slots))
    mu = rng.dirichlet(np.ones(m), size=(types, slots)).transpose(0, 2, 1)  # (types, m, slots)
    pi = np.exp(15 * truth) / np.exp(15 * truth).sum(axis=1, keepdims=True)
    position = rng.integers(0, slots, n)
    action = np.array([rng.choice(m, p=mu[c, :, p]) for c, p in zip(ctx, position, strict=True)])
    reward = (rng.random(n) < truth[ctx, action, position]).astype(np.float64)
    log = BanditLog(action, position, reward, mu[ctx, action, position], m, slots)
    q_hat = np.clip(truth[ctx] + rng.normal(0, 0.05, (n, m, slots)), 0.0, 1.0)  # a noisy reward model
    return log, pi[ctx], q_hat


def build(obd: Path, n_sim: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    arrays: dict[str, np.ndarray] = {}
    ours: dict[str, float] = {}

    def run(name: str, log: BanditLog, dist: np.ndarray, q_hat: np.ndarray, tau: float, lam: float) -> None:
        _case(arrays, name, log, dist, q_hat, tau, lam)
        for e in estimators(tau, lam):
            ours[f"{name}/{e.name}"] = e.estimate_policy_value(log, dist, q_hat)

    for campaign in ("men", "women"):
        data = read_obd(obd, campaign)
        log = data.log
        a, b = zozotown_prior(campaign)
        dist = bernoulli_ts(a, b, len_list=log.len_list, n_rounds=log.n_rounds, n_sim=n_sim, random_state=seed)
        q_hat = cross_fit(log, data.context, data.actions, k=3, random_state=seed)
        run(f"obd-{campaign}", log, dist, q_hat, 100.0, 100.0)
        arrays[f"bts/{campaign}/params"] = np.array([log.len_list, n_sim, seed, log.n_actions])
        arrays[f"ours-bts/{campaign}"] = dist[0]
    log, dist, q_hat = _synthetic(seed)
    run("synthetic", log, dist, q_hat, 5.0, 10.0)

    rng = np.random.default_rng(seed + 1)
    n, m, slots = 20_000, 10, 3
    action, position = rng.integers(0, m, n), rng.integers(0, slots, n)
    reward = (rng.random(n) < 0.05 + 0.02 * (action % 3)).astype(np.float64)
    log = BanditLog(action, position, reward, np.full(n, 1 / m), m, slots)
    greedy = deterministic(np.tile(np.array([2, 5, 8]), (n, 1)), m)
    run("replay", log, greedy, uniform_random(n, m, slots) * 0.05, 100.0, 100.0)
    ours["replay/replay"] = Replay().estimate_policy_value(log, greedy)

    slates = np.array([rng.permutation(m)[:slots] for _ in range(n // slots)])
    s_action = slates.reshape(-1)
    s_position = np.tile(np.arange(slots), len(slates))
    s_reward = (rng.random(len(s_action)) < 0.04 + 0.03 * (s_action % 4) / (1 + s_position)).astype(np.float64)
    s_log = BanditLog(
        s_action,
        s_position,
        s_reward,
        np.full(len(s_action), 1 / m),
        m,
        slots,
        np.repeat(np.arange(len(slates)), slots),
    )
    logits = np.arange(m, dtype=np.float64)[:, None] / 3 - np.arange(slots)[None, :]
    target = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    s_dist = np.broadcast_to(target, (len(s_action), m, slots)).copy()
    run("slates", s_log, s_dist, np.full_like(s_dist, 0.05), 100.0, 100.0)
    ours["slates/iips"] = IndependentIPS().estimate_policy_value(s_log, s_dist)
    return arrays, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obp-python", default=str(REPO / ".venv-obp" / "bin" / "python"))
    parser.add_argument("--data", default=None, help="the Open Bandit Dataset (default $ADREC_DATA_DIR/...)")
    parser.add_argument("--n-sim", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    obd = Path(args.data or Path(os.environ.get("ADREC_DATA_DIR", REPO.parent / "shared" / "data")))
    if args.data is None:
        obd = obd / "open_bandit_dataset_random"
    if not Path(args.obp_python).exists():
        sys.exit(f"{args.obp_python} not found: build obp's environment with `make .venv-obp/.installed`")
    arrays, ours = build(obd, args.n_sim, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **{k: v for k, v in arrays.items() if not k.startswith("ours-")})
        subprocess.run([args.obp_python, str(REPO / "benchmarks" / "obp_side.py"), str(src), str(dst)], check=True)
        theirs = dict(np.load(dst))
    rows: list[dict[str, Any]] = []
    for key, value in sorted(ours.items()):
        other = float(theirs[key])
        rows.append({"case": key.split("/")[0], "estimator": key.split("/")[1], "adrec": value, "obp": other})
    for r in rows:
        r["abs_diff"] = abs(r["adrec"] - r["obp"])
    worst = max(r["abs_diff"] for r in rows)
    bts = {}
    for campaign in ("men", "women"):
        a, b = arrays[f"ours-bts/{campaign}"], theirs[f"bts/{campaign}"]
        se = np.sqrt(np.maximum(a * (1 - a), 1e-12) * 2 / args.n_sim)  # sd of the difference of two MC estimates
        bts[campaign] = {
            "max_abs_diff": float(np.abs(a - b).max()),
            "max_diff_in_se": float((np.abs(a - b) / se).max()),
        }
    lines = [
        f"adrec's estimators against obp {theirs['obp_version']} on the same logs, action distributions and reward "
        f"model predictions. Target: every estimator within {TARGET:g}: largest difference **{worst:.2e}** "
        f"({'met' if worst <= TARGET else 'NOT met'}).",
        "",
        "| case | estimator | adrec | obp | abs. difference |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {r['case']} | {r['estimator']} | {r['adrec']:.10f} | {r['obp']:.10f} | {r['abs_diff']:.1e} |"
            for r in rows
        ),
        "",
        f"Bernoulli TS slot marginals (ZOZOTOWN prior), adrec's and obp's Monte Carlo, {args.n_sim:,} draws each:",
        "",
        "| campaign | largest abs. difference | largest difference in standard errors |",
        "|---|---:|---:|",
        *(f"| {c} | {v['max_abs_diff']:.5f} | {v['max_diff_in_se']:.2f} |" for c, v in bts.items()),
    ]
    payload = {"target": TARGET, "max_abs_diff": worst, "met": worst <= TARGET, "rows": rows, "bts": bts}
    payload["obp_version"] = str(theirs["obp_version"])
    path = write_results("ope-obp", payload, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
