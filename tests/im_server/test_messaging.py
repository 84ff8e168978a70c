"""Messaging guarantees over real sockets and a real PostgreSQL: ack = committed, dense seq,
idempotent send, push to every device, offline catch-up."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import orjson

from im_server.client import Client, Message
from tests.im_server.conftest import Running


async def _next(c: Client, timeout: float = 5.0) -> Message:
    return await asyncio.wait_for(c.messages.get(), timeout)


async def _rows(dsn: str, conv: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT seq, sender, cid FROM messages WHERE conv=$1 ORDER BY seq", conv
        )
    finally:
        await conn.close()
    return [(r["seq"], r["sender"], r["cid"]) for r in rows]


async def test_ack_means_committed_then_push_to_every_device(im: Running) -> None:
    alice = await im.client("alice")
    alice_phone = await im.client("alice", device="phone")
    bob = await im.client("bob")

    ack = await alice.send({"text": "hi"}, to="bob")

    assert (ack.conv, ack.seq) == ("d:alice:bob", 1)
    # Committed before the ack was sent: the row is there.
    assert await _rows(im.settings.database_url, ack.conv) == [(1, "alice", ack.cid)]
    got = await _next(bob)
    assert (got.conv, got.seq, got.sender, got.body) == ("d:alice:bob", 1, "alice", {"text": "hi"})
    # The sender's other device sees it too; the sending connection does not get an echo.
    mine = await _next(alice_phone)
    assert mine.seq == 1
    await alice.ping()  # a barrier: an echo would have been queued before the pong
    assert alice.messages.empty()


async def test_direct_conversation_id_is_the_same_from_both_sides(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    a = await alice.send("one", to="bob")
    b = await bob.send("two", to="alice")
    assert a.conv == b.conv == "d:alice:bob"
    assert (a.seq, b.seq) == (1, 2)


async def test_resend_with_same_cid_returns_original_ack_and_delivers_once(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    first = await alice.send({"n": 1}, to="bob", cid="fixed-cid")
    # A raw resend (what a client does after losing the ack) must not create a second message.
    again = await alice.request({"type": "ping"})
    assert again["type"] == "pong"
    second = await alice.send({"n": 1}, to="bob", cid="fixed-cid")
    assert (second.conv, second.seq, second.ts) == (first.conv, first.seq, first.ts)
    assert second.duplicate and not first.duplicate
    assert (await _next(bob)).seq == 1
    await bob.ping()  # a barrier: a second push would have been queued before the pong
    assert bob.messages.empty()
    assert len(await _rows(im.settings.database_url, first.conv)) == 1


async def test_concurrent_duplicates_from_two_connections_commit_once(im: Running) -> None:
    # Raw sockets, so nothing client-side deduplicates: 2 connections x 10 copies of one cid.
    frame = orjson.dumps({"type": "send", "cid": "dup-1", "to": "bob", "body": "same"}).decode()
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(im.url) for _ in range(2)]
        for ws in sockets:
            await ws.send_str(orjson.dumps({"type": "hello", "token": im.token("alice")}).decode())
            assert (await ws.receive_json())["type"] == "welcome"
        await asyncio.gather(*[ws.send_str(frame) for ws in sockets for _ in range(10)])
        acks: list[dict[str, Any]] = []
        pushes: list[dict[str, Any]] = []
        for ws in sockets:
            while len([a for a in acks if a["_ws"] is ws]) < 10:
                f = await ws.receive_json(timeout=5)
                (acks if f["type"] == "ack" else pushes).append({**f, "_ws": ws})
        # A barrier per socket: any further push was queued before its pong.
        for ws in sockets:
            await ws.send_str('{"type": "ping", "rid": "barrier"}')
            while (f := await ws.receive_json(timeout=5))["type"] != "pong":
                pushes.append(f)
        for ws in sockets:
            await ws.close()
    assert {(a["conv"], a["seq"]) for a in acks} == {("d:alice:bob", 1)}
    assert sum(not a.get("duplicate") for a in acks) == 1
    # The one commit is pushed once, to the other alice connection only.
    assert [(p["type"], p["seq"]) for p in pushes] == [("msg", 1)]
    assert await _rows(im.settings.database_url, "d:alice:bob") == [(1, "alice", "dup-1")]


async def test_200_concurrent_sends_from_5_devices_get_dense_seqs(im: Running) -> None:
    devices = [await im.client("alice", device=f"d{i}") for i in range(5)]
    group = await devices[0].create_group("team", ["bob"])
    conv = group["conv"]
    bob = await im.client("bob")

    acks = await asyncio.gather(*[devices[i % 5].send({"i": i}, conv=conv) for i in range(200)])

    seqs = sorted(a.seq for a in acks)
    assert seqs == list(range(2, 202))  # seq 1 is the group_created event
    rows = await _rows(im.settings.database_url, conv)
    assert [r[0] for r in rows] == list(range(1, 202))
    assert len({r[2] for r in rows[1:]}) == 200
    # bob joined after the group was created: his client catches up on seq 1 by itself.
    received = [await _next(bob) for _ in range(201)]
    assert [m.seq for m in received] == list(range(1, 202))
    assert received[0].body["event"] == "group_created"


async def test_offline_user_catches_up_with_convs_sync_and_read(im: Running) -> None:
    alice = await im.client("alice")
    for i in range(5):
        await alice.send({"i": i}, to="bob")
    bob = await im.client("bob", catch_up=False)
    convs = {c["conv"]: c for c in await bob.convs()}
    assert convs["d:alice:bob"]["last_seq"] == 5
    assert convs["d:alice:bob"]["unread"] == 5
    msgs, more, last = await bob.sync("d:alice:bob", 0, 3)
    assert [m.seq for m in msgs] == [1, 2, 3] and more and last == 5
    msgs, more, _ = await bob.sync("d:alice:bob", 3, 100)
    assert [m.body for m in msgs] == [{"i": 3}, {"i": 4}] and not more
    assert await bob.read("d:alice:bob", 5) == 5
    assert await bob.read("d:alice:bob", 2) == 5  # a cursor never moves back
    convs = {c["conv"]: c for c in await bob.convs()}
    assert convs["d:alice:bob"]["unread"] == 0
    # The sender's own messages never count as unread for the sender.
    assert {c["conv"]: c for c in await alice.convs()}["d:alice:bob"]["unread"] == 0


async def test_reconnect_resumes_from_last_seen_seq(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    await alice.send(1, to="bob")
    assert (await _next(bob)).seq == 1
    await bob.close()
    for i in range(2, 5):
        await alice.send(i, to="bob")
    # A new session that says where it stopped gets exactly what it missed, in order.
    bob2 = Client(im.url, im.token("bob"))
    bob2._convs["d:alice:bob"] = type(bob._convs["d:alice:bob"])(next=2)
    im.clients.append(bob2)
    await bob2.connect()
    got = [await _next(bob2) for _ in range(3)]
    assert [m.body for m in got] == [2, 3, 4]


async def test_gap_in_pushes_is_filled_by_sync(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    await alice.send("a", to="bob")
    await _next(bob)
    # Simulate a lost push: commit seq 2 while bob's session is not registered for pushes.
    session = next(iter(im.server.hub.by_user["bob"].values()))
    await im.server.hub.detach(session)
    await alice.send("b", to="bob")
    await im.server.hub.attach(session)
    await alice.send("c", to="bob")
    got = [await _next(bob) for _ in range(2)]
    assert [(m.seq, m.body) for m in got] == [(2, "b"), (3, "c")]


async def test_one_connections_pipelined_sends_commit_in_the_order_sent(im: Running) -> None:
    # Several commit pipelines run in parallel; one connection's sends must still keep order.
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(im.url)
        await ws.send_str(orjson.dumps({"type": "hello", "token": im.token("alice")}).decode())
        assert (await ws.receive_json())["type"] == "welcome"
        for i in range(200):
            frame = {"type": "send", "cid": f"o{i}", "to": "bob", "body": i}
            await ws.send_str(orjson.dumps(frame).decode())
        acks: dict[str, int] = {}
        while len(acks) < 200:
            f = await ws.receive_json(timeout=5)
            acks[f["cid"]] = f["seq"]
        await ws.close()
    assert [acks[f"o{i}"] for i in range(200)] == list(range(1, 201))
