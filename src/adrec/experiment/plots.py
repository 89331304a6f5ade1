"""The picture of an experiment report: each arm's CTR per simulated day, and each arm's metrics with their 95 %
intervals (the numbers are in the report; this is for looking at them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_report"]

_PANELS = (
    ("ctr", "CTR"),
    ("revenue_per_request", "revenue per request"),
    ("true_ctr_of_shown", "true CTR of ads shown"),
)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG of ``report`` (the dict of :meth:`ExperimentReport.as_dict`) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["arms"]
    fig, axes = plt.subplots(1, 1 + len(_PANELS), figsize=(4.2 * (1 + len(_PANELS)), 3.6))
    daily = axes[0]
    for arm in arms:
        days = [(i, d["ctr"]) for i, d in enumerate(arm["daily"], start=1) if d["impressions"]]
        daily.plot([i for i, _ in days], [c for _, c in days], marker="o", label=arm["name"])
    daily.set_title("CTR per simulated day")
    daily.set_xlabel("day")
    daily.legend(fontsize=8)
    names = [a["name"] for a in arms]
    for ax, (metric, title) in zip(axes[1:], _PANELS, strict=True):
        means = [a["metrics"][metric]["mean"] for a in arms]
        low = [m - a["metrics"][metric]["ci_low"] for a, m in zip(arms, means, strict=True)]
        high = [a["metrics"][metric]["ci_high"] - m for a, m in zip(arms, means, strict=True)]
        ax.errorbar(range(len(arms)), means, yerr=[low, high], fmt="o", capsize=4)
        ax.set_xticks(range(len(arms)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title} (95 % CI)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
