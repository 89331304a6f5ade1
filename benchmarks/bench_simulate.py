"""Benchmark the ad-market simulator end to end into a fresh SQLite store.

Full size (the issue's target): 1M users x 100k ads x 10M impressions::

    .venv/bin/python benchmarks/bench_simulate.py

A tenth of it, written under another name::

    .venv/bin/python benchmarks/bench_simulate.py --scale 0.1 --name simulate-0.1x

Writes ``benchmarks/results/<name>.json`` and ``<name>.md`` with the command, machine, versions, wall time per
phase, events per second and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from adrec.simulate import SimulationConfig, simulate
from adrec.store import open_store

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "sqlalchemy": version("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
        "adrec": version("adrec"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=250_000)
    parser.add_argument("--db", help="SQLite file to write (default: a temporary file, deleted afterwards)")
    parser.add_argument("--name", default="simulate", help="results file name without extension")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()

    s = args.scale
    config = SimulationConfig(
        seed=args.seed,
        n_users=round(1_000_000 * s),
        n_advertisers=round(5_000 * s),
        n_campaigns=round(20_000 * s),
        n_ads=round(100_000 * s),
        n_impressions=round(10_000_000 * s),
        days=30,
        chunk_size=args.chunk_size,
    )
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="adrec-bench-") as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "adrec.db"
        started = time.perf_counter()
        with open_store(f"sqlite:///{db}") as store:
            report = simulate(config, store, out_dir=Path(tmp) / "truth", progress=args.progress)
        wall = time.perf_counter() - started
        db_bytes = db.stat().st_size + sum(p.stat().st_size for p in db.parent.glob(db.name + "-*") if p.is_file())

    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "benchmark": "simulate",
        "command": " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "config": config.model_dump(mode="json"),
        "wall_s": round(wall, 2),
        "timings_s": {k: round(v, 2) for k, v in report.timings.items()},
        "events": report.events,
        "events_inserted": report.inserted,
        "events_per_s": round(report.events / wall),
        "impressions_per_s": round(report.impressions / wall),
        "event_write_per_s": round(report.events / report.timings["events"]),
        "peak_rss_mib": round(peak_rss_mib),
        # Other processes on the machine slow the run down; the 1-minute load average shows how busy it was.
        "load_avg_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "db_mib": round(db_bytes / 2**20),
        "ctr": round(report.ctr, 5),
        "mean_true_ctr": round(report.mean_true_ctr, 5),
        "cvr": round(report.cvr, 5),
        "report": report.to_dict(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{args.name}.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    cfg, m, v = r["config"], r["machine"], r["versions"]
    phases = ", ".join(f"{k} {t:.1f} s" for k, t in r["timings_s"].items())
    return "\n".join(
        [
            f"# Simulator benchmark ({r['date']})",
            "",
            f"`{r['command']}`",
            "",
            "| | |",
            "|---|---|",
            f"| size | {cfg['n_users']:,} users, {cfg['n_ads']:,} ads, {cfg['n_campaigns']:,} campaigns, "
            f"{cfg['n_impressions']:,} impressions |",
            f"| events written | {r['events']:,} (impressions + clicks + conversions) |",
            f"| wall time | {r['wall_s']:.1f} s ({phases}) |",
            f"| throughput | {r['events_per_s']:,} events/s end to end; {r['event_write_per_s']:,} events/s "
            "in the event phase |",
            f"| peak RSS | {r['peak_rss_mib']:,} MiB |",
            f"| SQLite file | {r['db_mib']:,} MiB |",
            f"| CTR | realised {r['ctr']:.4f}, mean true {r['mean_true_ctr']:.4f}; CVR {r['cvr']:.4f} |",
            f"| machine | {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']} |",
            f"| load average (1 min) | {r['load_avg_1m']['before']} before, {r['load_avg_1m']['after']} after |",
            f"| versions | Python {v['python']}, NumPy {v['numpy']}, SQLAlchemy {v['sqlalchemy']}, "
            f"SQLite {v['sqlite']}, adrec {v['adrec']} |",
            "",
        ]
    )


if __name__ == "__main__":
    main()
