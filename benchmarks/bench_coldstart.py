"""Cold start on MovieLens-100k: new movies (no clicks yet) and new users (0-5 clicks), against simple baselines.

    python -m benchmarks.bench_coldstart [--data PATH] [--encoders tfidf,minilm]

Clicks are ratings >= 4 (as ``load_dataset("movielens:...")``); a movie's text is its title and genres.

New items. 10 % of the movies (seeded) are held out with all their clicks: the *test* cold items. Another 10 %
are the *validation* cold items, on which every hyper-parameter is chosen (a model fitted without either set);
the chosen settings are then applied to a model fitted on everything but the test items. Each user with a click
on a cold item ranks the cold items only (their relevant items are those clicks); Recall@20 and NDCG@20 are
averaged over those users. Methods: content → CF (ridge map from content to BPR item embeddings; content-kNN
over BPR or EASE scores), content only (cosine between the mean content of a user's clicks and the movie),
the popularity of the content-nearest warm movies (non-personalised), random, and the oracle popularity of the
held-out clicks themselves (an upper bound for any non-personalised list).

New users. 10 % of the users with >= 10 clicks are test users, 10 % validation users; models are fitted on the
other users. A held-out user reveals their first n clicks by time (n = 0, 1, 3, 5); the rest are relevant, and
all movies but the revealed ones are ranked. Methods: fold-in (EASE rows; least-squares BPR user vectors), the
demographic prior (age band, gender, occupation), popularity, and fold-in blended with the prior
(row-standardised scores, weight chosen on validation).

Writes ``benchmarks/results/coldstart.json`` and ``coldstart.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.catalog import CachedEncoder, SentenceTransformerEncoder, TextEncoder, TfidfEncoder, normalize_rows
from adrec.exceptions import ConfigError
from adrec.models import BPR, EASE, Popularity, Recommender
from adrec.models.coldstart import ColdItemScorer, DemographicPrior, FoldIn, blend, user_attributes
from benchmarks.common import RESULTS, write_results
from benchmarks.ml100k import MovieLens, default_path, load, measure

SEED = 0
K = 20
BPR_PARAMS: dict[str, Any] = {"factors": 64, "epochs": 100, "learning_rate": 0.01, "verbose": False}
EASE_PARAMS: dict[str, Any] = {"regularization": 200.0}
ALPHAS = [0.1, 1.0, 10.0, 100.0]
NEIGHBOURS = [5, 20, 50, 150]
POWERS = [1.0, 3.0]
FOLD_IN_REG = [0.01, 0.1, 1.0]
FOLD_IN_W0 = [0.0, 0.01, 0.1]
SHRINKAGE = [5.0, 50.0, 500.0]
EVENTS = (0, 1, 3, 5)

Floats = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def encoders(names: list[str], texts: list[str]) -> dict[str, TextEncoder]:
    cache = RESULTS.parent / ".cache" / "embeddings.sqlite"
    out: dict[str, TextEncoder] = {}
    for name in names:
        if name == "tfidf":
            out[name] = TfidfEncoder().fit(texts)
        elif name == "minilm":
            try:
                out[name] = CachedEncoder(SentenceTransformerEncoder(), cache)
            except ConfigError as err:
                print(f"minilm skipped: {err}", flush=True)
        else:
            raise SystemExit(f"unknown encoder {name!r}; use tfidf, minilm")
    return out


def split_items(n_items: int, has_clicks: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    rng = np.random.default_rng(SEED)
    candidates = rng.permutation(np.flatnonzero(has_clicks))
    n = round(0.1 * n_items)
    return np.sort(candidates[:n]), np.sort(candidates[n : 2 * n])


def drop_items(matrix: sp.csr_matrix, items: IntArray) -> sp.csr_matrix:
    keep = np.ones(matrix.shape[1], dtype=np.float32)
    keep[items] = 0.0
    out = sp.csr_matrix(matrix @ sp.diags(keep))
    out.eliminate_zeros()
    return out


# ------------------------------------------------------------------------------------------------ items
def item_methods(
    train: sp.csr_matrix, content: Floats, cold: IntArray, warm: IntArray, bpr: BPR, ease: EASE, params: dict[str, Any]
) -> dict[str, Callable[[], Floats]]:
    """Name → function giving scores ``(n_users, n_cold)``."""
    users = np.arange(train.shape[0])
    new = content[cold]

    def cf(model: Recommender, method: str) -> Callable[[], Floats]:
        def run() -> Floats:
            p = params[f"{method}:{model.name}"]
            scorer = ColdItemScorer(method=method, **p).fit(model, content, warm_items=warm)
            return scorer.score(users, new)

        return run

    def content_only() -> Floats:
        profile = normalize_rows(train @ normalize_rows(content))
        return profile @ normalize_rows(new).T

    def neighbour_popularity() -> Floats:
        pop = Popularity().fit(train)
        scorer = ColdItemScorer(method="knn", **params["knn:popularity"]).fit(pop, content, warm_items=warm)
        return np.broadcast_to(scorer.neighbours(new) @ pop.item_counts_, (len(users), len(cold))).copy()

    def random() -> Floats:
        return np.random.default_rng(SEED).random((len(users), len(cold)), dtype=np.float32)

    return {
        "content→CF ridge (BPR)": cf(bpr, "ridge"),
        "content→CF kNN (BPR)": cf(bpr, "knn"),
        "content→CF kNN (EASE)": cf(ease, "knn"),
        "content only (user content profile)": content_only,
        "popularity of similar warm items": neighbour_popularity,
        "random": random,
    }


def tune_items(
    train: sp.csr_matrix, truth: sp.csr_matrix, content: Floats, cold: IntArray, warm: IntArray, bpr: BPR, ease: EASE
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    users = np.arange(train.shape[0])
    empty = sp.csr_matrix((train.shape[0], len(cold)))
    relevant = truth[:, cold]
    chosen: dict[str, Any] = {}
    trials: list[dict[str, Any]] = []
    grids: list[tuple[str, Recommender, list[dict[str, Any]]]] = [
        ("ridge", bpr, [{"alpha": a} for a in ALPHAS]),
        ("knn", bpr, [{"k_neighbors": k, "power": p} for k in NEIGHBOURS for p in POWERS]),
        ("knn", ease, [{"k_neighbors": k, "power": p} for k in NEIGHBOURS for p in POWERS]),
        ("knn", Popularity().fit(train), [{"k_neighbors": k, "power": p} for k in NEIGHBOURS for p in POWERS]),
    ]
    for method, model, grid in grids:
        best: tuple[float, dict[str, Any]] | None = None
        for p in grid:
            scorer = ColdItemScorer(method=method, **p).fit(model, content, warm_items=warm)
            scores = scorer.score(users, content[cold])
            m = measure(scores, empty, relevant, K)
            trials.append({"method": f"{method}:{model.name}", "params": p, **m})
            if best is None or m[f"ndcg@{K}"] > best[0]:
                best = (m[f"ndcg@{K}"], p)
        assert best is not None
        chosen[f"{method}:{model.name}"] = best[1]
    return chosen, trials


def run_items(ml: MovieLens, encs: dict[str, TextEncoder]) -> dict[str, Any]:
    full = ml.clicks.matrix
    has_clicks = np.diff(full.tocsc().indptr) > 0
    test_cold, val_cold = split_items(full.shape[1], has_clicks)
    out: dict[str, Any] = {"n_test_items": len(test_cold), "n_validation_items": len(val_cold), "encoders": {}}
    stages = {
        "validation": (drop_items(full, np.concatenate([test_cold, val_cold])), val_cold),
        "test": (drop_items(full, test_cold), test_cold),
    }
    fitted: dict[str, tuple[sp.csr_matrix, BPR, EASE]] = {}
    for stage, (train, _) in stages.items():
        t0 = time.perf_counter()
        bpr = BPR(**BPR_PARAMS, random_state=SEED).fit(train)
        ease = EASE(**EASE_PARAMS).fit(train)
        fitted[stage] = (train, bpr, ease)
        print(f"items/{stage}: BPR + EASE fitted in {time.perf_counter() - t0:.1f} s", flush=True)
    for enc_name, enc in encs.items():
        t0 = time.perf_counter()
        content = enc.encode(ml.texts, batch_size=128)
        encode_s = time.perf_counter() - t0
        cached = enc.hits if isinstance(enc, CachedEncoder) else 0
        print(f"{enc_name}: {content.shape} in {encode_s:.1f} s", flush=True)
        train, bpr, ease = fitted["validation"]
        cold = stages["validation"][1]
        warm = np.flatnonzero(np.diff(train.tocsc().indptr) > 0)
        chosen, trials = tune_items(train, full, content, cold, warm, bpr, ease)
        print(f"  chosen on validation: {chosen}", flush=True)
        train, bpr, ease = fitted["test"]
        warm = np.flatnonzero(np.diff(train.tocsc().indptr) > 0)
        empty = sp.csr_matrix((train.shape[0], len(test_cold)))
        relevant = full[:, test_cold]
        results = {}
        for name, fn in item_methods(train, content, test_cold, warm, bpr, ease, chosen).items():
            results[name] = measure(fn(), empty, relevant, K)
            print(f"  {name}: {results[name]}", flush=True)
        oracle = np.asarray(relevant.sum(axis=0), dtype=np.float32).ravel()
        results["oracle popularity (held-out clicks; upper bound)"] = measure(
            np.broadcast_to(oracle, (train.shape[0], len(test_cold))), empty, relevant, K
        )
        out["encoders"][enc_name] = {
            "name": enc.name,
            "dim": int(content.shape[1]),
            "encode_seconds": round(encode_s, 2),
            "from_cache": cached,
            "chosen": chosen,
            "test": results,
            "validation_trials": trials,
        }
    return out


# ------------------------------------------------------------------------------------------------ users
def first_events(matrix: sp.csr_matrix, times: sp.csr_matrix, users: IntArray, n: int) -> sp.csr_matrix:
    """Rows of ``users`` keeping their first ``n`` clicks by time (ties by item index)."""
    rows, cols = [], []
    for b, u in enumerate(users.tolist()):
        lo, hi = matrix.indptr[u], matrix.indptr[u + 1]
        order = np.lexsort((matrix.indices[lo:hi], times.data[lo:hi]))[:n]
        rows += [b] * len(order)
        cols += matrix.indices[lo:hi][order].tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), matrix.shape[1]))


def user_scores(
    method: str,
    n: int,
    revealed: sp.csr_matrix,
    attrs: list[list[str]],
    models: dict[str, Any],
    p: dict[str, Any],
    chosen: dict[str, dict[str, Any]],
) -> Floats | None:
    if method == BLEND:
        if n == 0:
            return None
        personal = user_scores("fold-in (EASE)", n, revealed, attrs, models, chosen["fold-in (EASE)"], chosen)
        prior = user_scores("demographic prior", n, revealed, attrs, models, chosen["demographic prior"], chosen)
        assert personal is not None and prior is not None
        return blend(personal, prior, p["weight"])
    if method == "popularity":
        return np.tile(models["popularity"].item_counts_, (revealed.shape[0], 1))
    if method == "demographic prior":
        return DemographicPrior(**p).fit(models["train"], models["train_attrs"]).score(attrs)
    if n == 0:
        return None  # nothing to fold in
    model = models["bpr" if "BPR" in method else "ease"]
    return FoldIn(**p).score(model, revealed)


BLEND = "fold-in (EASE) + demographic prior"
USER_METHODS = ("fold-in (EASE)", "fold-in (BPR)", "demographic prior", "popularity", BLEND)
BLEND_WEIGHTS = [0.2, 0.4, 0.6, 0.8]


def user_grid(method: str) -> list[dict[str, Any]]:
    if method == "fold-in (BPR)":
        return [{"regularization": r, "unobserved_weight": w} for r in FOLD_IN_REG for w in FOLD_IN_W0]
    if method == "demographic prior":
        return [{"shrinkage": s} for s in SHRINKAGE]
    if method == BLEND:
        return [{"weight": w} for w in BLEND_WEIGHTS]
    return [{}]


def run_users(ml: MovieLens) -> dict[str, Any]:
    full, times = ml.clicks.matrix, ml.times
    counts = np.diff(full.indptr)
    rng = np.random.default_rng(SEED)
    eligible = rng.permutation(np.flatnonzero(counts >= 10))
    n = round(0.1 * len(eligible))
    test_users, val_users = np.sort(eligible[:n]), np.sort(eligible[n : 2 * n])
    train_users = np.setdiff1d(np.arange(full.shape[0]), np.concatenate([test_users, val_users]))
    attrs = [user_attributes(u) for u in ml.users]
    train = full[train_users]
    t0 = time.perf_counter()
    models: dict[str, Any] = {
        "train": train,
        "train_attrs": [attrs[u] for u in train_users],
        "popularity": Popularity().fit(train),
        "ease": EASE(**EASE_PARAMS).fit(train),
        "bpr": BPR(**BPR_PARAMS, random_state=SEED).fit(train),
    }
    print(f"users: models fitted on {len(train_users)} users in {time.perf_counter() - t0:.1f} s", flush=True)

    chosen: dict[str, dict[str, Any]] = {}

    def evaluate(users: IntArray, method: str, p: dict[str, Any], n_events: int) -> dict[str, float] | None:
        revealed = first_events(full, times, users, n_events)
        relevant = full[users] - revealed
        relevant.eliminate_zeros()
        scores = user_scores(method, n_events, revealed, [attrs[u] for u in users], models, p, chosen)
        return None if scores is None else measure(scores, revealed, relevant, K)

    trials = []
    for method in USER_METHODS:
        best: tuple[float, dict[str, Any]] | None = None
        for p in user_grid(method):
            # chosen on the mean NDCG over the event counts where the method applies
            values = [evaluate(val_users, method, p, n_ev) for n_ev in EVENTS]
            ndcg = float(np.mean([v[f"ndcg@{K}"] for v in values if v is not None]))
            trials.append({"method": method, "params": p, "mean_ndcg@20": round(ndcg, 4)})
            if best is None or ndcg > best[0]:
                best = (ndcg, p)
        assert best is not None
        chosen[method] = best[1]
    print(f"users: chosen on validation: {chosen}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for n_ev in EVENTS:
        for method in USER_METHODS:
            m = evaluate(test_users, method, chosen[method], n_ev)
            if m is not None:
                results.setdefault(str(n_ev), {})[method] = m
                print(f"  {n_ev} events, {method}: {m}", flush=True)
    return {
        "n_test_users": len(test_users),
        "n_validation_users": len(val_users),
        "n_train_users": len(train_users),
        "chosen": chosen,
        "test": results,
        "validation_trials": trials,
    }


# ------------------------------------------------------------------------------------------------ report
def markdown(items: dict[str, Any], users: dict[str, Any]) -> str:
    lines = [
        "## New movies (no clicks): ranking the held-out cold movies",
        "",
        f"{items['n_test_items']} test cold movies (10 %, with all their clicks), {items['n_validation_items']} "
        "validation cold movies for tuning. Each user with a click on a cold movie ranks the cold movies; "
        "Recall@20 / NDCG@20 over those users.",
        "",
    ]
    for enc_name, e in items["encoders"].items():
        lines += [
            f"### Content encoder: {enc_name} ({e['dim']} dims, {e['encode_seconds']} s for 1,682 movies, "
            f"{e['from_cache']} of them from the on-disk cache)",
            "",
            "| method | Recall@20 | NDCG@20 | users |",
            "|---|---:|---:|---:|",
        ]
        for name, m in e["test"].items():
            lines.append(f"| {name} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} | {m['users']} |")
        lines += ["", f"Chosen on validation: `{e['chosen']}`", ""]
    lines += [
        "## New users: quality after n revealed clicks",
        "",
        f"{users['n_test_users']} test users (>= 10 clicks), models fitted on {users['n_train_users']} other users; "
        "the first n clicks by time are revealed, the rest are relevant; all other movies are ranked.",
        "",
        "| clicks revealed | method | Recall@20 | NDCG@20 |",
        "|---:|---|---:|---:|",
    ]
    for n_ev, methods in users["test"].items():
        for name, m in methods.items():
            lines.append(f"| {n_ev} | {name} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} |")
    lines += ["", f"Chosen on validation users: `{users['chosen']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_path(), help="the ml-100k folder")
    parser.add_argument("--encoders", default="tfidf,minilm", help="comma-separated: tfidf, minilm")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ml = load(args.data)
    print(f"{ml.clicks} loaded", flush=True)
    encs = encoders([e.strip() for e in args.encoders.split(",") if e.strip()], ml.texts)
    items = run_items(ml, encs)
    users = run_users(ml)
    payload = {
        "dataset": f"ml-100k ({ml.clicks.n_users} users with clicks, {ml.clicks.n_items} movies, "
        f"{ml.clicks.nnz} clicks = ratings >= 4)",
        "k": K,
        "bpr": BPR_PARAMS,
        "ease": EASE_PARAMS,
        "seed": SEED,
        "items": items,
        "users": users,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_results(
        "coldstart", payload, markdown(items, users), packages=("numpy", "torch", "sentence-transformers")
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
