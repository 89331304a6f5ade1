"""Offline comparison of models on one dataset: fit each, rank everything, report accuracy and list quality.

The same runner serves ``adrec evaluate``, the demo and the benchmarks::

    report = compare_models(load_dataset("lightgcn:../shared/data/gowalla_lightgcn"), ["popularity", "gfcf"])
    report.to_json("out.json"); plot_metric_vs_k(report, "out.png")
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adrec.data.datasets import Dataset
from adrec.evaluation import metrics
from adrec.evaluation.ranking import RecallValidator, evaluate_model
from adrec.models.base import Recommender, get_model, registered_models

__all__ = ["EvaluationReport", "ModelResult", "compare_models", "make_model", "plot_metric_vs_k"]

ACCURACY = ("precision", "recall", "f1", "ndcg", "hit_rate", "map")


@dataclass
class ModelResult:
    model: str
    params: dict[str, Any]
    fit_seconds: float
    eval_seconds: float
    metrics: dict[str, float]
    """``"recall@20"``-style accuracy keys plus ``coverage@k``, ``ild@k`` (by category, when known), ``novelty@k``."""


@dataclass
class EvaluationReport:
    dataset: str
    n_users: int
    n_items: int
    n_train: int
    n_test: int
    ks: list[int]
    results: list[ModelResult] = field(default_factory=list)

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(asdict(self), indent=2, default=_plain))
        return p

    def table(self, names: Sequence[str] = ("recall", "ndcg", "precision")) -> tuple[list[str], list[list[str]]]:
        """Header and rows (formatted strings) for printing."""
        keys = [f"{n}@{k}" for k in self.ks for n in names] + [f"coverage@{max(self.ks)}", f"novelty@{max(self.ks)}"]
        if any(f"ild@{max(self.ks)}" in r.metrics for r in self.results):
            keys.append(f"ild@{max(self.ks)}")
        header = ["model", *keys, "fit s", "eval s"]
        rows = [
            [r.model, *[_fmt(r.metrics.get(k)) for k in keys], f"{r.fit_seconds:.1f}", f"{r.eval_seconds:.1f}"]
            for r in self.results
        ]
        return header, rows


def _fmt(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if callable(v):  # a validator: its repr names it and its settings
        return repr(v)
    raise TypeError(type(v).__name__)


def make_model(name: str, **params: Any) -> Recommender:
    """:func:`~adrec.models.base.get_model`, plus evaluation's :class:`~adrec.evaluation.ranking.RecallValidator`
    (Recall@20) for a model that stops early on a validator (has a ``validator`` hyper-parameter, as LightGCN)
    and was given none. The CLI, the demo and :func:`compare_models` build models by name this way."""
    cls = registered_models().get(name)
    if cls is not None and "validator" in inspect.signature(cls).parameters:
        params.setdefault("validator", RecallValidator(k=20))
    return get_model(name, **params)


def compare_models(
    dataset: Dataset,
    models: Sequence[str | Recommender],
    ks: Sequence[int] = (10, 20),
    *,
    params: dict[str, dict[str, Any]] | None = None,
    metric_names: Sequence[str] = ACCURACY,
    on_result: Callable[[ModelResult], None] | None = None,
) -> EvaluationReport:
    """Fit every model on ``dataset.train`` and evaluate it on ``dataset.test`` by full ranking.

    ``models`` are registered names (built with ``params[name]``) or unfitted model instances.
    """
    train, test = dataset.train, dataset.test
    popularity = np.diff(train.matrix.tocsc().indptr)
    report = EvaluationReport(
        dataset=dataset.name,
        n_users=train.n_users,
        n_items=train.n_items,
        n_train=train.nnz,
        n_test=test.nnz,
        ks=sorted(ks),
    )
    top = max(ks)
    for spec in models:
        model = make_model(spec, **(params or {}).get(spec, {})) if isinstance(spec, str) else spec
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        ranking = evaluate_model(model, train, test, ks, metric_names=metric_names)
        values = dict(ranking.values)
        values[f"coverage@{top}"] = metrics.catalogue_coverage(ranking.top_items, train.n_items)
        values[f"novelty@{top}"] = metrics.novelty(ranking.top_items, popularity, train.n_users)
        if dataset.item_categories is not None:
            values[f"ild@{top}"] = metrics.intra_list_diversity(ranking.top_items, dataset.item_categories)
        result = ModelResult(model.name or type(model).__name__, model.get_params(), fit_s, ranking.seconds, values)
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    return report


def plot_metric_vs_k(
    report: EvaluationReport, path: str | Path, names: Sequence[str] = ("recall", "ndcg", "precision")
) -> Path:
    """One panel per metric, metric value against K, one line per model; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for r in report.results:
            ys = [r.metrics.get(f"{name}@{k}", float("nan")) for k in report.ks]
            ax.plot(report.ks, ys, marker="o", label=r.model)
        ax.set_xlabel("K")
        ax.set_ylabel(f"{name}@K")
        ax.set_xticks(report.ks)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{report.dataset}: {report.n_users:,} users, {report.n_items:,} items (full ranking)")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
