"""A small HTTP/1.1 keep-alive load generator (asyncio streams; no client library in the way).

Run as a separate process so that it does not share the server's interpreter:
``python -m benchmarks.loadgen --url http://127.0.0.1:8000 --path '/v1/recommendations?user_id={user}&k=10'
--users users.txt --key KEY --seconds 20 --concurrency 32`` prints one JSON line: requests, errors, QPS and
latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from urllib.parse import urlsplit


async def _worker(
    host: str, port: int, paths: list[str], key: str, stop_at: float, lat: list[float], errors: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            path = rng.choice(paths)
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nConnection: keep-alive\r\n\r\n"
            t0 = time.perf_counter()
            writer.write(request.encode())
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(1)
    finally:
        writer.close()


async def run(
    url: str, paths: list[str], key: str, seconds: float, concurrency: int, warmup: float
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if warmup > 0:
        await asyncio.gather(
            *[_worker(host, port, paths, key, time.perf_counter() + warmup, [], [], i) for i in range(concurrency)]
        )
    lat: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(
        *[_worker(host, port, paths, key, start + seconds, lat, errors, 1000 + i) for i in range(concurrency)]
    )
    wall = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e3 if lat else float("nan")

    return {
        "requests": len(lat),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "qps": round(len(lat) / wall, 1),
        "p50_ms": round(pct(50), 2),
        "p90_ms": round(pct(90), 2),
        "p99_ms": round(pct(99), 2),
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", required=True, help="request path; {user} is replaced by a user id")
    parser.add_argument("--users", type=Path, default=None, help="file of user ids, one per line")
    parser.add_argument("--key", default="")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    users = args.users.read_text().split() if args.users else ["x"]
    paths = [args.path.format(user=u) for u in users]
    result = asyncio.run(run(args.url, paths, args.key, args.seconds, args.concurrency, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
