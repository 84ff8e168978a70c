"""Putting restored data into service: drain the nodes, switch the data directories, start again
and smoke-test a send; a switch that fails puts the old data back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.errors import ResourceFailure, SmokeTestFailed
from cli.progress import Step
from cli.targets.local.postgres import PgInstance
from cli.targets.local.runtime import Region
from cli.targets.local.snapshots.catalog import PREVIOUS_PREFIX
from cli.targets.local.snapshots.pg_client import discard, discard_running

SMOKE_TIMEOUT = 30.0


@contextlib.contextmanager
def no_progress(_message: str) -> Iterator[None]:
    yield


def _quiet(_message: str) -> None:
    """Region methods report sub-steps; the restore's own progress lines already cover them."""


async def _smoke(url: str, jwt_secret: str, dsn: str, timeout: float) -> dict[str, Any]:
    """Log in as a throwaway user, send one message, wait for its ack; then delete that
    conversation again, so the stack serves exactly the snapshot's content."""
    import asyncpg

    from im_server import auth
    from im_server.client import Client

    tag = secrets.token_hex(4)
    sender, peer = f"imctl-smoke-{tag}-a", f"imctl-smoke-{tag}-b"
    t0 = time.monotonic()
    async with Client(url, auth.mint(jwt_secret, sender, 300)) as client:
        ack = await client.send({"imctl": "restore smoke test"}, to=peer, timeout=timeout)
    took = time.monotonic() - t0
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("DELETE FROM conversations WHERE id = $1", ack.conv)
    finally:
        await conn.close()
    return {"user": sender, "conv": ack.conv, "seq": ack.seq, "ack_ms": round(took * 1000, 1)}


def drain(region: Region, progress: Step) -> list[str]:
    nodes = region.node_ids()
    if not nodes:
        return []
    with (
        progress(f"draining im-server {', '.join(nodes)} (clients are told to reconnect)"),
        ThreadPoolExecutor(max_workers=len(nodes)) as pool,
    ):
        clean = list(pool.map(region.stop_node, nodes))
    return [n for n, ok in zip(nodes, clean, strict=True) if not ok]


def start_nodes(region: Region, progress: Step) -> None:
    with progress(f"starting {region.cfg.replicas} im-server node(s)"):
        region.ensure_bus(_quiet)
        region.ensure_nodes(region.cfg.replicas, _quiet)


def migrate_schema(region: Region) -> None:
    # A snapshot from an older imctl gets this version's schema, as a deploy would apply.
    from im_server.migrate import migrate

    asyncio.run(migrate(region.dsn()))


def switch(
    region: Region, staging: PgInstance, snapshot_id: str, progress: Step
) -> tuple[Path, dict[str, float], list[str]]:
    """Drain, stop the live PostgreSQL, swap data directories, start, restart the nodes.
    A failure before the nodes are back puts the old data back into service."""
    live = region.pg()
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    previous = live.data_dir.with_name(f"{PREVIOUS_PREFIX}{snapshot_id}-{stamp}")
    t0 = time.monotonic()
    killed = drain(region, progress)
    moved = False
    try:
        with progress("stopping the current PostgreSQL and switching data directories"):
            live.stop()
            os.rename(live.data_dir, previous)
            moved = True
            os.rename(staging.data_dir, live.data_dir)
        with progress(f"starting PostgreSQL on the restored data (port {live.port})"):
            # start() rewrites imctl.conf: the region's port and socket directory come back
            live.start()
            migrate_schema(region)
        start_nodes(region, progress)
    except BaseException as exc:
        _roll_back(region, previous if moved else None, staging, exc)
        raise
    return previous, {"unavailable_s": round(time.monotonic() - t0, 3)}, killed


def _roll_back(
    region: Region, previous: Path | None, staging: PgInstance, cause: BaseException
) -> None:
    live = region.pg()
    try:
        discard_running(live)
        if previous is not None and previous.exists():
            if live.data_dir.exists():
                os.rename(live.data_dir, staging.data_dir)
            os.rename(previous, live.data_dir)
        live.start()
        region.ensure_bus(_quiet)
        region.ensure_nodes(region.cfg.replicas, _quiet)
    except Exception as exc:
        raise ResourceFailure(
            f"the switch failed ({cause}) and so did putting the old data back ({exc})",
            f"the old data is in {previous or live.data_dir}; move it to {live.data_dir} "
            "and run `imctl deploy`",
        ) from exc
    finally:
        discard(staging)


def smoke_test(
    region: Region, previous: Path | None, progress: Step, timings: dict[str, float]
) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{region.cfg.port}/ws"
    t0 = time.monotonic()
    try:
        with progress(f"smoke test: log in and send one message through {url}"):
            smoke = asyncio.run(
                asyncio.wait_for(
                    _smoke(url, region.secrets.jwt_secret, region.dsn(), SMOKE_TIMEOUT),
                    SMOKE_TIMEOUT + 5,
                )
            )
    except Exception as exc:
        where = f"; the data it replaced is kept in {previous}" if previous else ""
        raise SmokeTestFailed(
            f"the restored data is in service but the smoke test failed: {exc!r}{where}",
            "check `imctl status` and `imctl logs`; the runbook (Snapshots and restore) "
            "says how to switch back",
        ) from exc
    timings["smoke_s"] = round(time.monotonic() - t0, 3)
    return smoke
