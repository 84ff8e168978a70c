"""Groups and membership over real sockets and PostgreSQL: who may read, write and change
members, and that every membership change is a system message members receive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import aiohttp
import pytest

from im_server.client import Client, Message, ServerError
from tests.im_server.conftest import Running


@pytest.fixture
def im(shared_im: Running) -> Running:
    return shared_im


async def _next(c: Client, timeout: float = 5.0) -> Message:
    return await asyncio.wait_for(c.messages.get(), timeout)


async def _refused(call: Awaitable[Any], code: str) -> ServerError:
    # The SDK fails a request only for an error carrying that request's rid (or cid): getting
    # ServerError rather than a timeout proves the server echoed it.
    with pytest.raises(ServerError) as info:
        await asyncio.wait_for(call, 5)
    assert info.value.code == code, info.value
    return info.value


async def _group(im: Running, owner: Client, members: list[str]) -> str:
    reply = await owner.create_group("team", members)
    conv = reply["conv"]
    assert isinstance(conv, str)
    return conv


async def test_create_group_makes_the_creator_owner_and_tells_every_member(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    carol = await im.client("carol")

    reply = await alice.create_group("team", ["bob", "carol", "alice", "bob"])

    conv = reply["conv"]
    assert reply["type"] == "group" and conv.startswith("g:") and reply["title"] == "team"
    assert reply["members"] == ["alice", "bob", "carol"]
    created = {"event": "group_created", "title": "team", "members": ["alice", "bob", "carol"]}
    for c in (alice, bob, carol):
        m = await _next(c)
        assert (m.conv, m.seq, m.sender, m.body) == (conv, 1, "alice", created)
    assert await bob.members(conv) == [
        {"user": "alice", "role": "owner"},
        {"user": "bob", "role": "member"},
        {"user": "carol", "role": "member"},
    ]
    ack = await carol.send({"text": "hello team"}, conv=conv)
    assert ack.seq == 2
    for c in (alice, bob):
        m = await _next(c)
        assert (m.seq, m.sender, m.body) == (2, "carol", {"text": "hello team"})
    convs = {c["conv"]: c for c in await bob.convs()}
    assert (convs[conv]["kind"], convs[conv]["title"], convs[conv]["last_seq"]) == (
        "group",
        "team",
        2,
    )


async def test_non_member_cannot_read_write_or_list(im: Running) -> None:
    alice = await im.client("alice")
    conv = await _group(im, alice, ["bob"])
    await alice.send("secret", conv=conv)
    dave = await im.client("dave")

    await _refused(dave.send("let me in", conv=conv, cid="dave-1"), "not_member")
    await _refused(dave.sync(conv), "not_member")
    await _refused(dave.members(conv), "not_member")
    await _refused(dave.read(conv, 2), "not_member")
    await _refused(dave.add_member(conv, "dave"), "not_member")
    await _refused(dave.remove_member(conv, "bob"), "not_member")
    # The refused send committed nothing.
    _, _, last = await alice.sync(conv)
    assert last == 2
    assert conv not in {c["conv"] for c in await dave.convs()}


async def test_unknown_conversation(im: Running) -> None:
    alice = await im.client("alice")
    await _refused(alice.sync("g:0000"), "unknown_conversation")
    await _refused(alice.send("x", conv="g:0000", cid="to-nowhere"), "unknown_conversation")
    await _refused(alice.members("g:0000"), "unknown_conversation")
    await _refused(alice.add_member("g:0000", "bob"), "unknown_conversation")


async def test_added_member_is_told_and_can_send_and_sync(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    conv = await _group(im, alice, ["bob"])
    assert (await _next(bob)).seq == 1
    dave = await im.client("dave")

    reply = await alice.add_member(conv, "dave")

    assert (reply["type"], reply["changed"], reply["members"]) == (
        "group",
        True,
        ["alice", "bob", "dave"],
    )
    added = {"event": "member_added", "user": "dave", "by": "alice"}
    got = await _next(bob)
    assert (got.seq, got.sender, got.body) == (2, "alice", added)
    # dave gets the push of seq 2 and, having missed seq 1, syncs it: both arrive in order.
    seen = [await _next(dave), await _next(dave)]
    assert [(m.seq, m.body["event"]) for m in seen] == [(1, "group_created"), (2, "member_added")]
    assert seen[1].body == added

    ack = await dave.send({"text": "hi all"}, conv=conv)
    assert ack.seq == 3
    assert (await _next(bob)).sender == "dave"
    msgs, more, last = await dave.sync(conv)
    assert [m.seq for m in msgs] == [1, 2, 3] and not more and last == 3
    assert {"user": "dave", "role": "member"} in await dave.members(conv)

    # Adding a member again changes nothing and writes no system message.
    again = await alice.add_member(conv, "dave")
    assert again["changed"] is False
    _, _, last = await alice.sync(conv)
    assert last == 3


async def test_only_the_owner_removes_others(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    conv = await _group(im, alice, ["bob", "carol"])

    err = await _refused(bob.remove_member(conv, "carol"), "forbidden")
    assert not err.retryable
    await _refused(bob.remove_member(conv, "alice"), "forbidden")
    assert [m["user"] for m in await bob.members(conv)] == ["alice", "bob", "carol"]

    reply = await alice.remove_member(conv, "carol")
    assert (reply["changed"], reply["members"]) == (True, ["alice", "bob"])
    # Removing someone who is not a member is not an error, and not a change.
    again = await alice.remove_member(conv, "carol")
    assert again["changed"] is False


async def test_member_leaves_is_told_once_and_then_cannot_send_or_sync(im: Running) -> None:
    alice = await im.client("alice")
    bob = await im.client("bob")
    conv = await _group(im, alice, ["bob"])
    assert (await _next(bob)).seq == 1
    assert (await _next(alice)).seq == 1

    reply = await bob.remove_member(conv, "bob")

    assert (reply["changed"], reply["members"]) == (True, ["alice"])
    removed = {"event": "member_removed", "user": "bob", "by": "bob"}
    for c in (alice, bob):
        m = await _next(c)
        assert (m.seq, m.body) == (2, removed)
    await _refused(bob.send("still here?", conv=conv, cid="ghost"), "not_member")
    await _refused(bob.sync(conv), "not_member")
    assert conv not in {c["conv"] for c in await bob.convs()}
    # Later messages are not pushed to bob.
    await alice.send("after bob left", conv=conv)
    # alice's ack and any push to bob are queued together; bob's pong comes after such a push.
    await bob.ping()
    assert bob.messages.empty()


async def test_last_member_leaving_a_group_succeeds(im: Running) -> None:
    alice = await im.client("alice")
    conv = await _group(im, alice, [])
    assert (await _next(alice)).seq == 1

    reply = await alice.remove_member(conv, "alice")

    assert (reply["type"], reply["changed"], reply["members"]) == ("group", True, [])
    m = await _next(alice)  # told once, like anyone who leaves
    assert m.body == {"event": "member_removed", "user": "alice", "by": "alice"}


async def test_direct_conversation_is_closed_to_third_parties(im: Running) -> None:
    alice = await im.client("alice")
    await im.client("bob")
    carol = await im.client("carol")
    await alice.send("just us", to="bob")

    await _refused(carol.sync("d:alice:bob"), "not_member")
    await _refused(carol.send("hi", conv="d:alice:bob", cid="c-in"), "not_member")
    await _refused(carol.members("d:alice:bob"), "not_member")
    await _refused(carol.read("d:alice:bob", 1), "not_member")
    # Nobody can turn a direct conversation into a group.
    await _refused(alice.add_member("d:alice:bob", "carol"), "forbidden")
    msgs, _, last = await alice.sync("d:alice:bob")
    assert [m.body for m in msgs] == ["just us"] and last == 1


# --- admin API -------------------------------------------------------------------------------


async def test_admin_group_lifecycle(im: Running) -> None:
    auth = {"Authorization": f"Bearer {im.settings.admin_token}"}
    bob = await im.client("bob")
    async with aiohttp.ClientSession(im.http, headers=auth) as http:
        r = await http.post(
            "/admin/groups", json={"owner": "alice", "title": "ops", "members": ["bob"]}
        )
        assert r.status == 201
        created = await r.json()
        conv = created["conv"]
        assert (created["title"], created["members"]) == ("ops", ["alice", "bob"])
        m = await _next(bob)
        assert (m.conv, m.seq, m.sender, m.body["event"]) == (conv, 1, "alice", "group_created")

        r = await http.get(f"/admin/groups/{conv}/members")
        assert r.status == 200
        assert await r.json() == {
            "conv": conv,
            "members": [{"user": "alice", "role": "owner"}, {"user": "bob", "role": "member"}],
        }

        r = await http.post(f"/admin/groups/{conv}/members", json={"user": "carol"})
        assert (r.status, await r.json()) == (200, {"conv": conv, "changed": True})
        m = await _next(bob)
        assert m.body == {"event": "member_added", "user": "carol", "by": "admin"}
        r = await http.post(f"/admin/groups/{conv}/members", json={"user": "carol"})
        assert (await r.json())["changed"] is False

        r = await http.delete(f"/admin/groups/{conv}/members/bob")
        assert (r.status, await r.json()) == (200, {"conv": conv, "changed": True})
        m = await _next(bob)
        assert m.body == {"event": "member_removed", "user": "bob", "by": "admin"}
        await _refused(bob.send("x", conv=conv, cid="b-after"), "not_member")
        r = await http.delete(f"/admin/groups/{conv}/members/bob")
        assert (await r.json())["changed"] is False

        r = await http.get(f"/admin/groups/{conv}/members")
        assert [x["user"] for x in (await r.json())["members"]] == ["alice", "carol"]


async def test_admin_group_errors(im: Running) -> None:
    auth = {"Authorization": f"Bearer {im.settings.admin_token}"}
    alice = await im.client("alice")
    await alice.send("dm", to="bob")
    async with aiohttp.ClientSession(im.http, headers=auth) as http:

        async def status(method: str, path: str, body: Any = None) -> tuple[int, str]:
            r = await http.request(method, path, json=body)
            return r.status, (await r.json())["error"]["code"]

        assert await status("GET", "/admin/groups/g:nope/members") == (404, "unknown_conversation")
        assert await status("POST", "/admin/groups/g:nope/members", {"user": "bob"}) == (
            404,
            "unknown_conversation",
        )
        assert await status("POST", "/admin/groups/d:alice:bob/members", {"user": "eve"}) == (
            403,
            "forbidden",
        )
        assert await status("GET", "/admin/groups/bad%20id/members") == (400, "bad_request")
        for body in (
            {"title": "no owner"},
            {"owner": "not a user"},
            {"owner": "alice", "members": "bob"},
            {"owner": "alice", "members": ["ok", "not ok"]},
            {"owner": "alice", "title": "t" * 201},
            {"owner": "alice", "title": 5},
        ):
            assert await status("POST", "/admin/groups", body) == (400, "bad_request"), body
        assert await status("POST", "/admin/groups/g:nope/members", {"user": ""}) == (
            400,
            "bad_request",
        )
    # The direct conversation is untouched.
    msgs, _, _ = await alice.sync("d:alice:bob")
    assert [m.body for m in msgs] == ["dm"]
