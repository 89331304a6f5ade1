"""Click models on real clicks: the Open Bandit Dataset's uniform-random logs (ZOZOTOWN), LR, FM, DCN-V2 and the
LightGBM peer beside two baselines that know no features, on a time split.

    python -m benchmarks.bench_ctr_obd [--data $ADREC_DATA_DIR/open_bandit_dataset_random] [--bootstrap 2000]

The dataset is ``obd:PATH`` of ``adrec evaluate --task ctr`` (every campaign log under PATH; see
:mod:`adrec.models.ctr.tabular`): the last 20 % of the week is the test set, the 10 % before it validation
(early stopping, calibration, and the prior weight of popularity by slot). The random logs show every item equally
often in every slot, so no logging policy's choices colour the clicks; but the shared sample is small (10,000
impressions per campaign, about 0.5 % clicked), so every metric comes with a 95 % bootstrap interval over the
test impressions, and the difference of each model from popularity by slot with its own paired interval.

Writes ``benchmarks/results/ctr-obd.json`` and ``ctr-obd.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adrec.evaluation.ctr import auc, compare_click_models, logloss
from adrec.models.ctr import ClickModel
from adrec.models.ctr.tabular import obd_click_dataset
from benchmarks.common import peak_rss_mib, write_results

MODELS = "lr,fm,dcnv2,lightgbm"
_DEFAULT = Path(os.environ.get("ADREC_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def bootstrap(
    y: npt.NDArray[np.float32], columns: dict[str, npt.NDArray[np.float64]], baseline: str, n: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per column: AUC and logloss with 95 % intervals over test impressions resampled with replacement, and the
    paired differences from ``baseline`` (same resamples)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {c: {"auc": [], "logloss": []} for c in columns}
    for _ in range(n):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue
        for name, p in columns.items():
            draws[name]["auc"].append(auc(y[rows], p[rows]))
            draws[name]["logloss"].append(logloss(y[rows], p[rows]))
    out: dict[str, dict[str, Any]] = {}
    for name, metric in draws.items():
        row: dict[str, Any] = {}
        for key, values in metric.items():
            v = np.asarray(values)
            base = np.asarray(draws[baseline][key])
            lo, hi = np.percentile(v, [2.5, 97.5])
            d_lo, d_hi = np.percentile(v - base, [2.5, 97.5])
            row[key] = {
                "ci_low": float(lo),
                "ci_high": float(hi),
                "diff_ci_low": float(d_lo),
                "diff_ci_high": float(d_hi),
            }
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_DEFAULT / "open_bandit_dataset_random")
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = obd_click_dataset(args.data)
    print(data.describe(), flush=True)
    fitted: dict[str, ClickModel] = {}
    names = [m for m in args.models.split(",") if m]
    report = compare_click_models(data, names, progress=True, fitted=fitted)
    y = data.test.labels
    columns = {name: model.predict(data.test) for name, model in fitted.items()}
    columns.update(data.baselines)
    columns["base rate"] = np.full(len(y), data.base_rate)
    (popularity,) = [n for n in data.baselines if n.startswith("popularity by slot")]
    report["intervals"] = bootstrap(y, columns, popularity, args.bootstrap, args.seed)
    report["test_clicks"] = int(y.sum())
    report["bootstrap"] = args.bootstrap
    report["seconds"] = time.perf_counter() - t0
    report["peak_rss_mib"] = peak_rss_mib()
    write_results("ctr-obd", report, table(report, popularity), packages=("torch", "lightgbm", "numpy"))
    print(table(report, popularity))


def table(report: dict[str, Any], popularity: str) -> str:
    cols = {**report["models"], **report["baselines"], "base rate": report["base"]}
    ci = report["intervals"]
    lines = [
        f"| | AUC (95 % CI) | AUC − {popularity} | logloss (95 % CI) | logloss − {popularity} | PCOC |",
        "|---|---|---|---|---|---:|",
    ]
    for name, c in cols.items():
        a, ll = ci[name]["auc"], ci[name]["logloss"]
        lines.append(
            f"| {name} | {c['auc']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] "
            f"| [{a['diff_ci_low']:+.3f}, {a['diff_ci_high']:+.3f}] "
            f"| {c['logloss']:.5f} [{ll['ci_low']:.5f}, {ll['ci_high']:.5f}] "
            f"| [{ll['diff_ci_low']:+.5f}, {ll['diff_ci_high']:+.5f}] | {c['pcoc']:.2f} |"
        )
    ex = report["examples"]
    intro = (
        f"{report['dataset']}: {ex['train']:,} train / {ex['valid']:,} validation / {ex['test']:,} test impressions "
        f"(split by time; {report['test_clicks']} test clicks), training click rate {report['base_rate']:.4f}. "
        f"Intervals: {report['bootstrap']:,} bootstrap resamples of the test impressions (differences paired on the "
        "same resamples); a difference whose interval holds 0 is not a difference.\n\n"
    )
    return intro + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
