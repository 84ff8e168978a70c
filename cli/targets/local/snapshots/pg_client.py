"""The PostgreSQL client side of snapshots: pg_restore bounded by the deadline, the content
digest read from one MVCC snapshot, and throwaway clusters removed again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.deadline import Deadline
from cli.errors import ImctlError, ResourceFailure
from cli.snapshots import DIGEST_SQL, MEMBERS_SQL, ContentDigest
from cli.targets.local.postgres import PgInstance, pg_bin


def restore_jobs() -> int:
    # pg_restore -j: table data loads and index builds in parallel; more workers than cores
    # only adds contention.
    return max(1, min(4, os.cpu_count() or 1))


def client_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password:
        env["PGPASSWORD"] = password  # not in argv, where ps would show it
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def conn_args(pg: PgInstance, database: str) -> list[str]:
    return ["-h", pg.host, "-p", str(pg.port), "-U", "postgres", "-d", database]


def _run_client(argv: Sequence[str], env: dict[str, str], deadline: Deadline, what: str) -> None:
    """Run a PostgreSQL client binary (pg_restore) as ourselves, bounded by the deadline.

    Its own process group: pg_restore -j forks workers, and a timeout must stop all of them.
    """
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            text=True,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=max(0.01, deadline.remaining()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise deadline.error(what) from None
        except BaseException:  # Ctrl-C: do not leave workers writing into a cluster we remove
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        if code != 0:
            err.seek(0)
            raise ResourceFailure(f"{what} failed (exit {code}): {err.read().strip()[-2000:]}")


def pg_restore(
    pg: PgInstance, database: str, dump: Path, deadline: Deadline, jobs: int | None = None
) -> None:
    argv = [
        str(pg_bin("pg_restore", pg.bin_dir)),
        "--exit-on-error",
        "-j",
        str(jobs or restore_jobs()),
        *conn_args(pg, database),
        str(dump),
    ]
    _run_client(argv, client_env(pg.password), deadline, "pg_restore")


async def fetch_digest(conn: Any) -> ContentDigest:
    convs = await conn.fetch(DIGEST_SQL)
    members = await conn.fetchrow(MEMBERS_SQL)
    return ContentDigest.from_rows(convs, members)


async def _digest(dsn: str) -> tuple[ContentDigest, int]:
    """The content digest of a database and its size, read from one MVCC snapshot."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            digest = await fetch_digest(conn)
            size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()
    return digest, size


def digest(pg: PgInstance, database: str, deadline: Deadline) -> tuple[ContentDigest, int]:
    try:
        return asyncio.run(asyncio.wait_for(_digest(pg.dsn(database)), deadline.remaining()))
    except TimeoutError:
        raise deadline.error("while computing the content digest") from None


def discard_running(pg: PgInstance) -> None:
    try:
        pg.stop(timeout=30)
    except ImctlError:
        pg.kill9()


def discard(pg: PgInstance) -> None:
    """Stop (if running) and delete a cluster we created; its log stays, for the post-mortem."""
    if pg.data_dir.exists():
        discard_running(pg)
        shutil.rmtree(pg.data_dir, ignore_errors=True)
