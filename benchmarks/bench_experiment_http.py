"""The same experiment in process and over HTTP: do real ``adrec serve`` processes decide as the pipeline does?

``python -m benchmarks.bench_experiment_http`` runs ``config/experiment.example.toml`` at 32,000 requests a day for
two days (a little over 50,000 requests: the return model moves the visits) twice on the same seed: every arm in
this process, then with ``http = true`` (the model and no-model arms served by real ``adrec serve
--simulated-clock`` processes over HTTP; the oracle and random arms, whose models are the simulator's truth, in
process). Writes ``results/experiment-http.{json,md}``: both runs' arm tables, whether the arms rank the same on
each metric, and the wall time of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from adrec.experiment import ExperimentConfig, run_experiment
from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("ctr", "true_ctr_of_shown", "revenue_per_request", "visits_per_user")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "experiment.example.toml"))
    parser.add_argument("--requests-per-day", type=int, default=32_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--name", default="experiment-http")
    args = parser.parse_args()
    base = ExperimentConfig.from_toml(args.config).model_copy(
        update={"requests_per_day": args.requests_per_day, "days": args.days}
    )
    runs = {}
    for mode in ("in-process", "http"):
        started = time.perf_counter()
        report = run_experiment(base.model_copy(update={"http": mode == "http"}), progress=False).as_dict()
        report["wall_seconds"] = time.perf_counter() - started
        runs[mode] = report
        print(mode, f"{report['wall_seconds']:.0f} s", flush=True)
    rows = ["| arm | served | requests | CTR | true CTR of shown | revenue / request | visits / user |"]
    rows.append("|---|---|---:|---:|---:|---:|---:|")
    for mode, report in runs.items():
        for a in report["arms"]:
            m = a["metrics"]
            where = "HTTP" if mode == "http" and a["name"] not in ("random", "oracle") else "in process"
            rows.append(
                f"| {a['name']} | {where} | {int(a['totals']['requests']):,} | {m['ctr']['mean']:.4f} "
                f"| {m['true_ctr_of_shown']['mean']:.4f} | {m['revenue_per_request']['mean']:.4f} "
                f"| {m['visits_per_user']['mean']:.3f} |"
            )
    same = {}
    for metric in METRICS:
        order = {
            mode: [a["name"] for a in sorted(r["arms"], key=lambda a: -a["metrics"][metric]["mean"])]
            for mode, r in runs.items()
        }
        same[metric] = {"same": order["in-process"] == order["http"], **order}
    requests = sum(a["totals"]["requests"] for a in runs["http"]["arms"])
    lines = [
        f"`{Path(args.config).name}` at {args.requests_per_day:,} requests a day for {args.days:g} days "
        f"({requests:,.0f} requests), seed {base.seed}: in process {runs['in-process']['wall_seconds']:.0f} s, "
        f"over HTTP {runs['http']['wall_seconds']:.0f} s.",
        "",
        *rows,
        "",
        "| metric | same arm ranking | in process | over HTTP |",
        "|---|---|---|---|",
        *(
            f"| {metric} | {'yes' if v['same'] else 'no'} | {', '.join(v['in-process'])} | {', '.join(v['http'])} |"
            for metric, v in same.items()
        ),
    ]
    write_results(args.name, {"runs": runs, "ranking": same}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
