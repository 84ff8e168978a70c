"""A stalled database: /readyz says so within 5 s, and a send is answered within the send
timeout with a code that does not claim "nothing committed" when the commit was under way."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import aiohttp
import asyncpg
import orjson
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.targets.local.postgres import PgInstance
from im_server.migrate import migrate
from im_server.store import SendItem, Store
from tests.im_server.conftest import Running, node_settings, start_node, stop_node
from tests.im_server.test_bad_input import _login

pytestmark = pytest.mark.slow

SEND_TIMEOUT = 2.0
WS = aiohttp.ClientWebSocketResponse


@contextmanager
def frozen(pg: PgInstance) -> Iterator[None]:
    """SIGSTOP the postmaster and every backend: the database hangs, sockets stay open."""
    pid = pg.pid()
    assert pid is not None
    root = psutil.Process(pid)
    family = [root, *root.children(recursive=True)]
    for p in family:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in family:
            with suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)


@pytest.fixture
async def node(pg_factory: Callable[..., PgInstance]) -> AsyncIterator[tuple[Running, PgInstance]]:
    # A cluster of its own: the tests freeze it and kill its backends.
    pg = pg_factory()
    pg.create_database("im")
    dsn = pg.dsn("im")
    await migrate(dsn)
    n = await start_node(node_settings(dsn, send_timeout=SEND_TIMEOUT), "n")
    yield n, pg
    await stop_node(n)


async def _readyz(http: aiohttp.ClientSession, n: Running) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{n.http}/readyz") as r:
        return r.status, await r.json()


async def _frame_for(
    ws: aiohttp.ClientWebSocketResponse, cid: str, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        m = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        f = orjson.loads(m.data)
        if f.get("cid") == cid:
            return dict(f)


async def _rows(dsn: str, cid: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM messages WHERE cid = $1", cid))
    finally:
        await conn.close()


async def test_frozen_database_is_not_ready_and_sends_are_answered(
    node: tuple[Running, PgInstance],
) -> None:
    n, pg = node
    async with aiohttp.ClientSession() as http:
        for _ in range(50):  # the first probe runs at start; wait for it to say ok
            status, body = await _readyz(http, n)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert body["database"] == "up" and body["writes"] == "ok", body
        ws = await _login(http, n, "alice")
        with frozen(pg):
            t0 = time.monotonic()
            await ws.send_str(
                orjson.dumps({"type": "send", "cid": "c1", "to": "bob", "body": {"n": 1}}).decode()
            )
            err = await _frame_for(ws, "c1", SEND_TIMEOUT + 3)
            answered = time.monotonic() - t0
            # Whether the batch reached the frozen database or not, the answer never claims
            # "committed" and never comes after the send timeout (plus its check period).
            assert err["type"] == "error" and err["retryable"], err
            assert err["code"] in ("outcome_unknown", "unavailable"), err
            assert answered <= SEND_TIMEOUT + 1, answered
            deadline = time.monotonic() + 5
            while (await _readyz(http, n))[0] == 200:
                assert time.monotonic() < deadline, "a frozen database was reported ready for 5 s"
                await asyncio.sleep(0.2)
            status, body = await _readyz(http, n)
            assert status == 503 and body["database"] == "down", body
        # Thawed: the same cid resent is committed exactly once.
        deadline = time.monotonic() + 10
        while True:
            await ws.send_str(
                orjson.dumps({"type": "send", "cid": "c1", "to": "bob", "body": {"n": 1}}).decode()
            )
            f = await _frame_for(ws, "c1", 10)
            if f["type"] == "ack":
                break
            assert time.monotonic() < deadline, f
            await asyncio.sleep(0.3)
        assert f["seq"] == 1
        assert await _rows(pg.dsn("im"), "c1") == 1
        await ws.close()


async def test_a_connection_lost_mid_commit_is_outcome_unknown_not_unavailable(
    node: tuple[Running, PgInstance],
) -> None:
    """The statement reached the server and the connection broke: it may have committed, so
    'unavailable' (documented as: nothing committed) would be a lie."""
    n, pg = node
    store: Store = n.server.store
    item = SendItem("alice", "c2", "d:alice:bob", '{"n":2}')

    async def kill_backends_soon() -> None:
        await asyncio.sleep(0.3)
        admin = await asyncpg.connect(pg.dsn("im"))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND query LIKE '%im_send_batch%'"
            )
        finally:
            await admin.close()

    # Hold the conversation row lock so the send's statement is in flight when it is killed.
    blocker = await asyncpg.connect(pg.dsn("im"))
    try:
        await store.send_batch([SendItem("alice", "c0", "d:alice:bob", '{"n":0}')])
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT * FROM conversations WHERE id = 'd:alice:bob' FOR UPDATE")
        killer = asyncio.create_task(kill_backends_soon())
        with pytest.raises(Exception) as info:
            await store.send_batch([item])
        await killer
    finally:
        await blocker.close()
    assert getattr(info.value, "code", None) == "outcome_unknown", info.value
