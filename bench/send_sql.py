"""The send path's SQL alone: ``Store.send_batch`` per send, against the first version of
``im_send_batch`` (migration 0001's loop) as the baseline, in the same run and database.

    python -m bench.send_sql            # 400 batches of 50 per round, 3 rounds, about 10 s
    python -m bench.send_sql --quick    # 100 batches per round

One PostgreSQL cluster (fsync on, as live), one connection pool, 50 direct conversations that
already exist (the usual case), each batch one send per conversation. The baseline function is
0001's text installed under another name; the two are timed in alternating rounds so a noisy
machine affects both alike, and the figure is the median over rounds. What it measures is the
database's share of a send (and asyncpg's), not the server: bench/im_load measures that.
Prints one JSON document (stdout) and a one-line summary (stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port
from im_server.migrate import migrate
from im_server.store import SendItem, Store

BATCH = 50
ROUNDS = 3


def baseline_sql() -> str:
    """0001's ``im_send_batch`` as ``im_send_batch_0001``."""
    text = resources.files("im_server.migrations").joinpath("0001_init.sql").read_text("utf-8")
    match = re.search(r"CREATE FUNCTION im_send_batch\(.*?\n\$\$;\n", text, re.S)
    assert match is not None, "0001_init.sql no longer defines im_send_batch"
    return match.group(0).replace("im_send_batch(", "im_send_batch_0001(", 1)


class Sender:
    def __init__(self, store: Store, function: str) -> None:
        self.store, self.function, self.n = store, function, 0

    def items(self) -> list[SendItem]:
        out = []
        for i in range(BATCH):
            out.append(SendItem(f"u{i}", f"{self.function}-{self.n}", f"d:u{i}:v{i}", '"hi"'))
            self.n += 1
        return out

    async def batches(self, count: int) -> float:
        """Seconds per send over ``count`` batches."""
        query = f"SELECT * FROM {self.function}($1, $2, $3, $4)"
        t0 = time.perf_counter()
        for _ in range(count):
            items = self.items()
            async with self.store.pool.acquire() as conn:
                rows = await conn.fetch(
                    query,
                    [i.sender for i in items],
                    [i.cid for i in items],
                    [i.conv for i in items],
                    [i.body for i in items],
                )
            assert [r["status"] for r in rows] == ["ok"] * BATCH
        return (time.perf_counter() - t0) / (count * BATCH)


async def measure(dsn: str, batches: int) -> dict[str, Any]:
    await migrate(dsn)
    store = await Store.connect(dsn)
    try:
        async with store.pool.acquire() as conn:
            await conn.execute(baseline_sql())
        current, baseline = Sender(store, "im_send_batch"), Sender(store, "im_send_batch_0001")
        for sender in (current, baseline):  # conversations exist, plans are cached
            await sender.batches(10)
        times: dict[str, list[float]] = {"current": [], "baseline": []}
        for _ in range(ROUNDS):
            times["baseline"].append(await baseline.batches(batches))
            times["current"].append(await current.batches(batches))
    finally:
        await store.close()
    us = {k: round(statistics.median(v) * 1e6, 1) for k, v in times.items()}
    return {
        "batch": BATCH,
        "batches_per_round": batches,
        "rounds": ROUNDS,
        "us_per_send": us,
        "all_rounds_us": {k: [round(t * 1e6, 1) for t in v] for k, v in times.items()},
        "ratio": round(us["current"] / us["baseline"], 2),
    }


def run(batches: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="imctl-bench-"))
    base.chmod(0o711)  # PostgreSQL runs as an unprivileged user when we are root
    pg = PgInstance(data_dir=base / "data", port=free_port(), password=secrets.token_urlsafe(12))
    try:
        assert pg.password is not None
        pg.init(pg.password)
        pg.start()
        pg.create_database("bench")
        return asyncio.run(measure(pg.dsn("bench"), batches))
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def summary_line(r: dict[str, Any]) -> str:
    us = r["us_per_send"]
    return (
        f"send_sql: {us['current']} us per send vs {us['baseline']} for 0001's loop"
        f" ({r['ratio']}x), batches of {r['batch']}, median of {r['rounds']} rounds"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.send_sql", description=__doc__)
    p.add_argument("--quick", action="store_true", help="100 batches per round instead of 400")
    a = p.parse_args(argv)
    result = run(100 if a.quick else 400)
    print(json.dumps(result, indent=2))
    print(summary_line(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
