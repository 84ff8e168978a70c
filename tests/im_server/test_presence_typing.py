"""Ephemeral events on one node: presence (online/offline per user, not per device) and typing
(relayed to the other members, never stored)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from im_server.client import Client
from tests.im_server.conftest import Running, until


@pytest.fixture
def im(shared_im: Running) -> Running:
    return shared_im


async def _event(c: Client, timeout: float = 5.0) -> dict[str, Any]:
    return await asyncio.wait_for(c.events.get(), timeout)


async def _no_event(c: Client) -> None:
    """Nothing is queued for ``c``: anything pushed before now arrives before the pong."""
    await c.ping()
    assert c.events.empty(), c.events.get_nowait()


async def _message_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM messages")
    finally:
        await conn.close()
    return n


def _presence(user: str, status: str) -> dict[str, str]:
    return {"type": "presence", "user": user, "status": status}


# --- presence ------------------------------------------------------------------------------


async def test_watch_answers_who_is_online_now(im: Running) -> None:
    await im.client("alice")
    bob = await im.client("bob")
    reply = await bob.request({"type": "watch", "users": ["carol", "alice", "bob"]})
    assert reply["type"] == "watching"
    assert reply["users"] == ["carol", "alice", "bob"]
    assert reply["online"] == ["alice", "bob"]
    assert await bob.watch([]) == ["alice", "bob"]  # still watching the earlier users


async def test_connect_and_disconnect_are_presence_events_for_watchers(im: Running) -> None:
    wendy = await im.client("wendy")
    assert await wendy.watch(["alice"]) == []
    other = await im.client("otto")  # not watched: no event

    alice = await im.client("alice")
    assert await _event(wendy) == _presence("alice", "online")

    await alice.close()
    assert await _event(wendy) == _presence("alice", "offline")
    await other.close()
    await until(lambda: im.server.hub.sessions_of("otto") == 0)
    await _no_event(wendy)


async def test_presence_is_per_user_not_per_device(im: Running) -> None:
    wendy = await im.client("wendy")
    await wendy.watch(["alice"])
    phone = await im.client("alice", device="phone")
    assert await _event(wendy) == _presence("alice", "online")

    laptop = await im.client("alice", device="laptop")
    await _no_event(wendy)  # a second device is not a second "online"

    await phone.close()
    await until(lambda: im.server.hub.sessions_of("alice") == 1)
    await _no_event(wendy)  # one device left: still online
    assert await wendy.watch(["alice"]) == ["alice"]

    await laptop.close()
    assert await _event(wendy) == _presence("alice", "offline")
    assert await wendy.watch(["alice"]) == []


async def test_a_closed_watcher_gets_nothing_and_breaks_nothing(im: Running) -> None:
    w1 = await im.client("wendy")
    w2 = await im.client("walt")
    await w1.watch(["alice"])
    await w2.watch(["alice"])
    await w1.close()
    await until(lambda: im.server.hub.sessions_of("wendy") == 0)
    await im.client("alice")
    assert await _event(w2) == _presence("alice", "online")


# --- typing --------------------------------------------------------------------------------


async def test_typing_reaches_the_other_members_and_is_never_stored(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    carol = await im.client("carol")
    conv = (await alice.create_group("team", ["bob", "carol"]))["conv"]
    stored = await _message_count(im.settings.database_url)

    await bob.typing(conv)

    for c in (alice, carol):
        assert await _event(c) == {"type": "typing", "conv": conv, "user": "bob"}
    await _no_event(bob)  # not echoed to the typist
    assert await _message_count(im.settings.database_url) == stored
    _, _, last = await alice.sync(conv)
    assert last == 1  # only group_created

    # Direct conversations too, even before their first message.
    await alice.typing("d:alice:bob")
    assert await _event(bob) == {"type": "typing", "conv": "d:alice:bob", "user": "alice"}
    await _no_event(carol)
    assert await _message_count(im.settings.database_url) == stored


async def test_typing_where_you_are_not_a_member_is_not_member(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    mallory = await im.client("mallory")
    conv = (await alice.create_group("team", ["bob"]))["conv"]

    for target in ("d:alice:bob", conv):
        await mallory.typing(target)
        err = await _event(mallory)
        assert (err["type"], err["code"]) == ("error", "not_member"), err
        assert target in err["message"]
    # The refusal came after the check: nothing reached the members.
    await _no_event(alice)
    await _no_event(bob)
