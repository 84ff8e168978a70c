"""SIGTERM on a real ``im-server serve`` process: readiness off, reconnect, in-flight sends
finish, close 1012, exit 0 -- and nothing acked is lost, nothing refused is committed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from im_server import auth
from im_server.migrate import migrate
from tests.im_server.cluster import Node


async def _start_node(dsn: str, tmp: Path, secret: str, grace: float) -> tuple[Any, int]:
    env = {
        **os.environ,
        "IM_DATABASE_URL": dsn,
        "IM_JWT_SECRET": secret,
        "IM_DRAIN_GRACE_SECONDS": str(grace),
        "IM_RECONNECT_JITTER_MS": "100",
    }
    node = Node("drain", 0, env, tmp / "node.port")  # port 0: the bound port is in the file
    await node.start()
    return node.proc, int(node.ready_file.read_text())


async def test_sigterm_drains_without_losing_acked_sends(fresh_dsn: str, tmp_path: Path) -> None:
    await migrate(fresh_dsn)
    secret = secrets.token_urlsafe(24)
    proc, port = await _start_node(fresh_dsn, tmp_path, secret, grace=5.0)
    url = f"ws://127.0.0.1:{port}/ws"
    acked: set[str] = set()
    refused: set[str] = set()
    unexpected: list[dict[str, Any]] = []  # frames a draining node must not send
    readyz: list[tuple[int, Any]] = []  # /readyz as seen right after the reconnect frame
    reconnects: list[int] = []
    last: aiohttp.WSMessage | None = None
    close_code: int | None = None
    session_failed: BaseException | None = None
    exit_code: int | None = None
    try:
        # Everything the session shows is recorded, and checked only after the data: a wrong
        # close code or a stuck drain must not hide whether what was acked was committed.
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url)
                hello = {"type": "hello", "token": auth.mint(secret, "alice")}
                await ws.send_str(orjson.dumps(hello).decode())
                assert (await ws.receive_json())["type"] == "welcome"
                # Pipeline sends and signal in the middle of the stream.
                for i in range(300):
                    frame = {"type": "send", "cid": f"c{i}", "to": "bob", "body": {"i": i}}
                    await ws.send_str(orjson.dumps(frame).decode())
                    if i == 150:
                        proc.send_signal(signal.SIGTERM)
                while True:
                    last = await ws.receive(timeout=10)
                    if last.type != aiohttp.WSMsgType.TEXT:
                        break
                    f = orjson.loads(last.data)
                    if f["type"] == "ack":
                        acked.add(f["cid"])
                    elif f["type"] == "error":
                        refused.add(f["cid"])
                        if f["code"] != "draining" or f["retryable"] is not True:
                            unexpected.append(f)
                    elif f["type"] == "reconnect":
                        reconnects.append(f["after_ms"])
                        # A draining node is not ready, and refuses new sessions.
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                            readyz.append((r.status, (await r.json()).get("draining")))
                close_code = ws.close_code
        except Exception as exc:  # checked below, after the data
            session_failed = exc
        with contextlib.suppress(TimeoutError):
            exit_code = await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # The data, whatever the session looked like. No send was answered twice. Frames the node
    # had not read when it closed got no answer at all: they were not committed, and a client
    # resends them after reconnecting.
    conn = await asyncpg.connect(fresh_dsn)
    try:
        rows = await conn.fetch("SELECT cid, seq FROM messages ORDER BY seq")
    finally:
        await conn.close()
    committed = {r["cid"] for r in rows}
    assert not acked & refused
    # Committed exactly when acked: the drain waited for every send it had taken.
    assert committed - acked == set(), "committed but never acked"
    assert acked - committed == set(), "acked but not committed"
    assert [r["seq"] for r in rows] == list(range(1, len(acked) + 1))
    assert acked, "the sends in flight when SIGTERM arrived must finish"

    # Then how the drain looked to the client and to the supervisor.
    assert session_failed is None, repr(session_failed)
    assert unexpected == []
    assert last is not None and last.type == aiohttp.WSMsgType.CLOSE and close_code == 1012
    assert len(reconnects) == 1 and 0 <= reconnects[0] <= 100
    assert readyz == [(503, True)]
    assert exit_code == 0
