"""Outstanding tokens: the expected cost per campaign within the window, against a recount of every response."""

from __future__ import annotations

import numpy as np
import pytest

from adrec.serving.outstanding import Outstanding


def test_expected_cost_is_the_sum_of_the_responses_within_the_window() -> None:
    rng = np.random.default_rng(3)
    outstanding = Outstanding(window_s=120.0, bucket_s=10.0)
    added: list[tuple[float, str, float]] = []
    now = 1_000.0
    for step in range(3_000):
        now += float(rng.exponential(2.0))
        if step % 500 == 0:
            now += 400.0  # a quiet spell: every earlier bucket falls out of the window
        costs = [(f"c{int(c)}", float(x)) for c, x in zip(rng.integers(0, 6, 3), rng.exponential(0.01, 3), strict=True)]
        outstanding.add(now, "u", costs)
        added += [(now, c, x) for c, x in costs]
        at = now + float(rng.uniform(0, 150))  # also ask ahead of the last response: older buckets drop out
        oldest = int((at - 120.0) // 10.0)
        want: dict[str, float] = {}
        for ts, c, x in added:
            if int(ts // 10.0) >= oldest:
                want[c] = want.get(c, 0.0) + x
        got = outstanding.expected_cost(at)
        assert set(got) == set(want)
        for c, x in want.items():
            assert got[c] == pytest.approx(x, rel=1e-9, abs=1e-12)
    assert outstanding.expected_cost(now + 10_000.0) == {}


def test_nothing_is_kept_without_a_window() -> None:
    outstanding = Outstanding(window_s=0.0)
    outstanding.add(5.0, "u", [("c", 1.0)])
    assert outstanding.expected_cost(5.0) == {}
