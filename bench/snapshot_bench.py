"""Snapshot and restore of a stack holding 1,000,000 messages, through the real ``imctl``.

    python -m bench.snapshot_bench            # 1,000,000 messages, about a minute
    python -m bench.snapshot_bench --quick    # 100,000 messages, about 15 s

Deploys a throwaway local stack (one node), loads the messages directly in SQL (INSERT ...
SELECT generate_series: the server's send path is not what is measured here), then times
``imctl snapshot create``, ``imctl snapshot verify --deep`` and ``imctl restore --yes`` and
reads the figures each command reports. For the restore it also compares ``pg_restore -j 1``
with ``-j 2`` on the same dump in a scratch cluster.

MB/s is the database's size as PostgreSQL reports it (``pg_database_size``: tables, indexes,
TOAST) divided by the seconds, so snapshot and restore rates are comparable and do not depend
on how well the dump compresses; the dump's own size and rate are reported next to it.
Prints one JSON document (stdout) and a one-line summary (stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from cli.deadline import Deadline
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port
from cli.targets.local.snapshots.catalog import DUMP
from cli.targets.local.snapshots.pg_client import pg_restore

CONVERSATIONS = 1000
GOAL_MB_S = 50.0


def imctl(home: Path, *args: str, timeout: float = 900) -> tuple[dict[str, Any], float]:
    env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1"}
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"imctl {' '.join(args)} exited {done.returncode}: {done.stdout}")
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc, took


def _dsn(home: Path) -> str:
    d = home / "stacks" / "bench"
    secret = json.loads((d / "secrets.json").read_text())["pg_password"]
    ports = json.loads((d / "regions" / "local" / "ports.json").read_text())
    return f"postgresql://postgres:{secret}@127.0.0.1:{ports['pg']}/im"


async def load(dsn: str, messages: int) -> dict[str, Any]:
    per_conv = messages // CONVERSATIONS
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.monotonic()
        await conn.execute(
            f"""
            INSERT INTO conversations (id, kind, created_by, last_seq)
              SELECT format('d:u%s:v%s', g, g), 'direct', format('u%s', g), {per_conv}
                FROM generate_series(1, {CONVERSATIONS}) g;
            INSERT INTO members (conv, user_id)
              SELECT format('d:u%s:v%s', g, g), u || g
                FROM generate_series(1, {CONVERSATIONS}) g, unnest(ARRAY['u', 'v']) u;
            INSERT INTO messages (conv, seq, sender, cid, body)
              SELECT format('d:u%s:v%s', c, c), s, format('u%s', c), format('c%s-%s', c, s),
                     format('{{"text":"message %s in %s: %s"}}', s, c, md5((c * 1e7 + s)::text))
                FROM generate_series(1, {CONVERSATIONS}) c, generate_series(1, {per_conv}) s;
            ANALYZE;
            """
        )
        took = time.monotonic() - t0
        size = int(await conn.fetchval("SELECT pg_database_size('im')"))
        count = int(await conn.fetchval("SELECT count(*) FROM messages"))
    finally:
        await conn.close()
    return {"messages": count, "load_s": round(took, 2), "database_bytes": size}


def compare_jobs(dump: Path) -> dict[str, Any]:
    """pg_restore -j 1 and -j 2 of the same dump into a scratch cluster (fsync on, as live)."""
    base = Path(tempfile.mkdtemp(prefix="imctl-bench-"))
    base.chmod(0o711)
    pg = PgInstance(data_dir=base / "data", port=free_port(), password=secrets.token_urlsafe(12))
    out: dict[str, Any] = {}
    try:
        assert pg.password is not None
        pg.init(pg.password)
        pg.start()
        for jobs in (1, 2):
            db = f"j{jobs}"
            pg.create_database(db)
            t0 = time.monotonic()
            pg_restore(pg, db, dump, Deadline(600), jobs=jobs)
            took = time.monotonic() - t0
            size = int(pg.sql(f"SELECT pg_database_size('{db}')"))
            out[f"j{jobs}"] = {"seconds": round(took, 2), "mb_per_s": round(size / 1e6 / took, 1)}
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
    return out


def run(messages: int) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    home = Path(tempfile.mkdtemp(prefix="imctl-bench-"))
    home.chmod(0o711)  # PostgreSQL runs as an unprivileged user when we are root
    try:
        imctl(home, "deploy", "-s", "bench", "--replicas", "1", "--port", str(free_port()))
        loaded = asyncio.run(load(_dsn(home), messages))
        db_mb = loaded["database_bytes"] / 1e6

        snap, snap_wall = imctl(home, "snapshot", "create", "-s", "bench", "--note", "bench")
        dump = Path(snap["location"]) / DUMP
        verify, _ = imctl(home, "snapshot", "verify", snap["id"], "--deep", "-s", "bench")
        assert verify["ok"], verify["problems"]
        restored, restore_wall = imctl(home, "restore", snap["id"], "--yes", "-s", "bench")
        assert restored["messages"] == loaded["messages"]
        jobs = compare_jobs(dump)
        return {
            "messages": loaded["messages"],
            "conversations": CONVERSATIONS,
            "load_s": loaded["load_s"],
            "database_bytes": loaded["database_bytes"],
            "dump_bytes": snap["size_bytes"],
            "snapshot": {
                "seconds": snap["duration_s"],
                "command_wall_s": round(snap_wall, 2),
                "db_mb_per_s": round(db_mb / snap["duration_s"], 1),
                "dump_mb_per_s": round(snap["size_bytes"] / 1e6 / snap["duration_s"], 1),
            },
            "verify_deep": {
                "seconds": verify["duration_s"],
                "scratch_restore_s": verify["content"]["restore_s"],
            },
            "restore": {
                "pg_restore_s": restored["timings"]["pg_restore_s"],
                "pg_restore_db_mb_per_s": restored["restore_mb_per_s"],
                "command_wall_s": round(restore_wall, 2),
                "end_to_end_db_mb_per_s": round(db_mb / restore_wall, 1),
                "unavailable_s": restored["timings"]["unavailable_s"],
                "timings": restored["timings"],
                "goal_mb_per_s": GOAL_MB_S,
            },
            "pg_restore_jobs": jobs,
            "cpus": os.cpu_count(),
            # Other work on the machine skews every figure here; say how busy it was.
            "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        }
    finally:
        env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1"}
        subprocess.run(
            [sys.executable, "-m", "cli.main", "destroy", "-s", "bench", "--yes"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def summary_line(r: dict[str, Any]) -> str:
    s, rs = r["snapshot"], r["restore"]
    return (
        f"snapshot_bench: {r['messages']} messages ({r['database_bytes'] / 1e6:.0f} MB in "
        f"PostgreSQL, dump {r['dump_bytes'] / 1e6:.0f} MB): snapshot {s['seconds']:.2f}s "
        f"({s['db_mb_per_s']} MB/s); restore pg_restore {rs['pg_restore_s']:.2f}s "
        f"({rs['pg_restore_db_mb_per_s']} MB/s, goal {GOAL_MB_S:.0f}), whole command "
        f"{rs['command_wall_s']:.1f}s ({rs['end_to_end_db_mb_per_s']} MB/s), nodes unavailable "
        f"{rs['unavailable_s']:.1f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.snapshot_bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="100,000 messages instead of 1,000,000")
    p.add_argument("--messages", type=int, default=None, help="override the message count")
    a = p.parse_args(argv)
    messages = a.messages or (100_000 if a.quick else 1_000_000)
    result = run(messages)
    print(json.dumps(result, indent=2))
    print(summary_line(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
