"""Click models on a simulated market against its truth: LR, FM, DCN-V2 and the LightGBM peer, same features.

    python -m benchmarks.bench_ctr [--users 20000 --ads 2000 --impressions 5000000 --seed 0 --models ...]

The market's first 30 % of time builds the users' profiles; the impressions after it are the examples, split by
time into train (the first 70 % of their span), validation (the next 10 %: early stopping and calibration) and
test (the last 20 %). Every test impression carries its true click probability, so beside each model stand the
base rate (the training click rate everywhere) and the oracle (the truth), and each model's share of the
possible logloss gain. The oracle's gain has a part no feature can reach without per-user learning: the
idiosyncratic taste term ``latent[u] . latent[a]`` of the click model (see :mod:`adrec.simulate.market`); the
"truth without taste" row scores the truth with that term removed (Platt-recalibrated on the test clicks
themselves, so an upper bound), to show how much of the gap lies there.

Also measured: training examples per second (2 cores), and the time to score 200 candidates of one request as
the pipeline does (features of one user against the encoded catalogue, one context row, the model at the
reference position), p50 and p99 over 2,000 requests.

Writes ``benchmarks/results/ctr-sim.json``, ``ctr-sim.md`` and ``ctr-sim.png`` (reliability curves).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from adrec.evaluation.ctr import REPORT_ROWS, click_metrics, compare_click_models, gain_captured, report_cells
from adrec.models.calibration import Calibrator
from adrec.models.ctr import REFERENCE_POSITION, ClickModel
from adrec.serving.catalog import RequestContext
from adrec.serving.pipeline import click_features
from adrec.simulate.config import SimulationConfig
from adrec.simulate.ctr import simulated_click_dataset
from adrec.simulate.market import Market
from adrec.simulate.records import ad_records, campaign_records, user_records
from benchmarks.common import RESULTS, peak_rss_mib, write_results

MODELS = "lr,fm,dcnv2,lightgbm"


def scoring_latency(model: ClickModel, market: Market, requests: int = 2_000, k: int = 200) -> dict[str, float]:
    """Milliseconds to score ``k`` candidates of one request as the pipeline does."""
    users = list(user_records(market))
    ads = list(ad_records(market))
    block = model.spec_.ads(ads, {c.campaign_id: c for c in campaign_records(market)})
    rng = np.random.default_rng(0)
    times = []
    for i in range(requests + 100):
        cand = rng.choice(len(ads), min(k, len(ads)), replace=False)
        user = users[int(rng.integers(len(users)))]
        ctx = RequestContext(market.config.start_ts + 60.0 * i, market.config.placement, None, None, frozenset())
        t0 = time.perf_counter()
        model.predict(click_features(model, block, cand, user, user.user_id, None, ctx), position=REFERENCE_POSITION)
        times.append(time.perf_counter() - t0)
    ms = np.array(times[100:]) * 1e3  # after a warm-up
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--ads", type=int, default=2_000)
    parser.add_argument("--campaigns", type=int, default=300)
    parser.add_argument("--advertisers", type=int, default=100)
    parser.add_argument("--impressions", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--target", choices=("click", "conversion"), default="click")
    parser.add_argument("--name", default=None, help="Results name (default ctr-sim, or cvr-sim for conversions).")
    args = parser.parse_args()
    config = SimulationConfig(
        seed=args.seed,
        n_users=args.users,
        n_ads=args.ads,
        n_campaigns=args.campaigns,
        n_advertisers=args.advertisers,
        n_impressions=args.impressions,
        days=args.days,
    )
    t0 = time.perf_counter()
    market = Market.generate(config)
    data = simulated_click_dataset(market, target=args.target, progress=True)
    name = args.name or ("ctr-sim" if args.target == "click" else "cvr-sim")
    build_s = time.perf_counter() - t0
    print(data.describe(), f"({build_s:.0f} s)", flush=True)

    fitted: dict[str, ClickModel] = {}

    def keep(name: str, result: dict[str, Any]) -> None:
        print(
            f"{name}: AUC {result['auc']:.4f} logloss {result['logloss']:.5f} gain {result['gain_captured']:.1%} "
            f"PCOC {result['pcoc']:.3f} ({result['fit_seconds']:.0f} s)",
            flush=True,
        )

    names = [m for m in args.models.split(",") if m]
    report = compare_click_models(data, names, progress=True, on_result=keep, fitted=fitted)
    for model_name, model in fitted.items():
        report["models"][model_name]["scoring_200"] = scoring_latency(model, market)
    if args.target == "click":
        report["truth_without_taste"] = truth_without_taste(market, data, report)
    report["market"] = config.model_dump(mode="json")
    report["build_seconds"] = build_s
    report["peak_rss_mib"] = peak_rss_mib()

    plot = plot_reliability(data, fitted, RESULTS / f"{name}.png")
    write_results(name, report, table(report, plot.name), packages=("torch", "lightgbm", "numpy"))


def truth_without_taste(market: Market, data: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The metrics of the true click probabilities without the idiosyncratic taste term (an upper bound for
    models that cannot learn each user's taste)."""
    rows = data.test_rows
    assert rows is not None and data.test_truth is not None
    taste = np.einsum("nd,nd->n", market.user_latent[rows["user_idx"]], market.ad_latent[rows["ad_idx"]])
    logit = market.click_logit(rows["user_idx"], rows["ad_idx"], rows["position"]) - taste
    no_taste = Calibrator.fit(logit, data.test.labels)(logit)  # Platt on the test clicks: an upper bound
    y = data.test.labels
    out = click_metrics(y, no_taste, users=data.test_users, fields=data.test_fields, truth=data.test_truth)
    out["gain_captured"] = gain_captured(report["base"]["logloss"], out["logloss"], report["oracle"]["logloss"])
    return out


def table(report: dict[str, Any], plot: str) -> str:
    cols = {**report["models"], **report["baselines"]}
    if "truth_without_taste" in report:
        cols["truth without taste"] = report["truth_without_taste"]
    cols["oracle"] = report["oracle"]
    cols["base rate"] = report["base"]
    head = "| metric | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols)
    lines = [head]
    for label, key, fmt in REPORT_ROWS:
        escaped = label.replace("|", "\\|")  # a bar inside a Markdown table cell
        lines.append(f"| {escaped} | " + " | ".join(report_cells(cols, key, fmt)) + " |")
    for q in ("p50_ms", "p99_ms"):
        cells = [f"{c['scoring_200'][q]:.2f}" if "scoring_200" in c else "—" for c in cols.values()]
        lines.append(f"| score 200 candidates, {q.removesuffix('_ms')} ms | " + " | ".join(cells) + " |")
    ex = report["examples"]
    intro = (
        f"{report['dataset']}: {ex['train']:,} train / {ex['valid']:,} validation / {ex['test']:,} test examples, "
        f"positive rate {report['base_rate']:.4f}.\n\n"
    )
    return intro + "\n".join(lines) + f"\n\n![reliability]({plot})\n"


def plot_reliability(data: Any, fitted: dict[str, ClickModel], path: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = data.test.labels
    fig, ax = plt.subplots(figsize=(6, 5))
    curves = {name: model.predict(data.test) for name, model in fitted.items()}
    curves["oracle"] = data.test_truth
    for name, p in curves.items():
        order = np.argsort(p)
        bins = np.array_split(order, 20)
        ax.plot([p[b].mean() for b in bins], [y[b].mean() for b in bins], marker="o", ms=3, label=name)
    top = max(float(np.percentile(p, 99.5)) for p in curves.values())
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("predicted click probability (20 equal-mass bins)")
    ax.set_ylabel("observed click rate")
    ax.set_title("Reliability on the test impressions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
