"""The send path's SQL (im_send_batch) against real PostgreSQL: the edge cases a client would
notice as a gap in seqs, a second copy of a message, or a refused resend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from im_server.conversations import direct_conv_id
from im_server.migrate import migrate
from im_server.store import SendItem, Store


@pytest.fixture
async def store(fresh_dsn: str) -> AsyncIterator[Store]:
    await migrate(fresh_dsn)
    s = await Store.connect(fresh_dsn)
    yield s
    await s.close()


async def _seqs(store: Store, conv: str) -> list[int]:
    async with store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT seq FROM messages WHERE conv = $1 ORDER BY seq", conv)
        last = await conn.fetchval("SELECT last_seq FROM conversations WHERE id = $1", conv)
    seqs = [r["seq"] for r in rows]
    assert last == (seqs[-1] if seqs else 0), "last_seq must match the messages stored"
    return seqs


async def test_a_duplicate_inside_one_batch_commits_once(store: Store) -> None:
    conv = direct_conv_id("ann", "bob")
    first, again, other = await store.send_batch(
        [
            SendItem("ann", "c1", conv, '"hi"'),
            SendItem("ann", "c1", conv, '"hi"'),
            SendItem("bob", "c1", conv, '"yo"'),  # same cid, other sender: a new message
        ]
    )
    assert (first.status, again.status, other.status) == ("ok", "dup", "ok")
    assert again.seq == first.seq == 1 and other.seq == 2
    assert await _seqs(store, conv) == [1, 2]


async def test_a_resend_takes_no_seq(store: Store) -> None:
    conv = direct_conv_id("ann", "bob")
    [a] = await store.send_batch([SendItem("ann", "c1", conv, '"1"')])
    [dup] = await store.send_batch([SendItem("ann", "c1", conv, '"1"')])
    [b] = await store.send_batch([SendItem("bob", "c2", conv, '"2"')])
    assert (dup.status, dup.seq, dup.ts) == ("dup", a.seq, a.ts)
    assert b.seq == a.seq + 1
    assert await _seqs(store, conv) == [1, 2]


async def test_a_refused_send_takes_no_seq(store: Store) -> None:
    group = await store.create_group("ann", "team", ["ann", "bob"])
    base = len(await _seqs(store, group.conv))  # system messages of the group's creation
    [refused] = await store.send_batch([SendItem("eve", "e1", group.conv, '"x"')])
    [ok] = await store.send_batch([SendItem("bob", "b1", group.conv, '"y"')])
    assert refused.status == "not_member"
    assert ok.status == "ok" and ok.seq == base + 1
    assert await _seqs(store, group.conv) == list(range(1, base + 2))
    [stranger] = await store.send_batch(
        [SendItem("eve", "e2", direct_conv_id("ann", "bob"), '"z"')]
    )
    assert stranger.status == "not_member"


async def test_a_resend_after_leaving_the_group_is_still_a_dup(store: Store) -> None:
    group = await store.create_group("ann", "team", ["ann", "bob"])
    [sent] = await store.send_batch([SendItem("bob", "b1", group.conv, '"bye"')])
    await store.remove_member("ann", group.conv, "bob")
    [resent] = await store.send_batch([SendItem("bob", "b1", group.conv, '"bye"')])
    [fresh] = await store.send_batch([SendItem("bob", "b2", group.conv, '"hello?"')])
    assert (resent.status, resent.seq) == ("dup", sent.seq)
    assert fresh.status == "not_member"
    seqs = await _seqs(store, group.conv)
    assert seqs == list(range(1, len(seqs) + 1))


async def test_unknown_conversation_is_refused(store: Store) -> None:
    [r] = await store.send_batch([SendItem("ann", "c1", "g:nope", '"x"')])
    assert r.status == "unknown_conversation"


async def test_sends_in_one_batch_take_seqs_in_batch_order_per_conversation(store: Store) -> None:
    ab, ac = direct_conv_id("ann", "bob"), direct_conv_id("ann", "cat")
    group = await store.create_group("ann", "team", ["ann", "bob", "cat"])
    base = len(await _seqs(store, group.conv))
    items = [
        SendItem("ann", "1", ab, '"1"'),
        SendItem("ann", "2", group.conv, '"2"'),
        SendItem("ann", "3", ac, '"3"'),
        SendItem("bob", "4", ab, '"4"'),
        SendItem("cat", "5", group.conv, '"5"'),
        SendItem("ann", "6", ab, '"6"'),
    ]
    results = await store.send_batch(items)
    assert [r.status for r in results] == ["ok"] * 6
    assert [(r.conv, r.seq) for r in results] == [
        (ab, 1), (group.conv, base + 1), (ac, 1), (ab, 2), (group.conv, base + 2), (ab, 3),
    ]  # fmt: skip
    assert set(results[1].recipients) == {"ann", "bob", "cat"}
    assert set(results[0].recipients) == {"ann", "bob"}
    assert await _seqs(store, ab) == [1, 2, 3]


async def test_a_refused_first_copy_does_not_make_the_second_a_dup(store: Store) -> None:
    group = await store.create_group("ann", "team", ["ann", "bob"])
    conv = direct_conv_id("eve", "bob")
    refused, sent = await store.send_batch(
        [SendItem("eve", "e1", group.conv, '"x"'), SendItem("eve", "e1", conv, '"y"')]
    )
    assert refused.status == "not_member"
    assert (sent.status, sent.conv, sent.seq) == ("ok", conv, 1)
