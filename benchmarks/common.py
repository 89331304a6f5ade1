"""Shared helpers of the benchmarks: the machine they ran on, and writing results as JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and Python/OS versions of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in ("adrec", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, payload: dict[str, Any], table_md: str, *, packages: tuple[str, ...] = ()) -> Path:
    """Write ``results/NAME.json`` and ``results/NAME.md`` with the command, machine, versions and date."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(*packages),
        **payload,
    }
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    m = record["machine"]
    md = [
        f"# Benchmark: {name}",
        "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}",
        f"- machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB, Python {m['python']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}",
        "",
        table_md.strip(),
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    return json_path
