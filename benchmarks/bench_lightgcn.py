"""LightGCN on Gowalla: time per epoch against PyTorch Geometric's ``LightGCN``, and quality against wall time.

Targets (issue): an epoch at least 5x faster than PyG's on the same data, batch size and steps per epoch; test
Recall@20 >= 0.175 within 60 minutes on a 2-core CPU (paper, on a GPU: 0.1830).

    python -m benchmarks.bench_lightgcn                      # both parts (about 75 minutes)
    python -m benchmarks.bench_lightgcn --part speed --steps 10
    python -m benchmarks.bench_lightgcn --part quality --minutes 60

**Speed.** Both models get the same batches of BPR triples (drawn once by :class:`BPRSampler`), 64-dimensional
embeddings, 3 layers, Adam (lr 1e-3) and the BPR loss with L2 on the batch's ego embeddings, in one process.
Their steps are interleaved (PyG, ours, PyG, ...) so that a change of load on the machine hits both alike. PyG
runs as in its ``examples/lightgcn.py``: ``model(edge_index, edge_label_index)`` over the undirected
``edge_index`` and ``model.recommendation_loss(...)``. An epoch is ``ceil(810,128 / batch)`` steps for both; its time
is that many times the mean step time (a full PyG epoch takes more than an hour here). Before timing, both
models are given the same ego embeddings and their propagated embeddings are compared.

**Quality.** ``LightGCN`` with its defaults is fitted on ``train.txt`` (hyper-parameters were chosen on a
validation split carved from ``train.txt``, never on ``test.txt``). After every epoch the current model is
evaluated on ``test.txt`` when at least ``--eval-every`` seconds of training passed since the last test point;
the test evaluations are excluded from the clock, which counts everything else in ``fit`` (the validation split,
the spectral initialisation, training and the validation evaluations). Training stops when ``--minutes`` are
spent or early stopping ends it; the fitted model (best validation epoch) is the last point.

Writes ``benchmarks/results/lightgcn.json``, ``lightgcn.md`` and ``lightgcn.png`` (``--name`` changes the base
name). A part that is not run keeps its previous results from that JSON file. ``--compare other.json`` draws the
quality curve of an earlier run (e.g. another sampler) in the plot and the table for reference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adrec.data.interactions import Interactions, load_lightgcn
from adrec.evaluation.ranking import RecallValidator, evaluate_model
from adrec.models.lightgcn import BipartiteGraph, LightGCN, LightGCNModule
from adrec.models.trainer import BPRSampler, EpochRecord
from benchmarks.common import RESULTS, peak_rss_mib, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER = {"recall@20": 0.1830, "ndcg@20": 0.1554}
TARGET_RECALL = 0.175


def data_dir() -> Path:
    return Path(os.environ.get("ADREC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


# -- speed -------------------------------------------------------------------------------------------------
def pyg_edge_index(train: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
    """The homogeneous graph of PyG's example: items numbered after users, every edge in both directions."""
    users, items = train.pairs()
    u, i = torch.from_numpy(users), torch.from_numpy(items + train.n_users)
    return torch.stack([torch.cat([u, i]), torch.cat([i, u])]), torch.stack([u, i])


def speed(train: Interactions, batch_size: int, steps: int, dim: int, layers: int, seed: int) -> dict[str, Any]:
    from torch_geometric.nn import LightGCN as PygLightGCN

    n_users, n_items = train.n_users, train.n_items
    sampler = BPRSampler(train.matrix, batch_size, random_state=seed)
    batches = [b for _, b in zip(range(steps + 1), sampler, strict=False)]  # the first one warms up

    torch.manual_seed(seed)
    ours = LightGCNModule(n_users, n_items, dim, layers)
    graph = BipartiteGraph.from_matrix(train)
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3, fused=True)
    pyg = PygLightGCN(n_users + n_items, dim, layers)
    with torch.no_grad():
        pyg.embedding.weight.copy_(torch.cat([ours.user_embedding, ours.item_embedding]))
    pyg_opt = torch.optim.Adam(pyg.parameters(), lr=1e-3)
    edge_index, _ = pyg_edge_index(train)

    # Same ego embeddings -> same propagated embeddings.
    with torch.no_grad():
        fu, fi = ours.get_embedding(graph)
        ref = pyg.get_embedding(edge_index)
    max_diff = float((torch.cat([fu, fi]) - ref).abs().max())

    def ours_step(users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
        u = torch.from_numpy(users)
        items = torch.from_numpy(np.stack([pos, neg], axis=1))
        scores = ours(graph, u, items)
        loss = ours.recommendation_loss(scores[:, 0], scores[:, 1], u, items[:, 0], items[:, 1], 1e-4)
        ours_opt.zero_grad()
        loss.backward()
        ours_opt.step()
        return float(loss.detach())

    def pyg_step(users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
        u = torch.from_numpy(users)
        pos_index = torch.stack([u, torch.from_numpy(pos + n_users)])
        neg_index = torch.stack([u, torch.from_numpy(neg + n_users)])
        edge_label_index = torch.cat([pos_index, neg_index], dim=1)
        pos_rank, neg_rank = pyg(edge_index, edge_label_index).chunk(2)
        loss = pyg.recommendation_loss(pos_rank, neg_rank, node_id=edge_label_index.unique(), lambda_reg=1e-4)
        pyg_opt.zero_grad()
        loss.backward()
        pyg_opt.step()
        return float(loss.detach())

    times: dict[str, list[float]] = {"pyg": [], "adrec": []}
    losses: dict[str, list[float]] = {"pyg": [], "adrec": []}
    for k, (users, pos, neg) in enumerate(batches):
        order = [("pyg", pyg_step), ("adrec", ours_step)]
        for name, step in order if k % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            loss = step(users, pos, neg)
            elapsed = time.perf_counter() - t0
            if k > 0:
                times[name].append(elapsed)
                losses[name].append(loss)
        print(f"  batch {batch_size} step {k}: pyg {times['pyg'][-1:]} adrec {times['adrec'][-1:]}", flush=True)
    steps_per_epoch = math.ceil(train.nnz / batch_size)
    out: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "timed_steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "max_abs_diff_propagated": max_diff,
    }
    for name in ("pyg", "adrec"):
        t = np.array(times[name])
        out[name] = {
            "step_s_mean": float(t.mean()),
            "step_s_median": float(np.median(t)),
            "step_s_min": float(t.min()),
            "epoch_s": float(t.mean() * steps_per_epoch),
            "first_loss": losses[name][0],
        }
    out["speedup_epoch"] = out["pyg"]["epoch_s"] / out["adrec"]["epoch_s"]
    return out


# -- quality -----------------------------------------------------------------------------------------------
def quality(
    train: Interactions, test: Interactions, minutes: float, eval_every: float, params: dict[str, Any]
) -> dict[str, Any]:
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()
    excluded = 0.0
    last_eval = -math.inf

    def clock() -> float:
        return time.perf_counter() - started - excluded

    def point(model: LightGCN, epoch: int | None, val: float | None) -> dict[str, Any]:
        result = evaluate_model(model, train, test, ks=(20,), batch_size=1024)
        return {
            "epoch": epoch,
            "seconds": round(clock(), 1),
            "recall@20": result["recall@20"],
            "ndcg@20": result["ndcg@20"],
            "precision@20": result["precision@20"],
            "val_recall@20": val,
        }

    def callback(record: EpochRecord, model: LightGCN) -> bool:
        nonlocal excluded, last_eval
        now = clock()
        if now - last_eval >= eval_every:
            t0 = time.perf_counter()
            p = point(model, record.epoch, record.metric)
            curve.append(p)
            excluded += time.perf_counter() - t0
            last_eval = now
            print(json.dumps(p), flush=True)
        return now >= minutes * 60

    model = LightGCN(**params, validator=RecallValidator(k=20))
    model.fit(train, callback=callback)
    fit_seconds = clock()
    t0 = time.perf_counter()
    final = point(model, model.log_.best_epoch, model.log_.best_metric)
    excluded += time.perf_counter() - t0
    final["seconds"] = round(fit_seconds, 1)
    print("final", json.dumps(final), flush=True)
    return {
        "params": {k: v for k, v in model.get_params().items() if k != "validator"},
        "budget_minutes": minutes,
        "fit_seconds": fit_seconds,
        "curve": curve,
        "final": final,
        "log": model.log_.as_dict(),
        "reached_target": final["recall@20"] >= TARGET_RECALL,
        "first_seconds_at_target": next((p["seconds"] for p in curve if p["recall@20"] >= TARGET_RECALL), None),
    }


def plot(q: dict[str, Any], path: Path, compare: dict[str, Any] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = q["curve"]
    minutes = [p["seconds"] / 60 for p in curve]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(minutes, [p["recall@20"] for p in curve], "o-", ms=3, label="Recall@20 (test)")
    ax.plot(minutes, [p["ndcg@20"] for p in curve], "s-", ms=3, label="NDCG@20 (test)")
    final = q["final"]
    ax.plot([final["seconds"] / 60], [final["recall@20"]], "k*", ms=10, label="fitted model (best val. epoch)")
    if compare is not None:
        other = compare["quality"]["curve"]
        ax.plot(
            [p["seconds"] / 60 for p in other],
            [p["recall@20"] for p in other],
            "--",
            color="grey",
            lw=1,
            label=f"Recall@20, {compare['label']}",
        )
    ax.axhline(PAPER["recall@20"], color="C0", ls=":", lw=1, label="paper Recall@20 (GPU, 0.1830)")
    ax.axhline(TARGET_RECALL, color="C3", ls="--", lw=1, label=f"target Recall@20 ({TARGET_RECALL})")
    ax.axhline(PAPER["ndcg@20"], color="C1", ls=":", lw=1, label="paper NDCG@20 (0.1554)")
    ax.set_xlabel("wall time of fit on 2 CPU cores (minutes)")
    ax.set_ylabel("metric on Gowalla test.txt")
    ax.set_title("adrec LightGCN on Gowalla: quality vs time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- report ------------------------------------------------------------------------------------------------
def markdown(payload: dict[str, Any], name: str) -> str:
    lines = []
    speeds = payload.get("speed") or []
    if speeds:
        lines += [
            "## Time per epoch: adrec vs PyTorch Geometric `LightGCN` (same process, same batches)",
            "",
            f"Gowalla train: {payload['data']['users']:,} users, {payload['data']['items']:,} items, "
            f"{payload['data']['train_pairs']:,} pairs; d = 64, 3 layers, Adam lr 1e-3, BPR + L2 1e-4; both models "
            "use the same number of torch threads. Epoch = steps per epoch x mean step time.",
            "",
            "| threads | batch | steps/epoch | timed steps | PyG step (s) | adrec step (s) | PyG epoch | adrec epoch |"
            " speed-up | max abs diff of propagated embeddings |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in speeds:
            lines.append(
                f"| {s.get('threads', '')} | {s['batch_size']:,} | {s['steps_per_epoch']} | {s['timed_steps']} | "
                f"{s['pyg']['step_s_mean']:.2f} | {s['adrec']['step_s_mean']:.2f} | "
                f"{s['pyg']['epoch_s'] / 60:.1f} min | {s['adrec']['epoch_s'] / 60:.1f} min | "
                f"**{s['speedup_epoch']:.1f}x** | {s['max_abs_diff_propagated']:.1e} |"
            )
        lines.append("")
    q = payload.get("quality")
    if q:
        final = q["final"]
        lines += [
            "## Quality vs wall time (test.txt, all items ranked, training items excluded)",
            "",
            f"`LightGCN({', '.join(f'{k}={v!r}' for k, v in q['params'].items())})`, budget {q['budget_minutes']} "
            f"min. Fitted model: best validation epoch {q['log']['best_epoch']} "
            f"(validation Recall@20 {q['log']['best_metric'] or float('nan'):.4f}), fit took "
            f"{q['fit_seconds'] / 60:.1f} min: **Recall@20 {final['recall@20']:.4f}, NDCG@20 {final['ndcg@20']:.4f}** "
            f"(paper: {PAPER['recall@20']}, {PAPER['ndcg@20']}; target Recall@20 >= {TARGET_RECALL}: "
            f"{'reached' if q['reached_target'] else 'not reached'}).",
            "",
            f"![quality vs time]({name}.png)",
            "",
            "| minutes | epoch | Recall@20 | NDCG@20 | Precision@20 | validation Recall@20 |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for p in [*q["curve"], {**final, "epoch": f"fitted (best {final['epoch']})"}]:
            val = "" if p["val_recall@20"] is None else f"{p['val_recall@20']:.4f}"
            lines.append(
                f"| {p['seconds'] / 60:.1f} | {p['epoch']} | {p['recall@20']:.4f} | {p['ndcg@20']:.4f} | "
                f"{p['precision@20']:.4f} | {val} |"
            )
        lines.append("")
    lines.append(
        f"Peak RSS of the last run: {payload['peak_rss_mib']:.0f} MiB; load average at the end: "
        f"{payload['load_average']}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["speed", "quality", "both"], default="both")
    parser.add_argument("--name", default="lightgcn", help="base name of the result files")
    parser.add_argument("--compare", type=Path, default=None, help="quality: an earlier result JSON to draw too")
    parser.add_argument("--compare-label", default="earlier run", help="quality: what --compare is")
    parser.add_argument(
        "--data", type=Path, default=None, help="Gowalla folder (default $ADREC_DATA_DIR/gowalla_lightgcn)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2048], help="speed: batch sizes to time")
    parser.add_argument("--steps", type=int, default=10, help="speed: timed steps per model, batch size, threads")
    parser.add_argument("--minutes", type=float, default=60.0, help="quality: training budget")
    parser.add_argument("--eval-every", type=float, default=120.0, help="quality: seconds between test points")
    parser.add_argument("--params", type=json.loads, default={}, help="quality: LightGCN parameters, as JSON")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="speed: torch threads (default: torch's)")
    args = parser.parse_args()
    folder = args.data or data_dir() / "gowalla_lightgcn"
    train, test = load_lightgcn(folder)
    previous: dict[str, Any] = {}
    if (RESULTS / f"{args.name}.json").is_file():
        previous = json.loads((RESULTS / f"{args.name}.json").read_text())
    payload: dict[str, Any] = {
        "data": {
            "folder": str(folder),
            "users": train.n_users,
            "items": train.n_items,
            "train_pairs": train.nnz,
            "test_pairs": test.nnz,
        },
        "speed": previous.get("speed"),
        "quality": previous.get("quality"),
        "compare": previous.get("compare"),
    }
    if args.compare is not None:
        payload["compare"] = {
            "path": str(args.compare),
            "label": args.compare_label,
            "quality": json.loads(args.compare.read_text())["quality"],
        }
    if args.part in ("speed", "both"):
        payload["speed"] = []
        for threads in args.threads or [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            payload["speed"] += [speed(train, b, args.steps, 64, 3, seed=0) for b in args.batch_sizes]
    if args.part in ("quality", "both"):
        payload["quality"] = quality(train, test, args.minutes, args.eval_every, args.params)
    if payload["quality"]:
        plot(payload["quality"], RESULTS / f"{args.name}.png", payload["compare"])
    payload["peak_rss_mib"] = peak_rss_mib()
    payload["load_average"] = [round(x, 2) for x in os.getloadavg()]
    packages = ("torch", "torch_geometric", "numpy", "scipy")
    write_results(args.name, payload, markdown(payload, args.name), packages=packages)


if __name__ == "__main__":
    main()
