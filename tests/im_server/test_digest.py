"""GET /admin/digest: the content summary a cloud restore is checked against (real PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from im_server import auth
from im_server.errors import UnavailableError
from tests.im_server.conftest import Running, ServerFactory


@pytest.fixture
def im(shared_im: Running) -> Running:
    return shared_im


async def _digest(im: Running, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or im.settings.admin_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(im.http + "/admin/digest") as r,
    ):
        return r.status, await r.json()


def _counts(d: dict[str, Any]) -> tuple[int, int, int, int]:
    return d["messages"], d["conversations"], d["max_seq"], d["non_dense"]


async def _lose(im: Running, conv: str, seq: int) -> None:
    """Delete a stored message behind the server's back (conversations.last_seq untouched)."""
    conn = await asyncpg.connect(im.settings.database_url)
    try:
        await conn.execute("DELETE FROM messages WHERE conv = $1 AND seq = $2", conv, seq)
    finally:
        await conn.close()


async def test_digest_of_an_empty_database(im: Running) -> None:
    status, d = await _digest(im)
    assert status == 200
    assert _counts(d) == (0, 0, 0, 0)
    assert d["latest_ms"] == 0


async def test_digest_counts_what_was_sent_and_says_where_it_was_read(im: Running) -> None:
    t0 = int(time.time() * 1000)
    alice = await im.client("alice")
    for i in range(3):
        await alice.send(i, to="bob")
    await alice.send("hi carol", to="carol")
    group = await alice.create_group("g", ["bob"])  # its group_created message is seq 1
    await alice.send("to the group", conv=group["conv"])

    status, d = await _digest(im)
    assert status == 200, d
    # 3 + 1 direct messages, the group's system message and one more in the group.
    assert _counts(d) == (6, 3, 3, 0)
    assert t0 - 1000 <= d["latest_ms"] <= d["at_ms"]
    dsn = im.settings.database_url
    assert d["database"] == {
        "host": "127.0.0.1",
        "port": int(dsn.rsplit(":", 1)[1].split("/")[0]),
        "name": dsn.rsplit("/", 1)[1],
    }
    assert (d["node"], d["draining"]) == (im.server.node_id, False)
    assert d["started_at_ms"] == int(im.server.started_at * 1000) <= d["at_ms"]


async def test_digest_counts_a_conversation_with_a_gap_as_not_dense(im: Running) -> None:
    alice = await im.client("alice")
    for i in range(3):
        ack = await alice.send(i, to="bob")
    await alice.send("elsewhere", to="carol")
    status, d = await _digest(im)
    assert status == 200 and _counts(d) == (4, 2, 3, 0)

    await _lose(im, ack.conv, 2)
    status, d = await _digest(im)
    assert status == 200
    assert _counts(d) == (3, 2, 3, 1)


async def test_digest_counts_a_lost_tail_as_not_dense(im: Running) -> None:
    alice = await im.client("alice")
    for i in range(2):
        ack = await alice.send(i, to="bob")
    await _lose(im, ack.conv, 2)
    # last_seq still says 2: the newest message is missing, not a middle one.
    status, d = await _digest(im)
    assert status == 200 and _counts(d) == (1, 1, 1, 1)


async def test_digest_accepts_the_read_only_credential_and_nothing_else_does(
    im: Running,
) -> None:
    admin = str(im.settings.admin_token)
    read_only = auth.digest_token(admin)
    assert read_only != admin and len(read_only) == 64
    status, d = await _digest(im, read_only)
    assert status == 200 and d["non_dense"] == 0
    for wrong in ("wrong-token-wrong-token", read_only[:-1], auth.digest_token(admin + "x")):
        status, d = await _digest(im, wrong)
        assert (status, d["error"]["code"]) == (401, "unauthorized")
    # The derived credential opens the digest only: not stats, not token minting.
    headers = {"Authorization": f"Bearer {read_only}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(im.http + "/admin/stats") as r:
            assert r.status == 401
        async with http.post(im.http + "/admin/tokens", json={"user": "mallory"}) as r:
            assert r.status == 401


async def test_digest_is_off_without_an_admin_token(server_factory: ServerFactory) -> None:
    im = await server_factory(admin_token=None)
    async with (
        aiohttp.ClientSession() as http,
        http.get(im.http + "/admin/digest", headers={"Authorization": "Bearer x"}) as r,
    ):
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "admin_disabled"


async def test_digest_gives_up_at_its_statement_timeout(im: Running) -> None:
    """A digest that cannot read (here: a lock held on messages) fails within its timeout
    instead of hanging; over HTTP that is a 503."""
    conn = await asyncpg.connect(im.settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            with pytest.raises(UnavailableError):
                await im.server.store.digest(statement_timeout_ms=200)
            assert time.monotonic() - t0 < 5
    finally:
        await conn.close()
