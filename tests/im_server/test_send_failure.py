"""ack = committed, also when the commit fails: a send whose transaction did not commit gets a
retryable ``unavailable`` error and no ack, leaves no row, and the same cid sent again later is
committed and acked normally (not as a duplicate of something that never was)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from im_server.errors import ErrorCode, UnavailableError
from im_server.store import SendItem, SendResult
from tests.im_server.conftest import Running


async def _frames_until(
    ws: aiohttp.ClientWebSocketResponse, cid: str, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Every frame up to and including the first ack or error for ``cid``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = orjson.loads((await ws.receive()).data)
            seen.append(frame)
            if frame.get("cid") == cid and frame["type"] in ("ack", "error"):
                return seen


async def _quiet_for(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    """Frames arriving within ``seconds`` (a late ack would show up here)."""
    got = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(orjson.loads((await ws.receive()).data))
    except TimeoutError:
        pass
    return got


async def test_a_send_whose_commit_failed_is_not_acked_and_its_resend_is(
    im: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = im.server.store
    real = store.send_batch
    failed: list[int] = []

    async def commit_fails_once(items: Sequence[SendItem]) -> list[SendResult]:
        if failed:
            return await real(items)
        failed.append(len(items))
        # The batch's statement runs, its rows are inserted, and then the transaction fails
        # before COMMIT (as a lost connection or a failed fsync would): the rollback removes
        # them, so an ack here would promise a message that does not exist.
        async with store.pool.acquire() as conn, conn.transaction():
            await conn.fetch(
                "SELECT * FROM im_send_batch($1, $2, $3, $4)",
                [i.sender for i in items],
                [i.cid for i in items],
                [i.conv for i in items],
                [i.body for i in items],
            )
            raise UnavailableError(ErrorCode.UNAVAILABLE, "database unavailable; retry")

    monkeypatch.setattr(store, "send_batch", commit_fails_once)
    send = {"type": "send", "cid": "c-1", "to": "bob", "body": {"text": "hello"}}
    async with aiohttp.ClientSession() as http, http.ws_connect(im.url) as ws:
        await ws.send_str(orjson.dumps({"type": "hello", "token": im.token("alice")}).decode())
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"

        await ws.send_str(orjson.dumps(send).decode())
        frames = await _frames_until(ws, "c-1")
        frames += await _quiet_for(ws, 0.5)
        assert failed == [1], "the failing commit was not reached"
        answers = [f for f in frames if f.get("cid") == "c-1"]
        assert [f["type"] for f in answers] == ["error"], frames  # no ack, before or after
        assert answers[0]["code"] == "unavailable" and answers[0]["retryable"] is True

        conn = await asyncpg.connect(im.settings.database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM messages") == 0
            assert await conn.fetchval("SELECT count(*) FROM conversations") == 0

            await ws.send_str(orjson.dumps(send).decode())  # the client's retry, same cid
            ack = (await _frames_until(ws, "c-1"))[-1]
            assert ack["type"] == "ack" and ack["seq"] == 1, ack
            assert "duplicate" not in ack  # committed now, for the first time
            rows = await conn.fetch("SELECT cid, seq, body FROM messages")
        finally:
            await conn.close()
    assert [(r["cid"], r["seq"]) for r in rows] == [("c-1", 1)]
    assert orjson.loads(rows[0]["body"]) == {"text": "hello"}
