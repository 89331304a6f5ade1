"""The picture of an experiment report (the numbers are in the report; this is for looking at them): per simulated
day each arm's CTR, revenue and cumulative regret against the oracle; each arm's learning curve across retrains;
the calibration of its served pCTR against the true click probability; and its key metrics with 95 % intervals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["plot_report"]

_INTERVALS = (
    ("ctr", "CTR"),
    ("revenue_per_user", "revenue per user"),
    ("visits_per_user", "visits per user"),
)


def _daily(ax: Any, arms: list[dict[str, Any]], key: str, title: str) -> None:
    for k, arm in enumerate(arms):
        days = [(i, d[key]) for i, d in enumerate(arm["daily"], start=1) if key in d and not math.isnan(d[key])]
        ax.plot([i for i, _ in days], [v for _, v in days], marker="o", color=f"C{k}", label=arm["name"])
    ax.set_title(title)
    ax.set_xlabel("simulated day")


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG of ``report`` (the dict of :meth:`ExperimentReport.as_dict`) to ``path``. Reports written
    before a measure existed leave its panel empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["arms"]
    fig, axes = plt.subplots(2, 3 + len(_INTERVALS) // 2, figsize=(17, 7.5))
    flat = axes.ravel()
    _daily(flat[0], arms, "ctr", "CTR per day")
    flat[0].legend(fontsize=7)
    _daily(flat[1], arms, "revenue", "ledger revenue per day")
    _daily(flat[2], arms, "cumulative_regret", "cumulative regret (expected clicks)")
    curve = flat[4]
    # Against the oracle in the same hours where the report has it (budgets run out and users tire, so raw true CTR
    # falls in every arm); reports written before it plot the raw true CTR.
    relative = all("share_of_oracle" in p for a in arms for p in a.get("learning_curve", []))
    key = "share_of_oracle" if relative else "true_ctr_of_shown"
    for k, arm in enumerate(arms):
        points = [(p["from_hour"], p[key]) for p in arm.get("learning_curve", []) if p["impressions"]]
        points = [(h, v) for h, v in points if not math.isnan(v)]
        if len(points) > 1:
            hours, values = [h for h, _ in points], [v for _, v in points]
            curve.plot(hours, values, marker="o", drawstyle="steps-post", color=f"C{k}", label=arm["name"])
    curve.set_title("learning curve (true CTR of shown / oracle's)" if relative else "learning curve (true CTR)")
    curve.set_xlabel("simulated hours (each point: a retrain)")
    calibration = flat[5]
    top = 0.0
    for k, arm in enumerate(arms):
        bins = arm.get("calibration", [])
        if bins:
            x, y = [b["pctr"] for b in bins], [b["true_ctr"] for b in bins]
            calibration.loglog(x, y, marker=".", color=f"C{k}", label=arm["name"])
            top = max(top, *(b["pctr"] for b in bins), *(b["true_ctr"] for b in bins))
    if top:
        calibration.plot([1e-4, top], [1e-4, top], color="grey", linestyle=":", linewidth=1)
    calibration.set_title("calibration (true CTR by served pCTR)")
    calibration.set_xlabel("served pCTR (bin mean)")
    names = [a["name"] for a in arms]
    for ax, (metric, title) in zip([flat[3], flat[6], flat[7]], _INTERVALS, strict=True):
        if any(metric not in a["metrics"] for a in arms):
            continue
        means = [a["metrics"][metric]["mean"] for a in arms]
        low = [m - a["metrics"][metric]["ci_low"] for a, m in zip(arms, means, strict=True)]
        high = [a["metrics"][metric]["ci_high"] - m for a, m in zip(arms, means, strict=True)]
        ax.errorbar(range(len(arms)), means, yerr=[low, high], fmt="o", capsize=4)
        ax.set_xticks(range(len(arms)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title} (95 % CI)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
