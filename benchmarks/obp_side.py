"""The Open Bandit Pipeline's side of ``bench_ope_obp``: run by the interpreter of a separate environment that has
``obp`` 0.4.1 (its pins clash with adrec's), never imported by adrec.

    OBP_PYTHON benchmarks/obp_side.py IN.npz OUT.npz

``IN.npz`` holds, per case ``C``, the arrays ``C/reward``, ``C/action``, ``C/position``, ``C/pscore``,
``C/action_dist``, ``C/q_hat`` and ``C/params`` (tau, lambda), optionally ``C/slate``; and, per campaign ``K`` of
``bts``, ``bts/K/params`` (len_list, n_sim, seed). ``OUT.npz`` holds ``C/ESTIMATOR`` (a 0-d array) per case
and estimator, and ``bts/K`` (obp's Monte Carlo slot marginals).
"""

import sys

import numpy as np
import obp
from obp.ope import (
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    InverseProbabilityWeighting,
    ReplayMethod,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SlateIndependentIPS,
    SwitchDoublyRobust,
)
from obp.policy import BernoulliTS


def main(src: str, dst: str) -> None:
    data = np.load(src)
    cases = sorted({k.split("/")[0] for k in data.files if not k.startswith("bts/")})
    out = {"obp_version": np.array(obp.__version__)}
    for c in cases:
        g = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(c + "/")}
        tau, lam = g["params"]
        common = dict(reward=g["reward"], action=g["action"], position=g["position"], action_dist=g["action_dist"])
        with_p = dict(common, pscore=g["pscore"])
        model = dict(with_p, estimated_rewards_by_reg_model=g["q_hat"])
        out[f"{c}/dm"] = DirectMethod().estimate_policy_value(
            position=g["position"], action_dist=g["action_dist"], estimated_rewards_by_reg_model=g["q_hat"]
        )
        out[f"{c}/ipw"] = InverseProbabilityWeighting().estimate_policy_value(**with_p)
        out[f"{c}/snipw"] = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**with_p)
        out[f"{c}/dr"] = DoublyRobust().estimate_policy_value(**model)
        out[f"{c}/sndr"] = SelfNormalizedDoublyRobust().estimate_policy_value(**model)
        out[f"{c}/switch-dr"] = SwitchDoublyRobust(tau=float(tau)).estimate_policy_value(**model)
        out[f"{c}/dros"] = DoublyRobustWithShrinkage(lambda_=float(lam)).estimate_policy_value(**model)
        if np.isin(g["action_dist"], (0.0, 1.0)).all():
            out[f"{c}/replay"] = ReplayMethod().estimate_policy_value(**common)
        if "slate" in g:
            rows = np.arange(len(g["action"]))
            out[f"{c}/iips"] = SlateIndependentIPS(len_list=g["action_dist"].shape[2]).estimate_policy_value(
                slate_id=g["slate"],
                reward=g["reward"],
                position=g["position"],
                pscore_item_position=g["pscore"],
                evaluation_policy_pscore_item_position=g["action_dist"][rows, g["action"], g["position"]],
            )
    for k in data.files:
        if k.startswith("bts/") and k.endswith("/params"):
            campaign = k.split("/")[1]
            len_list, n_sim, seed, n_actions = (int(v) for v in data[k])
            policy = BernoulliTS(
                n_actions=n_actions, len_list=len_list, is_zozotown_prior=True, campaign=campaign, random_state=seed
            )
            out[f"bts/{campaign}"] = policy.compute_batch_action_dist(n_rounds=1, n_sim=n_sim)[0]
    np.savez(dst, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
