"""The open-loop load generator: N connections, K senders with P fixed peers each, a rate sweep.

Not ``bench.loadgen.run_load``: that opens and closes its connections on every call and gives each
sender one peer. This shape keeps the same N sessions through the whole sweep (reconnecting 5,000
sessions per rate would measure a connect storm, not the steady state) and rotates each sender
over P peers. Percentiles are ``bench.loadgen.LatencyStats``, so the two report alike.

Every message carries its own id: in the ``cid`` (echoed by the ack) and as the first 16 hex
digits of its 64-byte body (echoed in the ``msg`` push by the IM server and by the bare relays
alike), so a delivery is matched without waiting for the ack, whichever arrives first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.loadgen import LatencyStats

_now = time.perf_counter

BODY_BYTES = 64
# A bytes template is cheaper than orjson.dumps of a dict per send, which matters at 10k/s on a
# core that must stay far from busy.
_SEND = b'{"type":"send","cid":"%x","to":"%s","body":"%016x' + b"." * (BODY_BYTES - 16) + b'"}'
_HELLO = b'{"type":"hello","v":1,"token":"%s"}'

ACKED = 1
DELIVERED = 2
COUNTED = 4  # scheduled inside a step's measured window

# Timers fire up to ~1-2 ms late, which would swamp sub-millisecond latencies; each wakeup also
# sends what falls due within the lookahead. Those few early sends are measured from their real
# send time, late ones from their scheduled time (no coordinated omission), as bench.loadgen does.
TICK = 0.001
LOOKAHEAD = 0.002


def sender_peers(connections: int, senders: int, peers: int) -> list[list[int]]:
    """Connection indexes each sender writes to: senders are 0..K-1, receivers the rest, spread
    so that as many receivers as possible have exactly one sender."""
    if not 0 < senders < connections:
        raise ValueError("need 0 < senders < connections")
    receivers = connections - senders
    return [[senders + (i * peers + j) % receivers for j in range(peers)] for i in range(senders)]


@dataclass
class Step:
    """One rate of the sweep (or the warm-up that creates the conversations)."""

    rate: float
    w0: float = math.inf
    w1: float = math.inf
    sent: int = 0  # scheduled inside [w0, w1)
    acked: int = 0
    delivered: int = 0
    delivered_in_window: int = 0  # deliveries that happened inside [w0, w1), of any step
    ack_lat: list[float] = field(default_factory=list)
    del_lat: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # scheduler wakeups behind plan (s)
    cpu_s: float = 0.0  # this process's CPU over the window
    drained_s: float = 0.0
    settled: asyncio.Event | None = None  # set when the window's last reply arrives (drain)

    def outstanding(self) -> int:
        return 2 * self.sent - self.acked - self.delivered


class _Conn(WSListener):
    """One session; frames are handled in picows' synchronous callback, no task per frame."""

    def __init__(self, gen: Generator, hello: bytes) -> None:
        super().__init__()
        self.gen = gen
        self.hello = hello
        self.transport: WSTransport | None = None
        self.welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, self.hello)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY:
            self.gen.on_frame(self, frame.get_payload_as_memoryview())
        elif mt is WSMsgType.CLOSE:
            if not self.gen.stopping:
                self.gen.error("server_close")
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError("disconnected before welcome"))
        elif not self.gen.stopping:
            self.gen.error("disconnected")


class Generator:
    """All sessions of one system under test, and every message sent to it."""

    def __init__(
        self, url: str, tokens: Sequence[str], names: Sequence[str], senders: int, peers: int
    ):
        self.url = url
        self.tokens = list(tokens)
        self.conns: list[_Conn] = []
        plan = sender_peers(len(tokens), senders, peers)
        self.peer_names = [[names[j].encode() for j in row] for row in plan]
        self.senders = senders
        self.peers = peers
        # Per message id: latency origin, step index, state bits. Arrays, not objects: a sweep
        # at 10k/s sends about a million messages.
        self.t0 = array("d")
        self.step_of = array("H")
        self.state = bytearray()
        self.steps: list[Step] = []
        self.k = 0  # round-robin position over (sender, peer), continued across steps
        self.errors: dict[str, int] = {}
        self.other_frames = 0
        self.stopping = False

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # -- receiving ------------------------------------------------------------------------

    def on_frame(self, conn: _Conn, payload: memoryview) -> None:
        now = _now()
        try:
            obj = orjson.loads(payload)
            kind = obj.get("type")
            if kind == "msg":
                self._mark(int(obj["body"][:16], 16), DELIVERED, now)
            elif kind == "ack":
                if obj.get("duplicate"):
                    self.error("duplicate_ack")  # a cid reused: the message was not sent again
                else:
                    self._mark(int(obj["cid"], 16), ACKED, now)
            elif kind == "welcome":
                if not conn.welcome.done():
                    conn.welcome.set_result(None)
            elif kind == "error":
                self.error(f"server_{obj.get('code')}")
            else:
                self.other_frames += 1
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            self.error("bad_frame")

    def _mark(self, mid: int, bit: int, now: float) -> None:
        if not 0 <= mid < len(self.state):
            self.error("unknown_id")
            return
        st = self.state[mid]
        if st & bit:
            self.error("duplicate_ack" if bit == ACKED else "duplicate_msg")
            return
        self.state[mid] = st | bit
        step = self.steps[self.step_of[mid]]
        if st & COUNTED:
            if bit == ACKED:
                step.acked += 1
                step.ack_lat.append(now - self.t0[mid])
            else:
                step.delivered += 1
                step.del_lat.append(now - self.t0[mid])
            if step.settled is not None and step.outstanding() == 0:
                step.settled.set()
        if bit == DELIVERED:
            cur = self.steps[-1]
            if cur.w0 <= now < cur.w1:
                cur.delivered_in_window += 1

    # -- sending --------------------------------------------------------------------------

    def _send(self, intended: float, step: Step, step_ix: int, counted: bool) -> None:
        i = self.k % self.senders
        peer = self.peer_names[i][(self.k // self.senders) % self.peers]
        self.k += 1
        mid = len(self.state)
        now = _now()
        self.t0.append(min(intended, now))
        self.step_of.append(step_ix)
        self.state.append(COUNTED if counted else 0)
        if counted:
            step.sent += 1
        t = self.conns[i].transport
        if t is None or t.is_disconnected:
            self.error("send_on_closed")  # stays unacked/undelivered: counts as lost
            return
        t.send(WSMsgType.TEXT, _SEND % (mid, peer, mid))

    async def _schedule(
        self,
        step: Step,
        step_ix: int,
        start: float,
        end: float,
        limit: int | None = None,
        on_edge: Callable[[str], None] | None = None,
    ) -> None:
        """Send at ``step.rate`` from ``start`` until ``end`` (or ``limit`` messages), whatever
        the server answers; ``on_edge`` is called as the window [w0, w1) opens and closes."""
        interval = 1.0 / step.rate
        k = 0
        opened = False
        while True:
            now = _now()
            if not opened and now >= step.w0:
                opened = True
                step.cpu_s = -time.process_time()
                if on_edge is not None:
                    on_edge("start")
            if now >= end or (limit is not None and k >= limit):
                break
            due = math.floor((min(now + LOOKAHEAD, end) - start) / interval) + 1
            if limit is not None:
                due = min(due, limit)
            if k < due:
                lag = now - (start + k * interval)
                if step.w0 <= now < step.w1:
                    step.lag.append(max(0.0, lag))
                while k < due:
                    t = start + k * interval
                    if t >= end:
                        break
                    self._send(t, step, step_ix, step.w0 <= t < step.w1)
                    k += 1
            await asyncio.sleep(max(TICK, start + k * interval - _now() - LOOKAHEAD))
        if opened:
            step.cpu_s += time.process_time()
        if on_edge is not None and opened:
            on_edge("end")

    # -- phases ---------------------------------------------------------------------------

    async def connect(self, concurrency: int = 64, timeout: float = 20.0) -> dict[str, Any]:
        """Open every session and wait for its welcome; any failure aborts (the shape would be
        smaller than it says)."""
        sem = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}
        conns: list[_Conn | None] = [None] * len(self.tokens)

        async def one(i: int) -> None:
            async with sem:
                c = _Conn(self, _HELLO % self.tokens[i].encode())
                try:
                    await ws_connect(
                        lambda: c, self.url, websocket_handshake_timeout=timeout,
                        enable_auto_ping=False,
                    )  # fmt: skip
                    await asyncio.wait_for(c.welcome, timeout)
                except Exception as exc:  # every failure is counted, then reported at once
                    key = type(exc).__name__
                    failures[key] = failures.get(key, 0) + 1
                    if c.transport is not None:
                        c.transport.disconnect(graceful=False)
                    return
                conns[i] = c

        t0 = _now()
        await asyncio.gather(*(one(i) for i in range(len(self.tokens))))
        self.conns = [c for c in conns if c is not None]
        if failures:
            await self.close()
            raise ConnectionError(
                f"{sum(failures.values())} of {len(self.tokens)} sessions failed: {failures}"
            )
        return {"connections": len(self.conns), "connect_s": round(_now() - t0, 2)}

    async def warm(self, rate: float, timeout: float) -> dict[str, Any]:
        """One message from every sender to each of its peers, so every conversation exists
        before the first measured step; paced, so the server is not measured on a burst."""
        step = Step(rate)
        self.steps.append(step)
        n = self.senders * self.peers
        start = _now() + 0.01
        t0 = _now()
        await self._schedule(step, len(self.steps) - 1, start, math.inf, limit=n)
        first, last = len(self.state) - n, len(self.state)
        deadline = _now() + timeout
        full = ACKED | DELIVERED
        while _now() < deadline:
            if all(self.state[m] & full == full for m in range(first, last)):
                break
            await asyncio.sleep(0.05)
        done = sum(1 for m in range(first, last) if self.state[m] & full == full)
        return {"messages": n, "complete": done, "seconds": round(_now() - t0, 2)}

    async def step(
        self,
        rate: float,
        lead_in: float,
        duration: float,
        drain: float,
        on_edge: Callable[[str], None] | None = None,
    ) -> Step:
        """Send at ``rate`` for ``lead_in`` (not measured) then ``duration`` (measured), then
        wait at most ``drain`` for the window's acks and deliveries."""
        step = Step(rate)
        self.steps.append(step)
        start = _now() + 0.02
        step.w0 = start + lead_in
        step.w1 = step.w0 + duration
        await self._schedule(step, len(self.steps) - 1, start, step.w1, on_edge=on_edge)
        t_end = _now()
        if step.outstanding() > 0:
            step.settled = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(step.settled.wait(), drain)
        step.drained_s = _now() - t_end
        return step

    async def close(self, timeout: float = 10.0) -> None:
        self.stopping = True
        for c in self.conns:
            t = c.transport
            if t is not None and not t.is_disconnected:
                t.send_close(WSCloseCode.OK)
                t.disconnect()
        waits = [c.transport.wait_disconnected() for c in self.conns if c.transport is not None]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout)


def step_stats(step: Step, duration: float) -> dict[str, Any]:
    """The generator's view of one step; the orchestrator adds the servers' CPU and memory."""
    sent = max(1, step.sent)
    lag = LatencyStats.of(step.lag)
    return {
        "offered_per_s": step.rate,
        "sent": step.sent,
        "delivered_pct": round(100.0 * step.delivered / sent, 3),
        "acked_pct": round(100.0 * step.acked / sent, 3),
        "delivered_in_window_per_s": round(step.delivered_in_window / duration, 1),
        "deliver": asdict(LatencyStats.of(step.del_lat)),
        "ack": asdict(LatencyStats.of(step.ack_lat)),
        "drain_s": round(step.drained_s, 2),
        "loadgen_cpu": round(step.cpu_s / duration, 3),
        "loadgen_us_per_msg": round(step.cpu_s / sent * 1e6, 1),
        "send_lag_p99_ms": lag.p99_ms,
        "send_lag_max_ms": lag.max_ms,
    }
