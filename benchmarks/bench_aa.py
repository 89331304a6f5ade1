"""A/A experiments: two identical arms, many seeds. The share of seeds whose difference is "significant" at
α = 0.05 is the false-positive rate of the experiment's statistics; an honest test gives about 0.05.

``python -m benchmarks.bench_aa --seeds 20`` writes ``results/aa.{json,md}``: per metric, the false-positive
rate over the seeds with its binomial 95 % interval, and the p-values.
"""

from __future__ import annotations

import argparse
import math
import time

from adrec.experiment import ArmConfig, ExperimentConfig, run_experiment
from adrec.simulate import SimulationConfig
from benchmarks.common import write_results

TARGET = (0.01, 0.10)


def aa_config(
    seed: int, policy: str, users: int, requests_per_day: int, budget_factor: float = 2.0
) -> ExperimentConfig:
    """Two identical arms on a market of its own: market seed, arrival seed and hash salt all vary with ``seed``."""
    market = SimulationConfig(
        seed=seed,
        n_users=users,
        n_advertisers=10,
        n_campaigns=30,
        n_ads=150,
        n_impressions=20_000,
        days=3,
        budget_factor=budget_factor,
    )
    arms = [ArmConfig(name="A", policy=policy), ArmConfig(name="B", policy=policy)]  # type: ignore[arg-type]
    return ExperimentConfig(
        market=market, days=1, requests_per_day=requests_per_day, arms=arms, salt=f"aa{seed}", seed=seed
    )


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95 % interval of a binomial proportion."""
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--policy", default="no-model", choices=["no-model", "random", "oracle"])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests-per-day", type=int, default=3000)
    parser.add_argument(
        "--budget-factor", type=float, default=2.0, help="the market's budgets relative to its expected spend"
    )
    parser.add_argument("--name", default="aa")
    args = parser.parse_args()
    started = time.perf_counter()
    p_values: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        config = aa_config(seed, args.policy, args.users, args.requests_per_day, args.budget_factor)
        report = run_experiment(config, progress=False)
        for c in report.comparisons:
            p_values.setdefault(c.metric, []).append(c.p_value)
        print(seed, {c.metric: round(c.p_value, 3) for c in report.comparisons}, flush=True)
    rows = ["| metric | seeds | p < 0.05 | false-positive rate | 95 % CI |", "|---|---:|---:|---:|---|"]
    rates = {}
    for metric, ps in p_values.items():
        valid = [p for p in ps if not math.isnan(p)]
        k = sum(p < 0.05 for p in valid)
        rate = k / len(valid) if valid else math.nan
        lo, hi = wilson(k, len(valid)) if valid else (math.nan, math.nan)
        rates[metric] = {"seeds": len(valid), "significant": k, "rate": rate, "ci": [lo, hi], "p_values": ps}
        rows.append(f"| {metric} | {len(valid)} | {k} | {rate:.3f} | [{lo:.3f}, {hi:.3f}] |")
    ctr = rates["ctr"]["rate"]
    verdict = "met" if TARGET[0] <= ctr <= TARGET[1] else "NOT met"
    table = "\n".join(
        [
            f"{args.seeds} A/A experiments: two identical `{args.policy}` arms, {args.users:,} users, 1 live day of "
            f"{args.requests_per_day:,} requests, budgets {args.budget_factor:g}x the market's expected spend, each "
            "seed with its own market, arrivals and user split; "
            f"{time.perf_counter() - started:.0f} s in all.",
            "",
            *rows,
            "",
            f"Target: CTR false-positive rate in [{TARGET[0]}, {TARGET[1]}] at α = 0.05: {ctr:.3f} ({verdict}).",
        ]
    )
    payload = {"policy": args.policy, "budget_factor": args.budget_factor, "metrics": rates, "target": TARGET}
    write_results(args.name, payload, table)
    print(table)


if __name__ == "__main__":
    main()
