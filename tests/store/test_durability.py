"""An acknowledged write is never lost: kill a writer with SIGKILL mid-ingest and check what survived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from adrec.data.schema import EventBatch
from adrec.store import open_store

BATCH = 2_000

WRITER = textwrap.dedent(
    f"""
    import sys
    import numpy as np
    from adrec.data.schema import EventBatch
    from adrec.store import open_store

    store = open_store(sys.argv[1])
    batch_no = 0
    while True:
        ids = np.array([f"b{{batch_no:05d}}-{{i:05d}}" for i in range({BATCH})], dtype=object)
        store.append_events(EventBatch(
            event_id=ids,
            type=np.zeros({BATCH}, dtype=np.int8),
            user_id=np.full({BATCH}, f"u{{batch_no % 7}}", dtype=object),
            ad_id=np.full({BATCH}, "a1", dtype=object),
            ts=np.full({BATCH}, float(batch_no)),
        ))
        print(f"ACK {{batch_no}}", flush=True)
        batch_no += 1
    """
)


def _batch_counts(url: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    with open_store(url) as store:
        for batch in store.iter_events(batch_size=50_000):
            for eid in batch.event_id.tolist():
                b = int(eid[1:6])
                counts[b] = counts.get(b, 0) + 1
    return counts


@pytest.mark.parametrize("kill_after", [3, 11])
def test_sigkill_mid_ingest_loses_no_acknowledged_batch(store_url: str, kill_after: int) -> None:
    open_store(store_url).close()  # create the schema before the writer races to it
    acked: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, store_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) >= kill_after:
                break
        # The writer is now inside its next append (it loops without pause): kill it there.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        errors = proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL, errors
    assert len(acked) == kill_after, errors

    counts = _batch_counts(store_url)
    for b in acked:
        assert counts.get(b) == BATCH, f"acknowledged batch {b} has {counts.get(b, 0)} of {BATCH} events"
    # Nothing half-written: every batch present is complete.
    assert all(n == BATCH for n in counts.values()), counts
    assert set(counts) <= set(range(max(acked) + 2))

    if store_url.startswith("sqlite"):
        engine = create_engine(store_url)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
        engine.dispose()

    # The store is still writable after the crash, and idempotency still holds for a resent batch.
    with open_store(store_url) as store:
        resend = EventBatch(
            event_id=np.array([f"b{acked[0]:05d}-{i:05d}" for i in range(BATCH)], dtype=object),
            type=np.zeros(BATCH, dtype=np.int8),
            user_id=np.full(BATCH, "u0", dtype=object),
            ad_id=np.full(BATCH, "a1", dtype=object),
            ts=np.zeros(BATCH),
        )
        assert store.append_events(resend).inserted == 0
