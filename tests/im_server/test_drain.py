"""SIGTERM on a real ``im-server serve`` process: readiness off, reconnect, in-flight sends
finish, close 1012, exit 0 -- and nothing acked is lost, nothing refused is committed."""

from __future__ import annotations

import asyncio
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
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url)
            hello = {"type": "hello", "token": auth.mint(secret, "alice")}
            await ws.send_str(orjson.dumps(hello).decode())
            assert (await ws.receive_json())["type"] == "welcome"
            # Pipeline sends and signal in the middle of the stream.
            cids = [f"c{i}" for i in range(300)]
            for i, cid in enumerate(cids):
                frame = {"type": "send", "cid": cid, "to": "bob", "body": {"i": i}}
                await ws.send_str(orjson.dumps(frame).decode())
                if i == 150:
                    proc.send_signal(signal.SIGTERM)
            acked: set[str] = set()
            refused: set[str] = set()
            reconnect_seen = False
            while True:
                m = await ws.receive(timeout=10)
                if m.type != aiohttp.WSMsgType.TEXT:
                    break
                f = orjson.loads(m.data)
                if f["type"] == "ack":
                    acked.add(f["cid"])
                elif f["type"] == "error":
                    assert f["code"] == "draining" and f["retryable"] is True
                    refused.add(f["cid"])
                elif f["type"] == "reconnect":
                    reconnect_seen = True
                    assert 0 <= f["after_ms"] <= 100
                    # A draining node is not ready, and refuses new sessions.
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        assert r.status == 503
                        assert (await r.json())["draining"] is True
            assert m.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1012
            assert reconnect_seen
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # No send was answered twice. Frames the node had not read when it closed got no answer at
    # all: they were not committed, and a client resends them after reconnecting.
    assert not acked & refused
    assert acked, "the sends in flight when SIGTERM arrived must finish"
    conn = await asyncpg.connect(fresh_dsn)
    try:
        rows = await conn.fetch("SELECT cid, seq FROM messages ORDER BY seq")
    finally:
        await conn.close()
    # Committed exactly when acked: the drain waited for every send it had taken.
    assert {r["cid"] for r in rows} == acked
    assert [r["seq"] for r in rows] == list(range(1, len(acked) + 1))
