"""Taking a snapshot: pg_dump and the content digest from the same exported snapshot, then the
manifest, written last."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.deadline import Deadline
from cli.errors import ResourceFailure
from cli.progress import Step
from cli.snapshots import (
    MANIFEST_FORMAT,
    ContentDigest,
    CreateResult,
    manifest_digest,
    torn_conversations,
)
from cli.state import file_sha256, write_atomic
from cli.targets.local.postgres import PgInstance, pg_bin
from cli.targets.local.runtime import DATABASE
from cli.targets.local.snapshots.catalog import DUMP, MANIFEST, Catalog
from cli.targets.local.snapshots.pg_client import client_env, conn_args, fetch_digest

FORMAT = "pg_dump-custom"
# The wheel's pg_dump has zlib only (no lz4/zstd). Level 1 measured twice as fast as the
# default level 6 on 1M messages for 7% more bytes; the dump is CPU-bound on compression.
COMPRESSION = "gzip:1"


def new_snapshot_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _consistent_dump(pg: PgInstance, out: Path) -> tuple[ContentDigest, int, str, str]:
    """pg_dump and the content digest from the same instant, while sends go on.

    The transaction exports its snapshot and stays open until pg_dump has finished: pg_dump
    reads through ``--snapshot`` exactly what this transaction sees, and the digest is computed
    here, meanwhile, from the same snapshot. Returns (digest, database bytes, server version,
    the instant the snapshot describes as ISO 8601 UTC).
    """
    import asyncpg

    conn = await asyncpg.connect(pg.dsn(DATABASE), timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The transaction's snapshot is taken by its first statement: this one.
            snapshot, taken = await conn.fetchrow(
                "SELECT pg_export_snapshot(), clock_timestamp() AT TIME ZONE 'UTC'"
            )
            argv = [
                str(pg_bin("pg_dump", pg.bin_dir)),
                "-Fc",
                "-Z",
                COMPRESSION,
                f"--snapshot={snapshot}",
                "-f",
                str(out),
                *conn_args(pg, DATABASE),
            ]
            with tempfile.TemporaryFile("w+") as err:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=client_env(pg.password),
                    start_new_session=True,
                )
                try:
                    digest = await fetch_digest(conn)
                    size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
                    version = str(await conn.fetchval("SHOW server_version"))
                    code = await proc.wait()
                finally:
                    if proc.returncode is None:  # cancelled (timeout, Ctrl-C): stop pg_dump too
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
                if code != 0:
                    err.seek(0)
                    raise ResourceFailure(f"pg_dump failed (exit {code}): {err.read().strip()}")
    finally:
        await conn.close()
    stamp = taken.replace(tzinfo=UTC).isoformat(timespec="milliseconds")
    return digest, size, version, stamp


def _pg_dump_version() -> str:
    out = subprocess.run(
        [str(pg_bin("pg_dump")), "--version"], capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip()


def create(catalog: Catalog, note: str | None, deadline: Deadline, progress: Step) -> CreateResult:
    t0 = time.monotonic()
    cfg, region = catalog.primary()
    pg = catalog.running_pg(region)
    catalog.clean_incomplete()
    snapshot_id = new_snapshot_id()
    path = catalog.root / snapshot_id
    catalog.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700)  # every message of the stack is in here
    try:
        deadline.check("before the dump")
        dump = path / DUMP
        with progress(f"dumping region {region.cfg.name} (pg_dump -Fc from an exported snapshot)"):
            try:
                digest, db_bytes, version, created_at = asyncio.run(
                    asyncio.wait_for(_consistent_dump(pg, dump), deadline.remaining())
                )
            except TimeoutError:
                raise deadline.error("while dumping; the partial snapshot was removed") from None
        torn = torn_conversations(digest)
        if torn:  # cannot happen with a consistent dump; refuse to store one that is torn
            raise ResourceFailure("the dump is inconsistent: " + "; ".join(torn))
        deadline.check("before writing the manifest; the partial snapshot was removed")
        with progress("checksumming and writing the manifest"):
            _fsync(dump)
            size = dump.stat().st_size
            manifest: dict[str, Any] = {
                "format_version": MANIFEST_FORMAT,
                "id": snapshot_id,
                "created_at": created_at,
                "stack": cfg.stack,
                "cloud": "local",
                "region": region.cfg.name,
                "database": DATABASE,
                "postgresql": {"server_version": version, "pg_dump": _pg_dump_version()},
                "format": FORMAT,
                "compression": COMPRESSION,
                "note": note,
                "files": [{"name": DUMP, "size": size, "sha256": file_sha256(dump)}],
                "size_bytes": size,
                "database_bytes": db_bytes,
                "messages": digest.messages,
                "content": digest.to_json(),
            }
            manifest["manifest_sha256"] = manifest_digest(manifest)
            # Last, and atomically: a snapshot exists exactly when its manifest does.
            write_atomic(path / MANIFEST, json.dumps(manifest, indent=1) + "\n", mode=0o600)
            _fsync(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return CreateResult(
        snapshot=catalog.info(path, manifest),
        conversations=len(digest.conversations),
        duration_s=round(time.monotonic() - t0, 3),
        database_bytes=db_bytes,
    )
