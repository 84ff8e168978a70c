"""Continuous backup and point-in-time restore on the local target, through the real ``imctl``.

    python -m bench.pitr_bench                   # everything: 1,000,000 messages, 3 kill -9 each
    python -m bench.pitr_bench --quick           # 100,000 messages, 1 kill -9 each

Phases, each on a throwaway stack (one im-server node):

- **restore**: 1,000 conversations x 1,000 messages loaded in SQL (as bench.snapshot_bench
  does) after the deploy's base backup, so ``imctl restore --to-time latest`` replays all of
  it from WAL; then again after ``imctl backup base`` (the data in the base backup, little to
  replay). MB/s is the database's size (``pg_database_size``) per second of recovery, and the
  WAL replayed per second.
- **wal**: WAL written per 1,000 messages sent through the server (64-byte bodies, 50
  connections, 8 sends in flight each), from ``pg_current_wal_lsn``.
- **throughput**: acked sends/s of that closed loop for 4 s with archiving off, async and sync,
  interleaved, in the same run (ratios, not absolutes: the machine is shared).
- **rpo**: the same loop, ``kill -9`` of PostgreSQL 2 s in, then ``restore --to-time latest``;
  counts acked messages missing after the restore, per archiving mode.

Prints one JSON document (stdout) and a summary (stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.snapshot_bench import _dsn, imctl, load
from cli.targets.local.procs import free_port

SENDERS = 50
IN_FLIGHT = 8


def _home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="imctl-pitr-bench-"))
    home.chmod(0o711)
    return home


def _destroy(home: Path) -> None:
    import subprocess

    env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1"}
    subprocess.run(
        [sys.executable, "-m", "cli.main", "destroy", "-s", "bench", "--yes", "--delete-snapshots"],
        env=env, capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)


def _deploy(home: Path, archiving: str) -> str:
    doc, _ = imctl(home, "deploy", "-s", "bench", "--replicas", "1", "--port", str(free_port()),
                   "--archiving", archiving)  # fmt: skip
    url: str = doc["endpoint"]
    return url


def _wait_archived(home: Path, limit: float = 300) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        doc, _ = imctl(home, "backup", "status", "-s", "bench")
        if doc["archiver"]["lag_bytes"] == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the archiver did not catch up")


async def _wal_lsn(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    finally:
        await conn.close()


def restore_phase(messages: int) -> dict[str, Any]:
    home = _home()
    try:
        _deploy(home, "async")
        dsn = _dsn(home)
        before = asyncio.run(_wal_lsn(dsn))
        loaded = asyncio.run(load(dsn, messages))
        wal_bytes = asyncio.run(_wal_lsn(dsn)) - before
        _wait_archived(home)
        out: dict[str, Any] = {"messages": loaded["messages"], "database_bytes":
                               loaded["database_bytes"], "wal_bytes_loaded": wal_bytes}  # fmt: skip
        db_mb = loaded["database_bytes"] / 1e6
        for label in ("replay_all", "after_backup_base"):
            if label == "after_backup_base":
                imctl(home, "backup", "base", "-s", "bench")
            doc, wall = imctl(home, "restore", "--to-time", "latest", "--yes", "-s", "bench")
            assert doc["messages"] == loaded["messages"], doc["messages"]
            t = doc["timings"]
            out[label] = {
                "unpack_s": t["unpack_s"],
                "recovery_s": t["recovery_s"],
                "db_mb_per_s_recovery": round(db_mb / t["recovery_s"], 1),
                "wal_mb_per_s": round(wal_bytes / 1e6 / t["recovery_s"], 1)
                if label == "replay_all" else None,
                "unavailable_s": t["unavailable_s"],
                "command_wall_s": round(wall, 2),
                "end_to_end_db_mb_per_s": round(db_mb / wall, 1),
            }  # fmt: skip
            _wait_archived(home)
        return out
    finally:
        _destroy(home)


async def _loop(url: str, secret: str, seconds: float, acked: list[tuple[str, int]]) -> float:
    """SENDERS connections, IN_FLIGHT sends each, for ``seconds``; acked sends are appended
    as they come back. Returns acked/s. Errors end a sender (a killed database)."""
    from im_server import auth
    from im_server.client import Client

    stop = time.monotonic() + seconds
    # After a kill -9 the SDK fails the sends in flight of every lane; nobody awaits those.
    asyncio.get_running_loop().set_exception_handler(lambda _loop, _ctx: None)

    async def sender(i: int) -> None:
        try:
            async with Client(url, auth.mint(secret, f"b{i}", 600), reconnect=False) as c:

                async def lane() -> None:
                    while time.monotonic() < stop:
                        ack = await c.send({"p": "x" * 48}, to=f"r{i}", timeout=5)
                        acked.append((ack.conv, ack.seq))

                await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        except Exception:
            return

    t0 = time.monotonic()
    await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    return len(acked) / (time.monotonic() - t0)


def _secret(home: Path) -> str:
    doc = json.loads((home / "stacks" / "bench" / "secrets.json").read_text())
    return str(doc["jwt_secret"])


def throughput_phase(seconds: float, rounds: int) -> dict[str, Any]:
    """Archiving off, async and sync, each its own stack, interleaved rounds."""
    homes = {m: _home() for m in ("off", "async", "sync")}
    try:
        urls = {m: _deploy(h, m) for m, h in homes.items()}
        per: dict[str, list[float]] = {m: [] for m in homes}
        wal: dict[str, float] = {}
        for _ in range(rounds):
            for mode, home in homes.items():
                dsn = _dsn(home)
                before = asyncio.run(_wal_lsn(dsn))
                acked: list[tuple[str, int]] = []
                per[mode].append(round(asyncio.run(_loop(urls[mode], _secret(home), seconds,
                                                         acked)), 1))  # fmt: skip
                wal[mode] = round((asyncio.run(_wal_lsn(dsn)) - before) / len(acked) * 1000)
        best = {m: max(v) for m, v in per.items()}
        return {
            "acked_per_s": per,
            "best": best,
            "ratio_to_off": {m: round(best[m] / best["off"], 3) for m in best},
            "wal_bytes_per_1000_messages": wal,
        }
    finally:
        for h in homes.values():
            _destroy(h)


def rpo_phase(kills: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("async", "sync"):
        lost: list[int] = []
        for _ in range(kills):
            home = _home()
            try:
                url = _deploy(home, mode)
                acked: list[tuple[str, int]] = []
                pid_file = home / "stacks" / "bench" / "regions" / "local" / "pg" / "data"
                pid = int((pid_file / "postmaster.pid").read_text().split()[0])

                asyncio.run(_run_and_kill(url, _secret(home), pid, acked))
                imctl(home, "restore", "--to-time", "latest", "--yes", "-s", "bench")
                have = asyncio.run(_present(_dsn(home), acked))
                lost.append(len(acked) - have)
                out.setdefault(f"{mode}_acked", []).append(len(acked))
            finally:
                _destroy(home)
        out[f"{mode}_lost"] = lost
    return out


async def _run_and_kill(url: str, secret: str, pid: int, acked: list[tuple[str, int]]) -> None:
    loop = asyncio.create_task(_loop(url, secret, 4.0, acked))
    await asyncio.sleep(2.0)
    os.kill(pid, signal.SIGKILL)
    await loop


async def _present(dsn: str, acked: list[tuple[str, int]]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT conv, seq FROM messages")
    finally:
        await conn.close()
    have = {(r["conv"], r["seq"]) for r in rows}
    return sum(1 for a in acked if a in have)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pitr_bench", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--phases", default="restore,throughput,rpo")
    a = p.parse_args(argv)
    phases = a.phases.split(",")
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
    if "restore" in phases:
        result["restore"] = restore_phase(100_000 if a.quick else 1_000_000)
    if "throughput" in phases:
        result["throughput"] = throughput_phase(4.0, 1 if a.quick else 3)
    if "rpo" in phases:
        result["rpo"] = rpo_phase(1 if a.quick else 3)
    result["load_average_1m_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
