"""Off-policy estimators: known answers on a tiny bandit computed by hand, unbiasedness where it is exact, the
bootstrap interval, the reward model's cross-fitting and the Thompson-sampling marginals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from adrec.evaluation.ope import (
    BanditLog,
    DirectMethod,
    DoublyRobust,
    DRos,
    IndependentIPS,
    InverseProbabilityWeighting,
    LogisticReward,
    PseudoInverse,
    Replay,
    SelfNormalizedDoublyRobust,
    SelfNormalizedIPW,
    SwitchDoublyRobust,
    Terms,
    bernoulli_ts,
    cross_fit,
    deterministic,
    uniform_random,
    uniform_slate_gamma,
    zozotown_prior,
)
from adrec.exceptions import ValidationError

# -- a tiny bandit by hand: 4 rounds, 2 actions, 1 slot ----------------------------------------------------------
#    round  action  reward  pscore   target (pi(0), pi(1))   q_hat (0, 1)   w = pi(a)/pscore
#    0      0       1       0.5      (0.8, 0.2)              (0.5, 0.1)     1.6
#    1      1       0       0.5      (0.8, 0.2)              (0.5, 0.1)     0.4
#    2      0       0       0.2      (0.5, 0.5)              (0.2, 0.4)     2.5
#    3      1       1       0.75     (1.0, 0.0)              (0.3, 0.6)     0.0
LOG = BanditLog(
    action=np.array([0, 1, 0, 1]),
    position=np.zeros(4, dtype=np.int64),
    reward=np.array([1.0, 0.0, 0.0, 1.0]),
    pscore=np.array([0.5, 0.5, 0.2, 0.75]),
    n_actions=2,
)
PI = np.array([[0.8, 0.2], [0.8, 0.2], [0.5, 0.5], [1.0, 0.0]])[:, :, None]
Q = np.array([[0.5, 0.1], [0.5, 0.1], [0.2, 0.4], [0.3, 0.6]])[:, :, None]
W = np.array([1.6, 0.4, 2.5, 0.0])
RESIDUAL = np.array([1 - 0.5, 0 - 0.1, 0 - 0.2, 1 - 0.6])  # r - q_hat(logged action)
DM_ROUNDS = np.array([0.8 * 0.5 + 0.2 * 0.1, 0.8 * 0.5 + 0.2 * 0.1, 0.5 * 0.2 + 0.5 * 0.4, 1.0 * 0.3])
DM = DM_ROUNDS.mean()  # 0.36


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (DirectMethod(), 0.36),
        (InverseProbabilityWeighting(), 1.6 / 4),
        (SelfNormalizedIPW(), 1.6 / (1.6 + 0.4 + 2.5)),
        (DoublyRobust(), 0.36 + (0.8 - 0.04 - 0.5) / 4),
        (SelfNormalizedDoublyRobust(), 0.36 + (0.8 - 0.04 - 0.5) / 4.5),
        (SwitchDoublyRobust(tau=2.0), 0.36 + (0.8 - 0.04) / 4),  # round 2's weight 2.5 > 2: DM alone there
        (SwitchDoublyRobust(tau=np.inf), 0.36 + (0.8 - 0.04 - 0.5) / 4),
        (DRos(lambda_=1.0), 0.36 + float(np.sum(W / (W**2 + 1) * RESIDUAL)) / 4),
        (DRos(lambda_=0.0), 0.36),
        (DRos(lambda_=np.inf), 0.36 + (0.8 - 0.04 - 0.5) / 4),
    ],
    ids=["dm", "ipw", "snipw", "dr", "sndr", "switch-2", "switch-inf", "dros-1", "dros-0", "dros-inf"],
)
def test_estimators_on_a_bandit_computed_by_hand(estimator: object, expected: float) -> None:
    assert pytest.approx(0.36) == DM  # the table's DM column, by hand
    got = estimator.estimate_policy_value(LOG, PI, Q)  # type: ignore[attr-defined]
    assert got == pytest.approx(expected, abs=1e-12)


def test_replay_averages_the_rounds_where_a_deterministic_policy_agrees() -> None:
    always_0 = deterministic(np.zeros((4, 1), dtype=np.int64), 2)
    assert Replay().estimate_policy_value(LOG, always_0) == pytest.approx(0.5)  # rounds 0 and 2: rewards 1, 0
    always_1 = deterministic(np.ones((4, 1), dtype=np.int64), 2)
    assert Replay().estimate_policy_value(LOG, always_1) == pytest.approx(0.5)  # rounds 1 and 3: rewards 0, 1


def test_model_based_estimators_need_the_reward_model_and_shapes_are_checked() -> None:
    with pytest.raises(ValidationError, match="q_hat"):
        DoublyRobust().estimate_policy_value(LOG, PI)
    with pytest.raises(ValidationError, match="shape"):
        InverseProbabilityWeighting().estimate_policy_value(LOG, PI[:3])
    with pytest.raises(ValidationError, match="pscore"):
        BanditLog(np.array([0]), np.array([0]), np.array([1.0]), np.array([0.0]), 2)
    with pytest.raises(ValidationError, match="action"):
        BanditLog(np.array([2]), np.array([0]), np.array([1.0]), np.array([0.5]), 2)


def _synthetic(n: int, seed: int) -> tuple[BanditLog, np.ndarray, np.ndarray, float]:
    """A contextual bandit with 5 actions and a known truth: logging policy softmax of one score, target policy
    softmax of another; returns (log, target's action_dist, true reward table, target's true value)."""
    rng = np.random.default_rng(seed)
    m, types = 5, 4
    ctx = rng.integers(0, types, n)
    truth = rng.uniform(0.05, 0.6, (types, m))
    logit_mu = rng.normal(0, 1, (types, m))
    mu = np.exp(logit_mu) / np.exp(logit_mu).sum(axis=1, keepdims=True)
    pi = np.exp(3 * truth) / np.exp(3 * truth).sum(axis=1, keepdims=True)
    action = np.array([rng.choice(m, p=mu[c]) for c in ctx])
    reward = (rng.random(n) < truth[ctx, action]).astype(np.float64)
    log = BanditLog(action, np.zeros(n, dtype=np.int64), reward, mu[ctx, action], m)
    value = float(np.mean((pi * truth).sum(axis=1)[ctx]))
    return log, pi[ctx][:, :, None], truth[ctx][:, :, None], value


def test_ipw_and_dr_are_unbiased_where_dm_with_a_wrong_model_is_not() -> None:
    estimates: dict[str, list[float]] = {"dm": [], "ipw": [], "dr": []}
    truths = []
    for seed in range(40):
        log, dist, truth, value = _synthetic(2_000, seed)
        wrong = np.clip(truth + 0.15, 0, 1)  # a reward model that overestimates every action by 0.15
        truths.append(value)
        estimates["dm"].append(DirectMethod().estimate_policy_value(log, dist, wrong))
        estimates["ipw"].append(InverseProbabilityWeighting().estimate_policy_value(log, dist))
        estimates["dr"].append(DoublyRobust().estimate_policy_value(log, dist, wrong))
    bias = {k: float(np.mean(np.array(v) - truths)) for k, v in estimates.items()}
    assert bias["dm"] == pytest.approx(0.15, abs=0.02)
    assert abs(bias["ipw"]) < 0.01
    assert abs(bias["dr"]) < 0.01


def test_bootstrap_interval_matches_the_standard_error_of_a_mean() -> None:
    log, dist, _, _ = _synthetic(20_000, 7)
    est = InverseProbabilityWeighting().estimate_interval(log, dist, n_bootstrap=2000, random_state=1)
    terms = InverseProbabilityWeighting().terms(log, dist)
    se = terms.num.std(ddof=1) / np.sqrt(log.n_rounds)
    assert est.ci_low < est.estimate < est.ci_high
    assert (est.ci_high - est.ci_low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    again = InverseProbabilityWeighting().estimate_interval(log, dist, n_bootstrap=2000, random_state=1)
    assert again == est  # seeded


def test_the_cluster_bootstrap_resamples_whole_clusters() -> None:
    """One unit per cluster: the same replicates as the unit bootstrap. Each unit copied into a cluster of 4: the
    units are not independent, and the interval is the one of the quarter-size sample, twice as wide."""
    log, dist, _, _ = _synthetic(5_000, 3)
    ipw = InverseProbabilityWeighting()
    n = log.n_rounds
    plain = ipw.estimate_interval(log, dist, n_bootstrap=500, random_state=2)
    assert ipw.estimate_interval(log, dist, n_bootstrap=500, random_state=2, cluster=np.arange(n) * 7) == plain
    terms = ipw.terms(log, dist)
    copies = Terms(np.repeat(terms.base, 4), np.repeat(terms.num, 4), np.repeat(terms.den, 4))
    by_unit = copies.bootstrap(2000, 5)
    by_cluster = copies.bootstrap(2000, 5, np.repeat(np.arange(n), 4))
    assert by_cluster.std() == pytest.approx(2 * by_unit.std(), rel=0.1)
    assert by_cluster.mean() == pytest.approx(terms.value(), rel=0.02)
    with pytest.raises(ValidationError, match="cluster"):
        terms.bootstrap(10, 0, np.arange(3))


def test_self_normalized_bootstrap_recomputes_the_ratio_per_replicate() -> None:
    """Each replicate's SNIPW divides by its own resampled weights: on a log where every reward is 1, every
    replicate is exactly 1, so the interval collapses (dividing by the full sample's mean weight would not)."""
    log = BanditLog(np.array([0, 1, 0, 1]), np.zeros(4, np.int64), np.ones(4), np.array([0.5, 0.5, 0.2, 0.75]), 2)
    est = SelfNormalizedIPW().estimate_interval(log, PI, n_bootstrap=500)
    assert est.estimate == est.ci_low == est.ci_high == pytest.approx(1.0)


# -- slates -------------------------------------------------------------------------------------------------------
def _all_slates(m: int, slots: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(m), slots))


def test_pseudo_inverse_and_independent_ips_are_exactly_unbiased_for_additive_rewards() -> None:
    """Log every slate of 4 actions × 2 slots once (uniform logging: each has probability 1/12) with its expected
    reward: the estimators' mean over those rounds is their exact expectation, which must equal the target's value."""
    m, slots = 4, 2
    rng = np.random.default_rng(3)
    theta = rng.uniform(0, 0.3, (slots, m))  # the click chance of action a in slot j
    slates = _all_slates(m, slots)
    target = rng.dirichlet(np.ones(len(slates)))  # any distribution over slates
    marginals = np.zeros((m, slots))
    for p, s in zip(target, slates, strict=True):
        for j, a in enumerate(s):
            marginals[a, j] += p
    value = float(sum(p * sum(theta[j, a] for j, a in enumerate(s)) for p, s in zip(target, slates, strict=True)))
    n = len(slates)
    action = np.array([a for s in slates for a in s])
    position = np.tile(np.arange(slots), n)
    reward = np.array([theta[j, a] for s in slates for j, a in enumerate(s)])
    log = BanditLog(
        action, position, reward, np.full(n * slots, 1 / m), m, slots, np.repeat(np.arange(n), slots).astype(np.int64)
    )
    dist = np.broadcast_to(marginals, (n * slots, m, slots)).copy()
    pi_est = PseudoInverse(gamma=uniform_slate_gamma(m, slots)).estimate_policy_value(log, dist)
    iips = IndependentIPS().estimate_policy_value(log, dist)
    assert pi_est == pytest.approx(value, abs=1e-12)
    assert iips == pytest.approx(value, abs=1e-12)


def test_uniform_slate_gamma_is_the_second_moment_of_uniform_slates() -> None:
    m, slots = 4, 3
    slates = _all_slates(m, slots)
    want = np.zeros((m * slots, m * slots))
    for s in slates:
        one = np.zeros(m * slots)
        one[[j * m + a for j, a in enumerate(s)]] = 1
        want += np.outer(one, one) / len(slates)
    np.testing.assert_allclose(uniform_slate_gamma(m, slots), want, atol=1e-15)


def test_slate_estimators_need_slate_ids() -> None:
    with pytest.raises(ValidationError, match="slate"):
        IndependentIPS().estimate_policy_value(LOG, PI)


# -- the reward model ---------------------------------------------------------------------------------------------
def test_logistic_reward_recovers_a_linear_logit_and_cross_fitting_never_predicts_its_own_rounds() -> None:
    rng = np.random.default_rng(0)
    n, m, slots = 30_000, 3, 2
    ctx_type = rng.integers(0, 2, n)
    context = np.eye(2)[ctx_type]
    action = rng.integers(0, m, n)
    position = rng.integers(0, slots, n)
    logit = -2.0 + np.array([0.0, 0.8])[ctx_type] + np.array([0.0, 0.5, -0.5])[action] + np.array([0, -0.7])[position]
    reward = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    log = BanditLog(action, position, reward, np.full(n, 1 / (m * slots)), m, slots)
    model = LogisticReward(l2=1.0).fit(context, np.eye(m), log)
    pred = model.predict(np.eye(2), np.eye(m), slots)
    true = 1 / (
        1
        + np.exp(
            -(
                -2.0
                + np.array([0.0, 0.8])[:, None, None]
                + np.array([0.0, 0.5, -0.5])[None, :, None]
                + np.array([0, -0.7])[None, None, :]
            )
        )
    )
    np.testing.assert_allclose(pred, true, atol=0.015)

    small = log.take(np.arange(300))
    q = cross_fit(small, context[:300], np.eye(m), k=3)
    flipped = BanditLog(small.action, small.position, small.reward.copy(), small.pscore, m, slots)
    flipped.reward[0] = 1.0 - flipped.reward[0]
    q2 = cross_fit(flipped, context[:300], np.eye(m), k=3)
    np.testing.assert_array_equal(q[0], q2[0])  # round 0's prediction never saw round 0
    assert not np.array_equal(q, q2)  # the other folds' did


def test_the_cross_term_learns_how_the_context_meets_each_group_of_actions() -> None:
    """Two user types, four actions in two groups: type 0 clicks group 0, type 1 group 1. An additive model cannot
    express it (it predicts about the average everywhere); with the cross term the model recovers every cell."""
    rng = np.random.default_rng(1)
    n, m = 40_000, 4
    groups = np.array([0, 0, 1, 1])
    user = rng.integers(0, 2, n)
    action = rng.integers(0, m, n)
    true_logit = np.array([[-1.5, -1.5, -3.0, -3.0], [-3.0, -3.0, -1.5, -1.5]])
    reward = (rng.random(n) < 1 / (1 + np.exp(-true_logit[user, action]))).astype(np.float64)
    log = BanditLog(action, np.zeros(n, dtype=np.int64), reward, np.full(n, 1 / m), m)
    context, types = np.eye(2)[user], np.eye(2)
    with_cross = LogisticReward(l2=1.0, groups=groups).fit(context, np.eye(m), log, cross=context)
    pred = with_cross.predict(types, np.eye(m), 1, cross=types)[:, :, 0]
    np.testing.assert_allclose(pred, 1 / (1 + np.exp(-true_logit)), atol=0.015)
    plain = LogisticReward(l2=1.0).fit(context, np.eye(m), log).predict(types, np.eye(m), 1)[:, :, 0]
    assert np.abs(plain - 1 / (1 + np.exp(-true_logit))).max() > 0.05
    with pytest.raises(ValidationError, match="cross"):
        LogisticReward(groups=groups).fit(context, np.eye(m), log)


# -- Thompson sampling's slot marginals --------------------------------------------------------------------------
def test_bernoulli_ts_marginals_match_a_closed_form() -> None:
    """Two actions, Beta(1, 1) and Beta(2, 1): P(theta_1 > theta_0) = ∫ 2x · x dx = 2/3."""
    dist = bernoulli_ts(np.array([1.0, 2.0]), np.array([1.0, 1.0]), len_list=1, n_rounds=3, n_sim=200_000)
    assert dist.shape == (3, 2, 1)
    sd = np.sqrt(2 / 9 / 200_000)
    assert dist[0, 1, 0] == pytest.approx(2 / 3, abs=4 * sd)
    full = bernoulli_ts(np.ones(4), np.ones(4), len_list=4, n_rounds=1, n_sim=40_000)
    np.testing.assert_allclose(full[0].sum(axis=0), 1.0)  # each slot holds one action
    np.testing.assert_allclose(full[0].sum(axis=1), 1.0)  # each action fills one slot of a full list
    np.testing.assert_allclose(full[0], 0.25, atol=4 * np.sqrt(3 / 16 / 40_000))  # symmetric priors


def test_zozotown_prior_has_one_beta_per_item_of_each_campaign() -> None:
    for campaign, items in (("all", 80), ("men", 34), ("women", 46)):
        a, b = zozotown_prior(campaign)
        assert a.shape == b.shape == (items,)
        assert (a > 0).all() and (b > a).all()
    with pytest.raises(ValidationError, match="campaign"):
        zozotown_prior("kids")


def test_uniform_random_is_one_over_the_actions() -> None:
    np.testing.assert_allclose(uniform_random(2, 4, 3), 0.25)
