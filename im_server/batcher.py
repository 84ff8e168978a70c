"""The send path between a parsed send frame and its ack: queues, commits, the send timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from im_server import protocol
from im_server.errors import AccessError, ErrorCode, ImError, UnavailableError
from im_server.store import SendItem, SendResult

if TYPE_CHECKING:
    from im_server.server import Connection, ImServer

log = logging.getLogger("im_server")


@dataclass(slots=True)
class _PendingSend:
    item: SendItem
    conn: Connection
    t0: float
    answered: bool = False  # the send timeout answered it; a late commit is pushed, not acked


class _Worker:
    """One worker's state: a connection's sends all land in one queue, so they commit in order;
    the running batch and its start are what the send timeout and /readyz look at."""

    __slots__ = ("borrowed", "held", "queue", "running", "started", "task", "wake")

    def __init__(self) -> None:
        self.queue: deque[_PendingSend] = deque()
        self.wake = asyncio.Event()
        self.running: list[_PendingSend] = []
        self.started = 0.0  # when the running commit started; 0.0 when idle
        self.task: asyncio.Task[None] | None = None
        # Workers whose queued sends this one's running commit took; while it runs, they
        # are ``held``: their later sends must not commit beside their earlier ones.
        self.borrowed: list[_Worker] = []
        self.held = False

    def done_committing(self) -> None:
        self.running = []
        self.started = 0.0
        for other in self.borrowed:
            other.held = False
        self.borrowed = []


class SendBatcher:
    """Group commit: concurrent sends share one transaction (one fsync) per batch.

    Every send is answered within the send timeout: one still queued then gets
    ``unavailable`` (it never reached the database), one whose commit is under way gets
    ``outcome_unknown`` (resend with the same cid). A commit that finishes later is still pushed
    to its recipients.
    """

    def __init__(self, server: ImServer) -> None:
        self.server = server
        s = server.settings
        self.max = s.batch_max
        self.linger = s.batch_linger_ms / 1000
        self.timeout = s.send_timeout
        # Below this many queued sends a worker does not start a commit while another one runs:
        # it waits for that commit to end and then takes everything queued meanwhile. At low
        # rates this keeps one commit in flight (each one costs PostgreSQL about 1 ms of CPU,
        # whatever its size, and 4 workers committing 1-2 sends each spent a one-core budget
        # on that); at high rates the queues pass the bar while a commit runs and the workers
        # commit in parallel as before. Measured in docs/benchmarks.md.
        self.parallel_min = s.send_parallel_min
        # ... but not for longer than a commit normally takes: behind a commit stalled on one
        # conversation (a row lock held elsewhere), other connections commit on their own.
        self.hold_max = s.send_hold_max_ms / 1000
        # A connection always on the same worker: its sends commit in the order it sent them,
        # while different connections commit in parallel.
        self.workers: list[_Worker] = []
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._expiry: asyncio.Task[None] | None = None

    def start(self, n: int) -> None:
        self.workers = [_Worker() for _ in range(n)]
        for w in self.workers:
            w.task = asyncio.create_task(self._work(w))
        self._expiry = asyncio.create_task(self._expire())

    def stop(self) -> None:
        for task in [w.task for w in self.workers] + [self._expiry]:
            if task is not None:
                task.cancel()

    def submit(self, item: SendItem, conn: Connection) -> None:
        self.inflight += 1
        self.idle.clear()
        w = self.workers[hash(conn.id) % len(self.workers)]
        w.queue.append(_PendingSend(item, conn, time.perf_counter()))
        # A worker held back by another's commit would only wake to wait again: one wakeup per
        # send, for nothing. The first send of an empty queue does wake it, so that it waits
        # for the running commit with a deadline (hold_max) rather than for as long as it runs.
        q = w.queue
        if not w.held and (len(q) == 1 or len(q) >= self.parallel_min or not self._committing()):
            w.wake.set()

    def oldest_commit_age(self) -> float:
        now = time.perf_counter()
        return max((now - w.started for w in self.workers if w.started), default=0.0)

    def _committing(self) -> bool:
        return any(w.started for w in self.workers)

    def _commit_over(self, w: _Worker) -> None:
        """``w``'s commit has returned: workers held back by it may go."""
        if not w.started:
            return
        w.done_committing()
        for other in self.workers:
            if other.queue and other is not w:
                other.wake.set()

    def _take(self, w: _Worker) -> list[_PendingSend]:
        """The next batch for ``w``: its own queue, and, when no other commit runs, the other
        queues too (each in its order), so that a low rate makes one commit of everything
        queued rather than one small commit per worker. No await between the check and
        ``started``: no other commit can begin in between."""
        q = w.queue
        batch = [q.popleft() for _ in range(min(len(q), self.max))]
        if self._committing():
            return batch
        for other in self.workers:
            room = self.max - len(batch)
            if other is w or not other.queue or room <= 0:
                continue
            oq = other.queue
            batch += [oq.popleft() for _ in range(min(len(oq), room))]
            other.held = True
            w.borrowed.append(other)
        return batch

    def _finished(self, n: int) -> None:
        self.inflight -= n
        if self.inflight == 0:
            self.idle.set()

    def _answer(self, p: _PendingSend, exc: ImError) -> None:
        """Answer ``p`` with an error unless something answered it already."""
        if not p.answered:
            p.answered = True
            self.server.send_error(p.conn, exc, {"cid": p.item.cid})

    async def _work(self, w: _Worker) -> None:
        q = w.queue
        while True:
            if not q or w.held:
                # Woken by a submit to this worker, or by the end of the commit holding it.
                w.wake.clear()
                await w.wake.wait()
                continue
            if len(q) < self.parallel_min and self._committing():
                held_for = self.hold_max - self.oldest_commit_age()
                if held_for > 0:
                    # Woken by the end of any worker's commit, or gives up waiting for it.
                    w.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(w.wake.wait(), held_for)
                    continue
            if self.linger and len(q) < self.max:
                await asyncio.sleep(self.linger)
                if w.held:  # another worker's commit took this queue's sends meanwhile
                    continue
            batch = self._take(w)
            if not batch:  # all expired (or taken by another worker) during the linger
                continue
            w.running = batch
            w.started = time.perf_counter()
            try:
                await self._commit(w, batch)
            except Exception:
                log.exception("send batch failed")
                # Every send is answered: the failure may have come after the commit.
                failed = UnavailableError(
                    ErrorCode.OUTCOME_UNKNOWN,
                    "internal error during the commit; resend with the same cid",
                )
                for p in batch:
                    self._answer(p, failed)
            finally:
                self._commit_over(w)
                self._finished(len(batch))

    async def _expire(self) -> None:
        """Answer every send that has waited the send timeout (checked every tenth of it)."""
        metrics = self.server.metrics
        period = min(0.5, self.timeout / 10)
        never_sent = UnavailableError(
            ErrorCode.UNAVAILABLE,
            f"writes are stalled: not sent to the database within {self.timeout:g}s,"
            " nothing was committed; resend with the same cid",
        )
        unknown = UnavailableError(
            ErrorCode.OUTCOME_UNKNOWN,
            f"the commit has not finished within {self.timeout:g}s (the database or its"
            " synchronous standby is stalled): it may or may not be committed; resend with the"
            " same cid",
        )
        while True:
            await asyncio.sleep(period)
            limit = time.perf_counter() - (self.timeout - period)
            for w in self.workers:
                q = w.queue
                if not q or q[0].t0 > limit:
                    expired = []
                else:
                    # A connection's later sends go with its expired one: left queued, they
                    # would commit before the client's resend of it (sends commit in order).
                    conns = {p.conn for p in q if p.t0 <= limit}
                    expired = [p for p in q if p.conn in conns]
                    kept = [p for p in q if p.conn not in conns]
                    q.clear()
                    q.extend(kept)
                for p in expired:
                    self._answer(p, never_sent)
                if expired:
                    metrics.send_timeouts.inc(len(expired))
                    self._finished(len(expired))
                for p in w.running:
                    if not p.answered and p.t0 <= limit:
                        metrics.send_timeouts.inc()
                        self._answer(p, unknown)

    async def _commit(self, w: _Worker, batch: list[_PendingSend]) -> None:
        srv = self.server
        m = srv.metrics
        m.batch_size.observe(len(batch))
        try:
            results = await srv.store.send_batch([p.item for p in batch])
        except ImError as exc:
            m.db_errors.inc()
            for p in batch:
                self._answer(p, exc)
            return
        # The commit is over: from here on the send timeout has nothing to answer (a slow
        # fan-out is not a stalled commit, and an acked send must not also get outcome_unknown).
        self._commit_over(w)
        late = [p.answered for p in batch]
        for p in batch:
            p.answered = True
        now = time.perf_counter()
        # Every answer goes out before the first await: the commit's end let connections whose
        # sends this batch borrowed commit again, and their next acks must not overtake these.
        delivered: list[tuple[_PendingSend, SendResult]] = []
        for p, r, answered in zip(batch, results, late, strict=True):
            item = p.item
            if r.status == "ok":
                if not answered:
                    p.conn.push(protocol.ack(item.cid, r.conv, r.seq, r.ts), "ack")
                    m.ack_latency.observe(now - p.t0)
                delivered.append((p, r))
            elif answered:
                continue
            elif r.status == "dup":
                p.conn.push(protocol.ack(item.cid, r.conv, r.seq, r.ts, duplicate=True), "ack")
            else:
                code = ErrorCode(r.status)
                srv.send_error(
                    p.conn,
                    AccessError(code, f"cannot send to '{item.conv}': {code.value}"),
                    {"cid": item.cid},
                )
        for p, r in delivered:
            frame = protocol.msg(r.conv, r.seq, p.item.sender, r.ts, p.item.body)
            await srv.hub.deliver(r.recipients, frame, "msg", exclude=p.conn.id)
