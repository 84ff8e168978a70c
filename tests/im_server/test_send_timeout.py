"""The send timeout's bookkeeping, with a scripted store and hub (timings no real database
gives on demand): every send answered exactly once, in the order its connection sent it."""

from __future__ import annotations

import asyncio
import dataclasses
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from im_server.batcher import SendBatcher
from im_server.config import Settings
from im_server.errors import ImError
from im_server.health import HealthMonitor
from im_server.store import SendItem, SendResult

TIMEOUT = 0.5


class Conn:
    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.id = name
        self.log = log

    def push(self, frame: str, kind: str) -> None:
        self.log.append((kind, frame))


class _Count:
    def inc(self, *_: Any) -> None: ...
    def observe(self, *_: Any) -> None: ...


def _server(
    send_batch: Callable[[Sequence[SendItem]], Awaitable[list[SendResult]]],
    deliver_delay: float = 0.0,
) -> tuple[Any, list[tuple[str, str, str]]]:
    answers: list[tuple[str, str, str]] = []  # (cid, "ack" | error code, when)

    class Store:
        async def send_batch(self, items: Sequence[SendItem]) -> list[SendResult]:
            return await send_batch(items)

    class Hub:
        async def deliver(self, *_: Any, **__: Any) -> None:
            await asyncio.sleep(deliver_delay)

    def send_error(conn: Any, exc: ImError, ref: dict[str, str] | None) -> None:
        answers.append(((ref or {}).get("cid", "?"), exc.code.value, conn.id))

    srv = types.SimpleNamespace(
        settings=types.SimpleNamespace(
            batch_max=16,
            batch_linger_ms=0,
            send_timeout=TIMEOUT,
            send_parallel_min=8,
            send_hold_max_ms=20.0,
        ),
        store=Store(),
        hub=Hub(),
        metrics=types.SimpleNamespace(
            batch_size=_Count(), db_errors=_Count(), ack_latency=_Count(), send_timeouts=_Count()
        ),
        send_error=send_error,
    )
    return srv, answers


def _ok(items: Sequence[SendItem]) -> list[SendResult]:
    return [SendResult("ok", i.conv, n + 1, 0, ("b",)) for n, i in enumerate(items)]


async def _until(done: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "not within the bound"
        await asyncio.sleep(0.005)


def _acked(log: list[tuple[str, str]]) -> list[str]:
    import orjson

    return [orjson.loads(f)["cid"] for kind, f in log if kind == "ack"]


async def test_an_acked_send_is_not_also_answered_outcome_unknown_during_a_slow_fan_out() -> None:
    async def commit(items: Sequence[SendItem]) -> list[SendResult]:
        await asyncio.sleep(TIMEOUT * 0.8)  # committed just before the timeout
        return _ok(items)

    srv, answers = _server(commit, deliver_delay=TIMEOUT)  # then a slow bus
    b = SendBatcher(srv)
    b.start(1)
    log: list[tuple[str, str]] = []
    b.submit(SendItem("a", "x1", "d:a:b", "{}"), Conn("c", log))  # type: ignore[arg-type]
    await asyncio.sleep(TIMEOUT * 1.2)  # the commit is over, the fan-out still running
    assert b.oldest_commit_age() == 0.0  # a slow fan-out is not a stalled commit
    await asyncio.wait_for(b.idle.wait(), 5)
    await asyncio.sleep(TIMEOUT / 5)  # two rounds of the timeout's check: nothing more comes
    assert _acked(log) == ["x1"] and answers == [], (log, answers)
    b.stop()


async def test_an_expired_send_takes_its_connections_later_sends_with_it() -> None:
    calls = 0

    async def commit(items: Sequence[SendItem]) -> list[SendResult]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(TIMEOUT * 1.1 if calls == 1 else 0.0)  # the first commit stalls
        return _ok(items)

    srv, answers = _server(commit)
    b = SendBatcher(srv)
    b.start(1)
    log: list[tuple[str, str]] = []
    c, other = Conn("c", log), Conn("o", log)
    b.submit(SendItem("a", "P", "d:a:b", "{}"), c)  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    b.submit(SendItem("a", "A", "d:a:b", "{}"), c)  # type: ignore[arg-type]  # expires queued
    await asyncio.sleep(TIMEOUT * 0.3)
    b.submit(SendItem("a", "B", "d:a:b", "{}"), c)  # type: ignore[arg-type]  # after A: goes too
    b.submit(SendItem("o", "Q", "d:b:o", "{}"), other)  # type: ignore[arg-type]  # unrelated
    await asyncio.wait_for(b.idle.wait(), 5)
    by_cid = {cid: code for cid, code, _ in answers}
    # P's commit outlived the timeout: outcome unknown (then no ack). A and B never reached the
    # database: unavailable, so the client resends them in order. Q, another connection's,
    # waited less than the timeout and commits.
    assert by_cid == {"P": "outcome_unknown", "A": "unavailable", "B": "unavailable"}, answers
    assert _acked(log) == ["Q"]
    assert b.inflight == 0 and b.idle.is_set()
    b.stop()


async def test_a_batch_that_fails_unexpectedly_still_answers_every_send() -> None:
    async def commit(items: Sequence[SendItem]) -> list[SendResult]:
        raise RuntimeError("a bug after the commit")

    srv, answers = _server(commit)
    b = SendBatcher(srv)
    b.start(1)
    log: list[tuple[str, str]] = []
    for cid in ("x1", "x2"):
        b.submit(SendItem("a", cid, "d:a:b", "{}"), Conn("c", log))  # type: ignore[arg-type]
    await asyncio.wait_for(b.idle.wait(), 5)
    assert sorted(answers) == [("x1", "outcome_unknown", "c"), ("x2", "outcome_unknown", "c")]
    assert b.idle.is_set()
    b.stop()


async def test_a_failing_degrade_keeps_the_probe_alive_and_says_blocked() -> None:
    settings = dataclasses.replace(
        Settings(database_url="postgresql://x@127.0.0.1:1/im", jwt_secret="x" * 16),
        sync_standby="b",
        sync_policy="degrade",
        sync_degrade_after=0.5,
    )

    class Conn_:
        def is_closed(self) -> bool:
            return False

        async def fetchrow(self, *_: Any) -> dict[str, Any]:
            return {
                "names": '"b"',
                "recovery": False,
                "sync_streaming": 0,
                "syncrep_waiting": 1,
                "standby_behind": None,
            }

        async def execute(self, *_: Any) -> None:
            raise TimeoutError  # ALTER SYSTEM hit the command timeout

        def terminate(self) -> None: ...

    h = HealthMonitor(settings, lambda: 1.0)
    h._conn = Conn_()
    assert (await h.check()).writes == "blocked"
    await asyncio.sleep(0.6)
    state = await h.check()  # degrade is due and fails: still blocked, said, nothing raised
    assert state.writes == "blocked" and "not confirming" in state.reason, state


async def test_a_stalled_commit_does_not_hold_back_another_workers_send() -> None:
    """A send below IM_SEND_PARALLEL_MIN waits for a running commit only as long as a commit
    normally takes: a commit stalled on one conversation (a row lock held elsewhere) must not
    make an unrelated connection's send time out."""

    async def commit(items: Sequence[SendItem]) -> list[SendResult]:
        if any(i.conv == "hot" for i in items):
            await asyncio.sleep(TIMEOUT * 3)
        else:
            await asyncio.sleep(0.001)
        return _ok(items)

    srv, answers = _server(commit)
    batcher = SendBatcher(srv)
    batcher.start(4)
    log: list[tuple[str, str]] = []
    ids = [f"c{i}" for i in range(50)]
    first = ids[0]
    other = next(i for i in ids if hash(i) % 4 != hash(first) % 4)
    try:
        batcher.submit(SendItem("a", "H", "hot", "{}"), Conn(first, log))  # type: ignore[arg-type]
        await _until(lambda: batcher.oldest_commit_age() > 0)  # the hot commit is under way
        batcher.submit(SendItem("b", "X", "quiet", "{}"), Conn(other, log))  # type: ignore[arg-type]
        # Acked within the send timeout, long before the hot commit ends (at 3x the timeout).
        await _until(lambda: "X" in _acked(log), within=TIMEOUT)
        assert ("X", "unavailable", other) not in answers
    finally:
        batcher.stop()
