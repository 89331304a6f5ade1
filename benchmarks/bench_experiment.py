"""The example experiment (``config/experiment.example.toml``) run live, its report and plot committed.

``python -m benchmarks.bench_experiment`` writes ``results/experiment-example.{json,md,png}``: the arms' metrics
with their 95 % intervals, the comparisons with the baseline, the market side, each model version against the
oracle (the learning curve), the wall time and simulated requests per second. ``--render`` writes the Markdown and
the plot again from a committed JSON (its command, machine and date kept), without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from adrec.experiment import ExperimentConfig, run_experiment
from adrec.experiment.plots import plot_report
from benchmarks.common import RESULTS, peak_rss_mib, write_results

ROOT = Path(__file__).resolve().parents[1]
#: The comparisons in the Markdown table (the JSON has every metric).
_SHOWN = (
    "ctr",
    "clicks_per_user",
    "revenue_per_user",
    "revenue_per_request",
    "welfare_per_user",
    "true_ctr_of_shown",
    "new_ad_share",
    "visits_per_user",
)


def _ci(v: dict[str, float]) -> str:
    return f"{v['mean']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"


def _markdown(report: dict[str, Any], config_path: Path, rss: str) -> str:
    rows = [
        "| arm | users | requests | CTR | clicks / user | revenue / user | revenue / request | true CTR of ads shown "
        "| ledger spend | retrains (s) |",
        "|---|---:|---:|---|---|---|---|---|---:|---|",
    ]
    for a in report["arms"]:
        m, t = a["metrics"], a["totals"]
        retrains = ", ".join(f"{s:.1f}" for s in a["retrain_seconds"]) or "—"
        cells = [a["name"], f"{a['users']:,}", f"{int(t['requests']):,}", _ci(m["ctr"])]
        cells += [_ci(m["clicks_per_user"]), _ci(m["revenue_per_user"]), _ci(m["revenue_per_request"])]
        cells += [_ci(m["true_ctr_of_shown"]), f"{t['spend']:,.2f}", retrains]
        rows.append("| " + " | ".join(cells) + " |")
    rows += [
        "",
        "Against the baseline (the JSON report compares every metric):",
        "",
        "| arm vs baseline | metric | lift | 95 % CI | p-value |",
        "|---|---|---:|---|---:|",
    ]
    for c in report["comparisons"]:
        if c["metric"] not in _SHOWN:
            continue
        rows.append(
            f"| {c['arm']} vs {c['baseline']} | {c['metric']} | {c['lift']:+.1%} "
            f"| [{c['lift_ci_low']:+.1%}, {c['lift_ci_high']:+.1%}] | {c['p_value']:.3g} |"
        )
    oracle = next((a for a in report["arms"] if a["name"] == "oracle"), None)
    oracle_new = oracle["daily"][-1]["new_ad_ctr"] if oracle is not None else math.nan
    rows += [
        "",
        "| arm | PCOC | ECE | coverage | new-ad share | new-ad true CTR, last day (vs oracle) | budget used "
        "| pacing error | regret (expected clicks) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in report["arms"]:
        m, s, t = a["metrics"], a["summary"], a["totals"]
        new_ctr = a["daily"][-1]["new_ad_ctr"]
        rows.append(
            f"| {a['name']} | {m['pcoc']['mean']:.2f} | {s['ece']:.4f} | {s['coverage']:.0%} "
            f"| {m['new_ad_share']['mean']:.1%} | {new_ctr:.4f} ({new_ctr / oracle_new:.0%}) "
            f"| {s['budget_utilisation']:.0%} | {s['pacing_error']:.2f} | {t['regret']:,.1f} |"
        )
    if report["regret"]:
        rows += ["", "| arm vs oracle | expected clicks / request | 95 % CI |", "|---|---:|---|"]
        for c in report["regret"]:
            rows.append(f"| {c['arm']} | {c['difference']:+.5f} | [{c['ci_low']:+.5f}, {c['ci_high']:+.5f}] |")
    curves = [a for a in report["arms"] if len(a.get("learning_curve", [])) > 1]
    if oracle is not None and curves and all("share_of_oracle" in p for a in curves for p in a["learning_curve"]):
        rows += [
            "",
            "Learning curve: each model version's true CTR of the ads it showed as a share of the oracle's in the "
            "same hours, and the share of the oracle's gain over random it captured in those hours (from the hour it "
            "started serving; the first is the model trained on the warm-up history).",
            "",
            "| arm | "
            + " | ".join("version " + str(i) for i in range(max(len(a["learning_curve"]) for a in curves)))
            + " |",
            "|---|" + "---:|" * max(len(a["learning_curve"]) for a in curves),
        ]
        for a in curves:
            cells = [
                f"h {p['from_hour']:g}: {p['share_of_oracle']:.1%} of oracle, "
                f"{p.get('gain_share', math.nan):.0%} of gain"
                for p in a["learning_curve"]
            ]
            rows.append(f"| {a['name']} | " + " | ".join(cells) + " |")
    captured = ", ".join(f"{k} {v:.0%}" for k, v in report["gain_captured"].items()) or "— (no random or oracle arm)"
    shown = config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path
    summary = (
        f"Config: `{shown}` — {report['seconds']:.1f} s wall, {report['requests_per_second']:,.0f} simulated "
        "requests/s end to end (market, warm-up history and retraining included; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in report["timings"].items())
        + f"); peak RSS {rss} MiB."
    )
    return "\n".join(
        [
            summary,
            "",
            *rows,
            "",
            f"Share of the oracle's CTR gain over random captured: {captured}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "experiment.example.toml"))
    parser.add_argument("--name", default="experiment-example")
    parser.add_argument("--render", action="store_true", help="re-render results/NAME.md and .png from its JSON")
    args = parser.parse_args()
    if args.render:
        record = json.loads((RESULTS / f"{args.name}.json").read_text())
        old = (RESULTS / f"{args.name}.md").read_text().split("\n")
        rss = next(line for line in old if line.startswith("Config:")).split("peak RSS ")[1].split(" MiB")[0]
        plot = plot_report(record, RESULTS / f"{args.name}.png")
        body = _markdown(record, Path(args.config), rss) + f"\n\n![arms]({plot.name})\n"
        (RESULTS / f"{args.name}.md").write_text("\n".join(old[:6]) + "\n\n" + body)
        return
    config = ExperimentConfig.from_toml(args.config)
    report = run_experiment(config, progress=False).as_dict()
    plot = plot_report(report, RESULTS / f"{args.name}.png")
    table = _markdown(report, Path(args.config), f"{peak_rss_mib():.0f}") + f"\n\n![arms]({plot.name})"
    write_results(args.name, report, table)


if __name__ == "__main__":
    main()
