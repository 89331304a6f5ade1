"""Lookalike audiences on MovieLens-100k: recover the hidden half of a genre's audience from the other half.

    python -m benchmarks.bench_lookalike [--data PATH]

For each genre whose audience (users with at least one click on a movie of the genre) holds 5-60 % of the
users, the audience is split at random into seeds and hidden users. The seeds are expanded to ``n = |hidden|``
and ``2n`` users (seeds excluded) and we report precision and recall of the hidden users among them.

User vectors are learned **without the genre's movies** (their columns are dropped before fitting), so that a
user's membership is never read off their vector: the expansion has to infer an interest from other behaviour.
Methods: BPR user embeddings and interaction rows (user-kNN), each scored against the seeds by ``centroid`` or
``knn`` (chosen on a validation partition of the audiences with another seed); the baseline ranks users by the
demographic lift of their age band, gender and occupation among the seeds (naive Bayes, add-one smoothing);
a second baseline takes the most active users (clicks outside the genre), since heavy users are more likely to
have clicked any genre at all; random expansion gets the base rate.

Writes ``benchmarks/results/lookalike.json`` and ``lookalike.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from adrec.data.interactions import Interactions
from adrec.models import BPR
from adrec.models.coldstart import user_attributes
from adrec.profiles import UserVectors, lookalike
from benchmarks.common import write_results
from benchmarks.ml100k import default_path, load

TEST_SEED, VALIDATION_SEED = 0, 1
BPR_PARAMS: dict[str, Any] = {"factors": 64, "epochs": 100, "learning_rate": 0.01, "verbose": False}
CONFIGS: list[dict[str, Any]] = [
    {"method": "centroid"},
    {"method": "knn", "neighbours": 10},
    {"method": "knn", "neighbours": 50},
]


def demographic(attrs: list[list[str]], ids: list[str], seeds: list[str], size: int) -> list[str]:
    """Users ranked by the summed log-lift of their attributes among the seeds (seeds excluded)."""
    index = {u: i for i, u in enumerate(ids)}
    seed_set = set(seeds)
    in_seeds = Counter(a for s in seeds for a in attrs[index[s]])
    overall = Counter(a for row in attrs for a in row)
    vocab = len(overall)

    def lift(a: str) -> float:
        return math.log((in_seeds[a] + 1) / (len(seeds) + vocab)) - math.log((overall[a] + 1) / (len(ids) + vocab))

    scored = [(sum(lift(a) for a in attrs[i]), u) for i, u in enumerate(ids) if u not in seed_set]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [u for _, u in scored[:size]]


def partition(members: list[str], seed: int) -> tuple[list[str], list[str]]:
    order = np.random.default_rng(seed).permutation(len(members))
    half = len(members) // 2
    return [members[i] for i in order[:half]], [members[i] for i in order[half:]]


def score(found: list[str], hidden: set[str]) -> tuple[float, float]:
    hits = len(set(found) & hidden)
    return hits / max(len(found), 1), hits / len(hidden)


def run_genre(
    vectors: dict[str, UserVectors],
    vectors_activity: tuple[npt.NDArray[np.float64]],
    attrs: list[list[str]],
    ids: list[str],
    members: list[str],
    seed: int,
    cfg: dict[str, Any],
) -> dict[str, dict[str, float]]:
    seeds, hidden_list = partition(members, seed)
    hidden = set(hidden_list)
    n = len(hidden)
    out: dict[str, dict[str, float]] = {}
    for name, v in vectors.items():
        res = lookalike(v, seeds, 2 * n, **cfg[name])
        p1, _ = score(res.user_ids[:n], hidden)
        p2, r2 = score(res.user_ids, hidden)
        out[name] = {"precision@n": p1, "precision@2n": p2, "recall@2n": r2}
    found = demographic(attrs, ids, seeds, 2 * n)
    p1, _ = score(found[:n], hidden)
    p2, r2 = score(found, hidden)
    out["demographic only"] = {"precision@n": p1, "precision@2n": p2, "recall@2n": r2}
    activity = vectors_activity[0]
    seed_set = set(seeds)
    busiest = [ids[u] for u in np.argsort(-activity, kind="stable") if ids[u] not in seed_set][: 2 * n]
    p1, _ = score(busiest[:n], hidden)
    p2, r2 = score(busiest, hidden)
    out["activity only (most clicks)"] = {"precision@n": p1, "precision@2n": p2, "recall@2n": r2}
    base = n / (len(ids) - len(seeds))
    out["random (base rate)"] = {"precision@n": base, "precision@2n": base, "recall@2n": min(1.0, 2 * base)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_path(), help="the ml-100k folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ml = load(args.data)
    clicks = ml.clicks.matrix
    ids = ml.clicks.users.ids
    attrs = [user_attributes(u) for u in ml.users]
    names = sorted({g for gs in ml.genres for g in gs})
    item_genre = sp.csr_matrix(
        np.array([[g in gs for g in names] for gs in ml.genres], dtype=np.float32)
    )  # (n_items, n_genres)
    per_user = (clicks @ item_genre).toarray()
    genres = []
    for j, g in enumerate(names):
        share = float((per_user[:, j] > 0).mean())
        if 0.05 <= share <= 0.60:
            genres.append((g, j, share))
    print(f"{len(genres)} genres with 5-60 % of users: {[g for g, _, _ in genres]}", flush=True)

    per_genre: dict[str, Any] = {}
    for g, j, share in genres:
        t0 = time.perf_counter()
        members = [ids[u] for u in np.flatnonzero(per_user[:, j] > 0)]
        keep = np.asarray(item_genre[:, j].toarray()).ravel() == 0
        without = Interactions(sp.csr_matrix(clicks[:, keep]), ml.clicks.users)
        vectors = {
            "BPR embeddings": UserVectors.from_model(
                BPR(**BPR_PARAMS, random_state=TEST_SEED).fit(without), without.users
            ),
            "interaction rows (user-kNN)": UserVectors.from_interactions(without),
        }
        activity = (np.diff(without.matrix.indptr).astype(np.float64),)
        validation = {
            name: {
                repr(c): run_genre({name: v}, activity, attrs, ids, members, VALIDATION_SEED, {name: c})[name][
                    "precision@n"
                ]
                for c in CONFIGS
            }
            for name, v in vectors.items()
        }
        per_genre[g] = {
            "audience": len(members),
            "share": round(share, 3),
            "validation": validation,
            "vectors": vectors,
            "activity": activity,
        }
        print(f"  {g}: {len(members)} users, vectors in {time.perf_counter() - t0:.1f} s", flush=True)

    # One configuration per vector source, chosen on the validation partitions (mean precision@n over genres).
    chosen: dict[str, dict[str, Any]] = {}
    for name in ("BPR embeddings", "interaction rows (user-kNN)"):
        means = {repr(c): np.mean([per_genre[g]["validation"][name][repr(c)] for g in per_genre]) for c in CONFIGS}
        chosen[name] = next(c for c in CONFIGS if repr(c) == max(means, key=lambda k: means[k]))
    print(f"chosen on validation: {chosen}", flush=True)

    results: dict[str, Any] = {}
    for g, info in per_genre.items():
        members = [ids[u] for u in np.flatnonzero(per_user[:, names.index(g)] > 0)]
        results[g] = {
            "audience": info["audience"],
            "share": info["share"],
            "test": run_genre(info["vectors"], info["activity"], attrs, ids, members, TEST_SEED, chosen),
        }
    methods = list(next(iter(results.values()))["test"])
    mean = {
        m: {k: round(float(np.mean([r["test"][m][k] for r in results.values()])), 4) for k in results[g]["test"][m]}
        for m in methods
    }
    for r in results.values():
        r["test"] = {m: {k: round(v, 4) for k, v in vals.items()} for m, vals in r["test"].items()}
    lines = [
        f"{len(results)} ML-100k genres whose audience (>= 1 click) holds 5-60 % of the {len(ids)} users; half of "
        "each audience seeds the expansion, the other half is hidden; n = hidden users. User vectors are learned "
        "without the genre's movies.",
        "",
        "### Mean over genres",
        "",
        "| method | precision@n (= recall@n) | precision@2n | recall@2n |",
        "|---|---:|---:|---:|",
        *[
            f"| {m} | {v['precision@n']:.4f} | {v['precision@2n']:.4f} | {v['recall@2n']:.4f} |"
            for m, v in mean.items()
        ],
        "",
        f"Chosen on validation partitions: `{chosen}`",
        "",
        "### Precision@n per genre",
        "",
        "| genre | audience | " + " | ".join(methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
        *[
            f"| {g} | {r['audience']} | " + " | ".join(f"{r['test'][m]['precision@n']:.3f}" for m in methods) + " |"
            for g, r in results.items()
        ],
    ]
    payload = {
        "dataset": f"ml-100k ({len(ids)} users with clicks, clicks = ratings >= 4)",
        "bpr": BPR_PARAMS,
        "configs": CONFIGS,
        "chosen": chosen,
        "mean": mean,
        "genres": results,
        "validation": {g: info["validation"] for g, info in per_genre.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_results("lookalike", payload, "\n".join(lines), packages=("numpy", "torch"))
    print("\n".join(lines[4 : 9 + len(mean)]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
