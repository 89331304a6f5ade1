"""The example experiment (``config/experiment.example.toml``) run live, its report and plot committed.

``python -m benchmarks.bench_experiment`` writes ``results/experiment-example.{json,md,png}``: the arms' metrics
with their 95 % intervals, the comparisons with the baseline, the wall time and simulated requests per second.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adrec.experiment import ExperimentConfig, run_experiment
from adrec.experiment.plots import plot_report
from adrec.store import open_store
from benchmarks.common import RESULTS, peak_rss_mib, write_results

ROOT = Path(__file__).resolve().parents[1]


def _ci(v: dict[str, float]) -> str:
    return f"{v['mean']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "experiment.example.toml"))
    parser.add_argument("--name", default="experiment-example")
    args = parser.parse_args()
    config = ExperimentConfig.from_toml(args.config)
    with open_store("sqlite://") as store:
        report = run_experiment(config, store, progress=False).as_dict()
    rows = [
        "| arm | users | requests | CTR | revenue / request | true CTR of ads shown | ledger spend | retrains (s) |",
        "|---|---:|---:|---|---|---|---:|---|",
    ]
    for a in report["arms"]:
        m, t = a["metrics"], a["totals"]
        retrains = ", ".join(f"{s:.1f}" for s in a["retrain_seconds"]) or "—"
        cells = [a["name"], f"{a['users']:,}", f"{int(t['requests']):,}", _ci(m["ctr"])]
        cells += [_ci(m["revenue_per_request"]), _ci(m["true_ctr_of_shown"]), f"{t['spend']:,.2f}", retrains]
        rows.append("| " + " | ".join(cells) + " |")
    rows += ["", "| arm vs baseline | metric | lift | 95 % CI | p-value |", "|---|---|---:|---|---:|"]
    for c in report["comparisons"]:
        rows.append(
            f"| {c['arm']} vs {c['baseline']} | {c['metric']} | {c['lift']:+.1%} "
            f"| [{c['lift_ci_low']:+.1%}, {c['lift_ci_high']:+.1%}] | {c['p_value']:.3g} |"
        )
    captured = ", ".join(f"{k} {v:.0%}" for k, v in report["gain_captured"].items()) or "— (no random or oracle arm)"
    config_path = Path(args.config)
    shown = config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path
    plot = plot_report(report, RESULTS / f"{args.name}.png")
    summary = (
        f"Config: `{shown}` — {report['seconds']:.1f} s wall, {report['requests_per_second']:,.0f} simulated "
        "requests/s end to end (market, warm-up history and retraining included); "
        f"peak RSS {peak_rss_mib():.0f} MiB."
    )
    table = "\n".join(
        [
            summary,
            "",
            *rows,
            "",
            f"Share of the oracle's CTR gain over random captured: {captured}.",
            "",
            f"![arms]({plot.name})",
        ]
    )
    write_results(args.name, report, table)


if __name__ == "__main__":
    main()
