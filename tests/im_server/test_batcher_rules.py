"""The send path's ordering, timeout and idempotency rules when a commit is held up, on real
PostgreSQL: the test holds a conversation's row lock (``FOR UPDATE``), so a commit that sends
to it waits inside ``im_send_batch`` for as long as the test says.

The scene: connection ``x``'s commit C0 waits on lock 1 while ``x2`` and ``u``'s ``u1``, both
to the conversation under lock 2, are submitted. Where the batcher lets one commit take every
queue, lock 1 goes and ``x``'s worker (its fan-out does not yield without a bus) starts C1 with
``x2`` and ``u1`` before ``u``'s worker runs: ``u1`` is borrowed, ``u``'s queue held (the scene
checks that it is). Without that check the same tests ran against the batcher that never
borrows (``u1`` then waits on lock 2 in a commit of ``u``'s own worker) and held there too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import WSMsgType

from im_server.batcher import SendBatcher
from tests.im_server.conftest import Running, ServerFactory, until
from tests.im_server.test_bad_input import _login

L1 = "d:a:x"  # x's first commit waits here
L2 = "d:u:x"  # x2 and u1 wait here
CU = "d:u:v"  # u's later sends: nothing locks it
TIMEOUT = 1.0
# The scenes hold a commit on a row lock for seconds; a waiting worker gives up waiting for a
# commit that old after IM_SEND_HOLD_MAX_MS and commits on its own (test_send_timeout.py), so
# the borrowing these rules are about needs a worker that waits.
PATIENT = 60_000.0


class Peer:
    """A raw session whose every frame is kept, read in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, conn_id: str) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for m in self.ws:
            if m.type is WSMsgType.TEXT:
                self.frames.append(orjson.loads(m.data))

    async def send(self, cid: str, conv: str) -> None:
        frame = {"type": "send", "cid": cid, "conv": conv, "body": cid}
        await self.ws.send_str(orjson.dumps(frame).decode())

    def answers(self, cid: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("cid") == cid]

    def answer_order(self) -> list[str]:
        return [f["cid"] for f in self.frames if f.get("cid") and f["type"] in ("ack", "error")]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def _worker_of(b: SendBatcher, conn_id: str) -> int:
    # SendBatcher.submit's choice: the scenes need the sessions on workers they know.
    return hash(conn_id) % len(b.workers)


@asynccontextmanager
async def _peers(im: Running, want: dict[str, str | None]) -> AsyncIterator[dict[str, Peer]]:
    """Sessions by name: ``{"x": None, "u": None, "u2": "u"}`` logs in users x and u on workers
    of their own, then user u again on u's worker (a name is its user up to a digit suffix)."""
    b = im.server.batcher
    out: dict[str, Peer] = {}
    async with aiohttp.ClientSession() as http:
        try:
            for name, same_as in want.items():
                user = name.rstrip("0123456789")
                for _ in range(200):
                    before = set(im.server.hub.by_user.get(user, {}))
                    ws = await _login(http, im, user)
                    [cid] = set(im.server.hub.by_user[user]) - before
                    used = {_worker_of(b, p.conn_id) for p in out.values()}
                    w = _worker_of(b, cid)
                    if (w == _worker_of(b, out[same_as].conn_id)) if same_as else w not in used:
                        out[name] = Peer(ws, cid)
                        break
                    await ws.close()
                else:
                    raise AssertionError(f"no session of {user} landed on the worker wanted")
            yield out
        finally:
            for p in out.values():
                await p.close()


async def _acked(p: Peer, cid: str) -> dict[str, Any]:
    await until(lambda: p.answers(cid), what=f"answer to {cid}")
    [f] = p.answers(cid)
    assert f["type"] == "ack", f
    return f


async def _rows(dsn: str, cids: list[str]) -> dict[str, int]:
    """cid -> seq of what is committed."""
    conn = await asyncpg.connect(dsn)
    try:
        got = await conn.fetch("SELECT cid, seq FROM messages WHERE cid = ANY($1)", cids)
        return {r["cid"]: r["seq"] for r in got}
    finally:
        await conn.close()


class Lock:
    """A conversation's row lock held in a transaction of the test's own."""

    def __init__(self, dsn: str, conv: str) -> None:
        self.dsn, self.conv = dsn, conv
        self.conn: asyncpg.Connection | None = None

    async def hold(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await self.conn.execute("BEGIN")
        await self.conn.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", self.conv)

    async def release(self) -> None:
        if self.conn is not None:
            await self.conn.close()  # rolls back
            self.conn = None


def _running(b: SendBatcher) -> dict[str, int]:
    """cid -> index of the worker whose commit holds it."""
    return {p.item.cid: i for i, w in enumerate(b.workers) for p in w.running}


def _queued(b: SendBatcher) -> set[str]:
    return {p.item.cid for w in b.workers for p in w.queue}


async def _scene(im: Running, x: Peer, u: Peer) -> tuple[Lock, Lock]:
    """C1, holding x2 and (where the batcher borrows) u1, waits on lock 2; returns the locks,
    lock 2 held."""
    b = im.server.batcher
    dsn = im.settings.database_url
    for n, conv in enumerate((L1, L2)):  # the conversations exist before they are locked
        await x.send(f"x-new{n}", conv)
        await _acked(x, f"x-new{n}")
    await u.send("u-new", CU)
    await _acked(u, "u-new")  # CU's seq 1
    lock1, lock2 = Lock(dsn, L1), Lock(dsn, L2)
    await lock1.hold()
    await lock2.hold()
    await x.send("x1", L1)
    await until(lambda: "x1" in _running(b), what="C0 under way")
    await x.send("x2", L2)
    await u.send("u1", L2)
    await until(lambda: {"x2", "u1"} <= _queued(b) | set(_running(b)), what="x2, u1 submitted")
    await lock1.release()
    await _acked(x, "x1")
    await until(lambda: "x2" in _running(b), what="C1 under way")
    # Else the tests below would pass without exercising a borrowed send or a held queue.
    assert _borrowed(b, "u1", u.conn_id), f"u1 is not in x's commit: {_running(b)}"
    return lock1, lock2


def _borrowed(b: SendBatcher, cid: str, conn_id: str) -> bool:
    """Whether ``cid`` runs in a commit of a worker other than its connection's."""
    w = _running(b).get(cid)
    return w is not None and w != _worker_of(b, conn_id)


async def _slow_fan_out(im: Running, delay: float) -> None:
    """From now on each delivery yields for ``delay``, as one through the bus does."""
    hub = im.server.hub
    deliver: Callable[..., Awaitable[None]] = hub.deliver

    async def slow(*a: Any, **kw: Any) -> None:
        await asyncio.sleep(delay)
        await deliver(*a, **kw)

    hub.deliver = slow  # type: ignore[method-assign]


async def test_later_sends_wait_for_a_borrowed_send_and_are_acked_after_it(
    server_factory: ServerFactory,
) -> None:
    """A connection's later sends commit neither beside nor before its send in another worker's
    commit, and are acked after it: send order = seq order = ack order."""
    im = await server_factory(send_hold_max_ms=PATIENT)
    b = im.server.batcher
    async with _peers(im, {"x": None, "u": None}) as p:
        x, u = p["x"], p["u"]
        _, lock2 = await _scene(im, x, u)
        try:
            # Enough later sends to pass IM_SEND_PARALLEL_MIN: only the rule keeps them back.
            later = [f"u{n}" for n in range(2, 12)]
            for cid in later:
                await u.send(cid, CU)
            await until(lambda: set(later) <= _queued(b) | set(_running(b)), what="submitted")
            await _slow_fan_out(im, 0.25)  # C1's acks trail its commit, as with a bus
            await asyncio.sleep(0.3)  # a batcher breaking the rule commits them meanwhile
            assert await _rows(im.settings.database_url, ["u1", *later]) == {}
            assert u.answer_order() == ["u-new"], u.frames
        finally:
            await lock2.release()
        acks = [await _acked(u, cid) for cid in later]
        await _acked(u, "u1")
        assert u.answer_order() == ["u-new", "u1", *later], u.frames
        assert [a["seq"] for a in acks] == list(range(2, 2 + len(acks))), acks
        await _acked(x, "x2")


async def test_a_borrowed_send_that_times_out_is_outcome_unknown_and_its_resend_a_dup(
    server_factory: ServerFactory,
) -> None:
    """Its commit is under way: ``outcome_unknown`` (not ``unavailable``, which says nothing
    was committed), then never an ack for it; it commits with C1, and the resend of its cid,
    queued while C1 still waits, is acked as that one message."""
    im = await server_factory(send_timeout=TIMEOUT, send_hold_max_ms=PATIENT)
    b = im.server.batcher
    async with _peers(im, {"x": None, "u": None}) as p:
        x, u = p["x"], p["u"]
        _, lock2 = await _scene(im, x, u)
        try:
            t0 = time.monotonic()
            await until(lambda: u.answers("u1"), timeout=TIMEOUT + 1, what="u1 answered")
            assert time.monotonic() - t0 <= TIMEOUT + 0.3
            [f] = u.answers("u1")
            assert (f["type"], f["code"]) == ("error", "outcome_unknown"), f
            await until(lambda: x.answers("x2"), timeout=1, what="x2 answered")
            assert x.answers("x2")[0]["code"] == "outcome_unknown", x.frames
            await u.send("u1", CU)  # the client's resend, while the first still waits
            await until(lambda: "u1" in _queued(b) | set(_running(b)), what="resend queued")
        finally:
            await lock2.release()
        await until(lambda: len(u.answers("u1")) == 2, what="resend answered")
        resent = u.answers("u1")[1]
        assert resent["type"] == "ack" and resent.get("duplicate"), u.frames
        rows = await _rows(im.settings.database_url, ["u1", "x2"])
        assert sorted(rows.values()) == [2, 3] and rows["u1"] == resent["seq"], rows
        await asyncio.sleep(0.2)  # two rounds of the timeout's check: nothing more comes
        assert len(u.answers("u1")) == 2 and len(x.answers("x2")) == 1, (u.frames, x.frames)


async def test_a_held_queue_expires_unavailable_and_never_commits(
    server_factory: ServerFactory,
) -> None:
    """Sends queued behind C1 past the send timeout never reached the database: ``unavailable``,
    with their connection's later sends, and none of them commits when C1 ends; another
    connection's send in the same queue that has not expired commits after C1."""
    im = await server_factory(send_timeout=TIMEOUT, send_hold_max_ms=PATIENT)
    b = im.server.batcher
    async with _peers(im, {"x": None, "u": None, "u2": "u"}) as p:
        x, u, u2 = p["x"], p["u"], p["u2"]  # u2: user u's other device, on the same worker
        _, lock2 = await _scene(im, x, u)
        try:
            await u.send("A", CU)  # expires queued
            await asyncio.sleep(TIMEOUT / 2)
            await u.send("B", CU)  # sent after A: answered with it, though not expired itself
            await until(lambda: u.answers("A"), timeout=TIMEOUT + 0.5, what="A answered")
            await u2.send("C", CU)  # from another connection, after A expired: not taken
            await until(lambda: u.answers("B"), timeout=0.5, what="B answered")
            for cid in ("A", "B"):
                [f] = u.answers(cid)
                assert (f["type"], f["code"]) == ("error", "unavailable"), f
            await until(lambda: u.answers("u1"), timeout=TIMEOUT, what="u1 answered")
            await until(lambda: "C" in _queued(b), timeout=0.5, what="C queued")
        finally:
            await lock2.release()
        c = await _acked(u2, "C")
        await until(lambda: b.idle.is_set(), what="idle")
        rows = await _rows(im.settings.database_url, ["u1", "A", "B", "C"])
        assert set(rows) == {"u1", "C"} and rows["C"] == c["seq"] == 2, rows
        assert [len(u.answers(cid)) for cid in ("u1", "A", "B")] == [1, 1, 1], u.frames


async def test_a_resend_while_the_first_is_held_or_borrowed_is_one_message(
    server_factory: ServerFactory,
) -> None:
    """The same cid resent on the same connection and from another device while the first
    waits (borrowed into C1, or queued behind it): one message, every answer its seq."""
    im = await server_factory(send_hold_max_ms=PATIENT)
    b = im.server.batcher
    async with _peers(im, {"x": None, "u": None, "u2": None}) as p:
        x, u, u2 = p["x"], p["u"], p["u2"]
        _, lock2 = await _scene(im, x, u)
        try:
            await u.send("u1", L2)  # u1 is in C1
            await u.send("D", CU)  # D queued behind it, then resent
            await u.send("D", CU)
            await u2.send("u1", L2)
            await u2.send("D", CU)
            # x2, u1 and these five: u2's D may be committed already, on an idle worker.
            await until(lambda: b.inflight + len(u2.answers("D")) == 7, what="submitted")
        finally:
            await lock2.release()
        await until(lambda: b.idle.is_set(), what="idle")
        rows = await _rows(im.settings.database_url, ["u1", "D"])
        assert set(rows) == {"u1", "D"} and rows["D"] == 2, rows
        for peer, cid, n in ((u, "u1", 2), (u, "D", 2), (u2, "u1", 1), (u2, "D", 1)):
            got = peer.answers(cid)
            assert len(got) == n and all(f["type"] == "ack" for f in got), peer.frames
            assert {f["seq"] for f in got} == {rows[cid]}, got
        assert sum(not f.get("duplicate") for f in u.answers("u1") + u2.answers("u1")) == 1
        assert sum(not f.get("duplicate") for f in u.answers("D") + u2.answers("D")) == 1
