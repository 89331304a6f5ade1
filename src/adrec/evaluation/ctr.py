"""Click-rate metrics as pure functions of labels ``y`` (0/1) and predicted probabilities ``p``, and the report
that compares click models on one dataset (with the oracle's figures where the truth is known).

- :func:`auc`: the probability that a random click is scored above a random non-click (ties count one half).
- :func:`logloss`: mean binary cross-entropy (``p`` clipped to ``[1e-7, 1 - 1e-7]``).
- :func:`group_auc`: AUC within each group (a user), averaged with the group's impressions as weights, over the
  groups with both clicks and non-clicks (He et al., "Deep Interest Network", KDD 2018).
- :func:`pcoc`: predicted clicks over observed clicks, ``Σp / Σy`` (1 = calibrated on the whole).
- :func:`ece`: expected calibration error over equal-mass bins of ``p``: ``Σ_b n_b/n |mean p_b - mean y_b|``.
- :func:`field_calibration`: per value of a field (an advertiser, a category), its PCOC: an advertiser over-
  predicted by 20 % pays 20 % too much for its clicks under second-price auctions.
- :func:`gain_captured`: the share of the possible logloss gain a model captures,
  ``(LL_base - LL_model) / (LL_base - LL_oracle)``, where the base predicts the training click rate everywhere
  and the oracle the true probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from adrec.models.ctr import REFERENCE_POSITION, ClickDataset, ClickModel, get_click_model

__all__ = [
    "REPORT_ROWS",
    "auc",
    "click_metrics",
    "compare_click_models",
    "ece",
    "field_calibration",
    "gain_captured",
    "group_auc",
    "logloss",
    "pcoc",
    "report_cells",
]

Floats = npt.NDArray[np.float64]
_EPS = 1e-7


def _check(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[Floats, Floats]:
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    if yy.shape != pp.shape or yy.ndim != 1:
        raise ValueError(f"y and p must be 1-D of the same length; got {yy.shape} and {pp.shape}")
    if not np.isin(yy, (0.0, 1.0)).all():
        raise ValueError("y must hold only 0 and 1")
    if len(pp) and (np.isnan(pp).any() or pp.min() < 0 or pp.max() > 1):
        raise ValueError("p must be probabilities in [0, 1]")
    return yy, pp


def auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); NaN without both classes."""
    yy, pp = _check(y, p)
    n1 = yy.sum()
    n0 = len(yy) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(pp)
    return float((ranks[yy == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def logloss(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    yy, pp = _check(y, p)
    q = np.clip(pp, _EPS, 1 - _EPS)
    return float(-np.mean(yy * np.log(q) + (1 - yy) * np.log(1 - q)))


def group_auc(y: npt.ArrayLike, p: npt.ArrayLike, groups: npt.ArrayLike) -> float:
    """Impression-weighted mean of the per-group AUC over the groups with both classes; NaN if there are none."""
    yy, pp = _check(y, p)
    g = np.asarray(groups)
    if g.shape != yy.shape:
        raise ValueError(f"groups must have the shape of y {yy.shape}; got {g.shape}")
    _, code = np.unique(g, return_inverse=True)
    # Ranks within each group, ties averaged: rank over (group, p) pairs, minus the group's offset.
    order = np.lexsort((pp, code))
    key_g, key_p = code[order], pp[order]
    new_run = np.r_[True, (key_g[1:] != key_g[:-1]) | (key_p[1:] != key_p[:-1])]
    run = np.cumsum(new_run) - 1
    first = np.flatnonzero(new_run)
    last = np.r_[first[1:], len(order)] - 1
    avg_rank = (first + last) / 2.0 + 1.0  # 1-based global position, averaged over the tied run
    group_start = np.flatnonzero(np.r_[True, key_g[1:] != key_g[:-1]])
    start_of = np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    rank = avg_rank[run] - start_of
    n = np.bincount(key_g).astype(np.float64)
    n1 = np.bincount(key_g, weights=yy[order])
    n0 = n - n1
    rank_sum = np.bincount(key_g, weights=rank * yy[order])
    both = (n1 > 0) & (n0 > 0)
    if not both.any():
        return float("nan")
    per_group = (rank_sum[both] - n1[both] * (n1[both] + 1) / 2) / (n1[both] * n0[both])
    return float(np.average(per_group, weights=n[both]))


def pcoc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """``Σp / Σy``; NaN without a click."""
    yy, pp = _check(y, p)
    return float(pp.sum() / yy.sum()) if yy.sum() > 0 else float("nan")


def ece(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over ``bins`` bins of (nearly) equal numbers of examples, ordered by ``p``."""
    yy, pp = _check(y, p)
    if len(yy) == 0:
        return float("nan")
    order = np.argsort(pp, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, len(order))):
        total += len(part) * abs(pp[part].mean() - yy[part].mean())
    return total / len(yy)


def field_calibration(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    min_count: int = 1000,
    truth: npt.ArrayLike | None = None,
) -> dict[str, dict[str, float]]:
    """Per value of a field with at least ``min_count`` examples: ``n``, ``clicks``, ``pcoc`` and
    ``error = |pcoc - 1|``; with the true probabilities ``truth`` (a simulation) also ``vs_truth`` = predicted
    over expected clicks and ``truth_error = |vs_truth - 1|``, free of the sampling noise of a few clicks."""
    yy, pp = _check(y, p)
    v = np.asarray(values)
    names, code = np.unique(v, return_inverse=True)
    n = np.bincount(code)
    clicks = np.bincount(code, weights=yy)
    predicted = np.bincount(code, weights=pp)
    expected = None if truth is None else np.bincount(code, weights=_check(yy, truth)[1])
    out: dict[str, dict[str, float]] = {}
    for j in np.flatnonzero(n >= min_count).tolist():
        ratio = float(predicted[j] / clicks[j]) if clicks[j] > 0 else float("nan")
        out[str(names[j])] = {"n": int(n[j]), "clicks": int(clicks[j]), "pcoc": ratio, "error": abs(ratio - 1.0)}
        if expected is not None:
            vs_truth = float(predicted[j] / expected[j])
            out[str(names[j])].update(vs_truth=vs_truth, truth_error=abs(vs_truth - 1.0))
    return out


def gain_captured(base: float, model: float, oracle: float) -> float:
    """``(base - model) / (base - oracle)`` for three loglosses; NaN when the oracle gains nothing."""
    return (base - model) / (base - oracle) if base > oracle else float("nan")


def click_metrics(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    *,
    users: npt.ArrayLike | None = None,
    fields: Mapping[str, npt.ArrayLike] | None = None,
    min_count: int = 1000,
    truth: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """AUC, logloss, group AUC (with ``users``), PCOC, ECE, and the field-level calibration of each of
    ``fields`` (name → value per example) with its worst error over the values with ``min_count`` examples
    (also against ``truth``, the true probabilities, where known: see :func:`field_calibration`)."""
    out: dict[str, Any] = {
        "n": len(np.asarray(y)),
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "pcoc": pcoc(y, p),
        "ece": ece(y, p),
    }
    if users is not None:
        out["group_auc"] = group_auc(y, p, users)
    for name, values in (fields or {}).items():
        per_value = field_calibration(y, p, values, min_count=min_count, truth=truth)
        for kind in ("error", "truth_error"):
            errors = [v[kind] for v in per_value.values() if kind in v and not np.isnan(v[kind])]
            if kind == "error" or truth is not None:
                out[f"{name}_max_{kind}"] = max(errors) if errors else float("nan")
        out[f"{name}_calibration"] = per_value
    return out


REPORT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("AUC", "auc", "{:.4f}"),
    ("logloss", "logloss", "{:.5f}"),
    ("group AUC (per user)", "group_auc", "{:.4f}"),
    ("PCOC", "pcoc", "{:.3f}"),
    ("ECE", "ece", "{:.5f}"),
    ("worst advertiser |PCOC - 1| (>= 1,000 test examples)", "advertiser_max_error", "{:.3f}"),
    ("worst advertiser |predicted / true - 1|", "advertiser_max_truth_error", "{:.3f}"),
    ("share of the oracle's logloss gain", "gain_captured", "{:.1%}"),
    ("pCTR at position 1 / truth there (what serving uses)", "top_slot_vs_truth", "{:.3f}"),
    ("AUC gap to the oracle", "auc_gap_to_oracle", "{:.4f}"),
    ("fit seconds", "fit_seconds", "{:.1f}"),
    ("training examples / s", "train_examples_per_second", "{:,.0f}"),
)
"""The rows of a :func:`compare_click_models` report as people read it: label, key, format."""


def report_cells(columns: Mapping[str, Mapping[str, Any]], key: str, fmt: str) -> list[str]:
    """One row of the report: ``fmt`` of ``key`` in each column, ``—`` where it is missing or NaN."""
    return [fmt.format(c[key]) if key in c and c[key] == c[key] else "—" for c in columns.values()]


def compare_click_models(
    data: ClickDataset,
    names: Sequence[str],
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    fitted: dict[str, ClickModel] | None = None,
) -> dict[str, Any]:
    """Fit each named click model on ``data.train`` (``data.valid`` for early stopping and calibration) and
    report :func:`click_metrics` on ``data.test`` for each, for the base rate and, where the truth is known, for
    the oracle, with each model's share of the possible logloss gain. ``fitted`` receives the fitted models."""
    test = data.test
    y = test.labels
    fields = data.test_fields

    def metrics(p: npt.ArrayLike) -> dict[str, Any]:
        return click_metrics(y, p, users=data.test_users, fields=fields, truth=data.test_truth)

    report: dict[str, Any] = {
        "dataset": data.name,
        "examples": {"train": len(data.train), "valid": len(data.valid), "test": len(test)},
        "base_rate": data.base_rate,
        "base": metrics(np.full(len(test), data.base_rate)),
        "models": {},
    }
    if data.test_truth is not None:
        report["oracle"] = metrics(data.test_truth)
    report["baselines"] = {name: metrics(p) for name, p in data.baselines.items()}
    if "oracle" in report:
        for result in report["baselines"].values():
            result["gain_captured"] = gain_captured(
                report["base"]["logloss"], result["logloss"], report["oracle"]["logloss"]
            )
    for name in names:
        model = get_click_model(name, **dict((params or {}).get(name, {})))
        t0 = time.perf_counter()
        model.fit(data.train, data.valid, spec=data.spec, progress=progress)
        seconds = time.perf_counter() - t0
        result = metrics(model.predict(test))
        result["fit_seconds"] = seconds
        passes = getattr(model, "epochs_run_", None)
        if passes is not None:
            result["train_examples_per_second"] = passes * len(data.train) / seconds
        result["params"] = model.get_params()
        if data.test_truth_top is not None:
            top = model.predict(test, position=REFERENCE_POSITION)
            result["top_slot_vs_truth"] = float(top.sum() / data.test_truth_top.sum())
        if "oracle" in report:
            result["gain_captured"] = gain_captured(
                report["base"]["logloss"], result["logloss"], report["oracle"]["logloss"]
            )
            result["auc_gap_to_oracle"] = report["oracle"]["auc"] - result["auc"]
        report["models"][name] = result
        if fitted is not None:
            fitted[name] = model
        if on_result is not None:
            on_result(name, result)
    return report
