"""WebSocket load generator for the IM protocol (hello -> welcome, send -> ack + msg).

Runs in its own process so that the server under test and the generator each get about one core.
Two modes:

* open loop (``rate=``): sends are scheduled at fixed intended times, total ``rate`` msgs/s spread
  round-robin over the senders. Latency is measured from the *intended* send time, so a stalled
  server (or a stalled generator) shows up as latency instead of silently lowering the offered
  load (no coordinated omission).
* closed loop (``window=``): every sender keeps ``window`` sends in flight and sends the next one
  when an ack arrives; this finds the saturation throughput.

Connections are raw picows clients: frames are handled in a synchronous callback with no per-frame
task or future, which keeps the generator cheaper than any Python server it drives.

The frame shapes live in :class:`ImProtocol`; a benchmark of the real IM server subclasses it if
the protocol grows (e.g. a different ``hello`` or acks that carry a server id).

CLI::

    python -m bench.loadgen --url ws://127.0.0.1:8080/ws --pairs 50 --rate 5000 --duration 10
    python -m bench.loadgen --url ws://127.0.0.1:8080/ws --pairs 50 --window 16 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import raise_fd_limit

__all__ = [
    "ConnectionPool",
    "ImProtocol",
    "LatencyStats",
    "LoadResult",
    "make_users",
    "open_connections",
    "raise_fd_limit",
    "run_load",
]

# (kind, client message id, server message id). kind is one of the strings below.
Event = tuple[str, str | None, object]
KINDS = frozenset({"welcome", "ack", "msg", "error"})

_now = time.perf_counter


class ImProtocol:
    """Encodes the frames the generator sends and classifies the frames it receives."""

    def hello(self, token: str) -> bytes:
        return orjson.dumps({"type": "hello", "v": 1, "token": token})

    def send(self, cid: str, to: str) -> bytes:
        return orjson.dumps({"type": "send", "cid": cid, "to": to, "body": {"text": "hi"}})

    def decode(self, payload: bytes | memoryview) -> Event:
        """Return (kind, cid, id) of an incoming frame.

        A ``msg`` may be matched to its send by ``cid`` or, when the server only forwards its
        own message id, by the ``id`` that the matching ``ack`` carried.
        """
        obj = orjson.loads(payload)
        if not isinstance(obj, dict):
            return ("other", None, None)
        kind = obj.get("type")
        if kind not in KINDS:
            return ("other", None, None)
        cid = obj.get("cid")
        return (kind, cid if isinstance(cid, str) else None, obj.get("id"))


def make_users(count: int, prefix: str = "u") -> list[tuple[str, str]]:
    """Users whose token is their name, which is what the bare relays accept."""
    return [(f"{prefix}{i}", f"{prefix}{i}") for i in range(count)]


@dataclass
class LatencyStats:
    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0

    @classmethod
    def of(cls, seconds: list[float]) -> LatencyStats:
        if not seconds:
            return cls()
        s = sorted(seconds)
        n = len(s)

        def pct(p: float) -> float:
            # Nearest-rank, so p99 of 100 samples is the 99th value rather than an interpolation.
            return round(s[min(n - 1, max(0, math.ceil(p * n) - 1))] * 1000.0, 3)

        return cls(
            count=n,
            mean_ms=round(sum(s) / n * 1000.0, 3),
            p50_ms=pct(0.50),
            p90_ms=pct(0.90),
            p99_ms=pct(0.99),
            p999_ms=pct(0.999),
            max_ms=round(s[-1] * 1000.0, 3),
        )


@dataclass
class LoadResult:
    mode: str  # "rate" (open loop) or "max" (closed loop)
    url: str
    connections: int
    senders: int
    target_rate: float | None
    window: int | None
    warmup_s: float
    duration_s: float
    # Counts cover the measurement window only (after warmup).
    sent: int
    acked: int
    delivered: int
    sent_per_s: float
    acked_per_s: float
    delivered_per_s: float
    ack: LatencyStats  # send (intended time in open loop) -> ack received
    deliver: LatencyStats  # send -> msg received by the peer
    ack_p99_per_s: list[float]  # p99 of the messages sent in each second of the window
    deliver_p99_per_s: list[float]
    unacked: int  # sent in the window, no ack by the end of the drain period
    undelivered: int
    errors: int
    error_kinds: dict[str, int]
    other_frames: int  # frames of a type the protocol does not track (not errors)
    connect_s: float
    loadgen_cpu: float  # share of one core this process used during the window
    max_send_lag_ms: float  # open loop: worst delay of a send behind its intended time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Msg:
    __slots__ = ("acked", "bucket", "counted", "delivered", "t0")

    def __init__(self, t0: float, counted: bool, bucket: int) -> None:
        self.t0 = t0
        self.counted = counted
        self.bucket = bucket
        self.acked = False
        self.delivered = False


@dataclass
class _Run:
    """Bookkeeping shared by all connections of one run (one event loop, so no locking)."""

    proto: ImProtocol
    w0: float = math.inf
    w1: float = math.inf
    closed_loop: bool = False
    stopping: bool = False
    pending: dict[str, _Msg] = field(default_factory=dict)
    id_to_cid: dict[object, str] = field(default_factory=dict)
    early: dict[object, float] = field(default_factory=dict)
    # Latencies grouped by the second of the window in which the message was sent: the
    # per-second p99s separate a stack's tail from a one-off stall (e.g. a vCPU preemption).
    ack_lat: list[list[float]] = field(default_factory=list)
    del_lat: list[list[float]] = field(default_factory=list)
    sent_in_window: int = 0
    acks_in_window: int = 0
    deliveries_in_window: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    other_frames: int = 0
    # Idle/listener pools only count what they receive: they sent nothing to match it against.
    passive: bool = False
    passive_msgs: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def on_ack(self, cid: str | None, mid: object, now: float) -> bool:
        m = self.pending.get(cid) if cid is not None else None
        if m is None or cid is None:
            self.error("unknown_ack")
            return False
        if m.acked:
            self.error("duplicate_ack")
            return False
        m.acked = True
        if self.w0 <= now <= self.w1:
            self.acks_in_window += 1
        if m.counted:
            self.ack_lat[m.bucket].append(now - m.t0)
        if not m.delivered and mid is not None:
            t = self.early.pop(mid, None)
            if t is None:
                self.id_to_cid[mid] = cid
            else:
                self._delivered(m, t)
        if m.delivered:
            del self.pending[cid]
        return True

    def on_msg(self, cid: str | None, mid: object, now: float) -> None:
        if self.passive:
            self.passive_msgs += 1
            return
        if cid is None:
            if mid is None:
                self.error("msg_without_id")
                return
            cid = self.id_to_cid.pop(mid, None)
            if cid is None:
                # Delivered before the sender saw its ack; resolved when the ack arrives.
                self.early[mid] = now
                return
        elif mid is not None:
            self.id_to_cid.pop(mid, None)
        m = self.pending.get(cid)
        if m is None:
            self.error("unknown_msg")
            return
        self._delivered(m, now)
        if m.acked:
            del self.pending[cid]

    def _delivered(self, m: _Msg, now: float) -> None:
        if m.delivered:
            self.error("duplicate_msg")
            return
        m.delivered = True
        if self.w0 <= now <= self.w1:
            self.deliveries_in_window += 1
        if m.counted:
            self.del_lat[m.bucket].append(now - m.t0)

    def outstanding(self) -> tuple[int, int]:
        unacked = undelivered = 0
        for m in self.pending.values():
            if m.counted:
                unacked += not m.acked
                undelivered += not m.delivered
        return unacked, undelivered


class _Client(WSListener):
    """One connection; all protocol handling happens in picows' frame callback."""

    def __init__(self, run: _Run, index: int, token: str, peer: str | None) -> None:
        super().__init__()
        self.run = run
        self.prefix = f"{index}-"
        self.token = token
        self.peer = peer
        self.n = 0
        self.transport: WSTransport | None = None
        self.welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send_one(self, intended: float | None) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected or self.peer is None:
            self.run.error("send_on_closed")
            return
        self.n += 1
        cid = self.prefix + str(self.n)
        now = _now()
        # Open loop may send slightly ahead of schedule; min() then measures from the real send
        # time, and a late send from the time it should have gone out.
        t0 = now if intended is None else min(intended, now)
        run = self.run
        counted = run.w0 <= t0 < run.w1
        bucket = min(int(t0 - run.w0), len(run.ack_lat) - 1) if counted else 0
        run.pending[cid] = _Msg(t0, counted, bucket)
        if counted:
            run.sent_in_window += 1
        transport.send(WSMsgType.TEXT, run.proto.send(cid, self.peer))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY:
            now = _now()
            run = self.run
            try:
                kind, cid, mid = run.proto.decode(frame.get_payload_as_memoryview())
            except orjson.JSONDecodeError:
                run.error("bad_json")
                return
            if kind == "ack":
                if run.on_ack(cid, mid, now) and run.closed_loop and now < run.w1:
                    self.send_one(None)
            elif kind == "msg":
                run.on_msg(cid, mid, now)
            elif kind == "welcome":
                if not self.welcome.done():
                    self.welcome.set_result(None)
            elif kind == "error":
                run.error("server_error")
            else:
                # Not an error: a real server also pushes presence, receipts and the like.
                run.other_frames += 1
        elif mt is WSMsgType.CLOSE:
            if not self.run.stopping:
                self.run.error("server_close")
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError("disconnected before welcome"))
        elif not self.run.stopping:
            self.run.error("disconnected")


class ConnectionPool:
    """Connections that completed hello -> welcome; the rest are counted in ``failures``."""

    def __init__(self, run: _Run, slots: list[_Client | None], failures: dict[str, int]) -> None:
        self._run = run
        # Index i is the i-th requested connection, None where it failed.
        self.slots = slots
        self.clients = [c for c in slots if c is not None]
        self.failures = failures

    def __len__(self) -> int:
        return len(self.clients)

    @property
    def received(self) -> int:
        """``msg`` frames these connections received (e.g. as group members)."""
        return self._run.passive_msgs

    async def close(self, timeout: float = 5.0) -> None:
        self._run.stopping = True
        for c in self.clients:
            t = c.transport
            if t is not None and not t.is_disconnected:
                t.send_close(WSCloseCode.OK)
                t.disconnect()
        waits = [c.transport.wait_disconnected() for c in self.clients if c.transport is not None]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout)


async def _open(
    url: str,
    run: _Run,
    specs: Sequence[tuple[str, str | None]],
    concurrency: int,
    timeout: float,
) -> ConnectionPool:
    """Open one connection per (token, peer) spec and complete hello -> welcome on each."""
    sem = asyncio.Semaphore(concurrency)
    failures: dict[str, int] = {}
    slots: list[_Client | None] = [None] * len(specs)

    async def one(i: int, token: str, peer: str | None) -> None:
        async with sem:
            client = _Client(run, i, token, peer)
            factory: Callable[[], _Client] = lambda: client  # noqa: E731
            try:
                transport, _ = await ws_connect(
                    factory, url, websocket_handshake_timeout=timeout, enable_auto_ping=False
                )
                transport.send(WSMsgType.TEXT, run.proto.hello(token))
                await asyncio.wait_for(client.welcome, timeout)
            except Exception as exc:  # every failure is counted, not fatal
                key = type(exc).__name__
                failures[key] = failures.get(key, 0) + 1
                if client.transport is not None:
                    client.transport.disconnect(graceful=False)
                return
            slots[i] = client

    await asyncio.gather(*(one(i, tok, peer) for i, (tok, peer) in enumerate(specs)))
    return ConnectionPool(run, slots, failures)


async def open_connections(
    url: str,
    tokens: Sequence[str],
    *,
    protocol: ImProtocol | None = None,
    concurrency: int = 64,
    timeout: float = 10.0,
) -> ConnectionPool:
    """Open connections that only listen (hello done, nothing sent).

    For memory per idle connection, or as extra group members during a run; ``msg`` frames they
    get are counted in ``received``, not matched to sends.
    """
    run = _Run(protocol or ImProtocol(), passive=True)
    return await _open(url, run, [(t, None) for t in tokens], concurrency, timeout)


async def run_load(
    url: str,
    users: Sequence[tuple[str, str]],
    *,
    pairs: int,
    rate: float | None = None,
    window: int | None = None,
    duration: float = 10.0,
    warmup: float = 2.0,
    drain: float = 2.0,
    bidirectional: bool = False,
    protocol: ImProtocol | None = None,
    connect_concurrency: int = 64,
    connect_timeout: float = 10.0,
    on_phase: Callable[[str], None] | None = None,
) -> LoadResult:
    """Drive ``url`` with ``pairs`` sender->receiver pairs and measure acks and deliveries.

    ``users`` holds (user name, token) and needs ``2 * pairs`` entries: user ``2i`` sends to user
    ``2i + 1`` (and back if ``bidirectional``). Exactly one of ``rate`` (open loop, total msgs/s)
    and ``window`` (closed loop, in-flight sends per sender) must be given. Messages are counted
    in the ``duration`` seconds after ``warmup``; ``drain`` bounds the wait for late replies.
    ``on_phase`` is called with "measure_start" and "measure_end" as the window opens and closes,
    so a caller can sample the server's CPU over exactly that window.
    """
    if (rate is None) == (window is None):
        raise ValueError("give exactly one of rate (open loop) or window (closed loop)")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if window is not None and window < 1:
        raise ValueError("window must be >= 1")
    if len(users) < 2 * pairs:
        raise ValueError(f"need {2 * pairs} users for {pairs} pairs, got {len(users)}")

    run = _Run(protocol or ImProtocol(), closed_loop=window is not None)
    specs: list[tuple[str, str | None]] = []
    for p in range(pairs):
        (a_name, a_tok), (b_name, b_tok) = users[2 * p], users[2 * p + 1]
        specs.append((a_tok, b_name))
        specs.append((b_tok, a_name if bidirectional else None))

    t_connect = _now()
    pool = await _open(url, run, specs, connect_concurrency, connect_timeout)
    connect_s = _now() - t_connect
    for kind, n in pool.failures.items():
        run.errors[f"connect_{kind}"] = n
    slots = pool.slots
    # A pair only counts if both ends are up, otherwise deliveries would be reported as lost.
    senders: list[_Client] = []
    for p in range(pairs):
        a, b = slots[2 * p], slots[2 * p + 1]
        if a is not None and b is not None:
            senders.append(a)
            if bidirectional:
                senders.append(b)
    if not senders:
        await pool.close()
        raise ConnectionError(f"no complete pair connected: {pool.failures}")

    n_buckets = max(1, math.ceil(duration))
    run.ack_lat = [[] for _ in range(n_buckets)]
    run.del_lat = [[] for _ in range(n_buckets)]
    start = _now() + 0.05
    run.w0 = start + warmup
    run.w1 = run.w0 + duration
    max_lag = 0.0
    cpu0 = cpu1 = 0.0
    cpu_marked = False

    await asyncio.sleep(max(0.0, start - _now()))
    if window is not None:
        for s in senders:
            for _ in range(window):
                s.send_one(None)
        await asyncio.sleep(max(0.0, run.w0 - _now()))
        cpu0 = time.process_time()
        if on_phase is not None:
            on_phase("measure_start")
        await asyncio.sleep(max(0.0, run.w1 - _now()))
        cpu1 = time.process_time()
        if on_phase is not None:
            on_phase("measure_end")
    else:
        assert rate is not None
        interval = 1.0 / rate
        n_senders = len(senders)
        # Event-loop timers fire up to ~1-2 ms late, which would dominate sub-ms latencies. So each
        # wakeup also sends what falls due within the lookahead; send_one() measures those early
        # sends from their real send time (not understated), while sends delayed by a stall are
        # still measured from their intended time (no coordinated omission). No busy-waiting, so
        # loadgen_cpu stays meaningful.
        tick = 0.001
        lookahead = 0.002
        k = 0
        while True:
            now = _now()
            if not cpu_marked and now >= run.w0:
                cpu0 = time.process_time()
                cpu_marked = True
                if on_phase is not None:
                    on_phase("measure_start")
            if now >= run.w1:
                break
            due = int((min(now + lookahead, run.w1) - start) / interval)
            if k < due:
                lag = now - (start + k * interval)
                if lag > max_lag and now >= run.w0:
                    max_lag = lag
                while k < due:
                    senders[k % n_senders].send_one(start + k * interval)
                    k += 1
            next_t = start + k * interval
            await asyncio.sleep(max(tick, next_t - _now() - lookahead))
        cpu1 = time.process_time()
        if on_phase is not None:
            on_phase("measure_end")

    drain_end = _now() + drain
    while _now() < drain_end:
        unacked, undelivered = run.outstanding()
        if unacked == 0 and undelivered == 0:
            break
        await asyncio.sleep(0.02)
    unacked, undelivered = run.outstanding()
    await pool.close()

    total_errors = sum(run.errors.values())
    return LoadResult(
        mode="max" if window is not None else "rate",
        url=url,
        connections=len(pool),
        senders=len(senders),
        target_rate=rate,
        window=window,
        warmup_s=warmup,
        duration_s=duration,
        sent=run.sent_in_window,
        acked=run.acks_in_window,
        delivered=run.deliveries_in_window,
        sent_per_s=round(run.sent_in_window / duration, 1),
        acked_per_s=round(run.acks_in_window / duration, 1),
        delivered_per_s=round(run.deliveries_in_window / duration, 1),
        ack=LatencyStats.of([x for b in run.ack_lat for x in b]),
        deliver=LatencyStats.of([x for b in run.del_lat for x in b]),
        ack_p99_per_s=[LatencyStats.of(b).p99_ms for b in run.ack_lat],
        deliver_p99_per_s=[LatencyStats.of(b).p99_ms for b in run.del_lat],
        unacked=unacked,
        undelivered=undelivered,
        errors=total_errors,
        error_kinds=dict(sorted(run.errors.items())),
        other_frames=run.other_frames,
        connect_s=round(connect_s, 3),
        loadgen_cpu=round((cpu1 - cpu0) / duration, 3),
        max_send_lag_ms=round(max_lag * 1000.0, 3),
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="ws:// URL of the server")
    p.add_argument("--pairs", type=int, default=50, help="sender->receiver pairs (2x connections)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="open loop: total msgs/s")
    mode.add_argument("--window", type=int, help="closed loop: in-flight sends per sender")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before")
    p.add_argument("--drain", type=float, default=2.0, help="max seconds to wait for late replies")
    p.add_argument("--bidirectional", action="store_true", help="receivers send back too")
    p.add_argument(
        "--users-file", help="JSON list of [user, token]; default: generated names as tokens"
    )
    p.add_argument("--user-prefix", default="u", help="prefix of generated user names")
    p.add_argument("--uvloop", action="store_true", help="run the generator on uvloop")
    p.add_argument("--cpu", type=int, help="pin this process to one CPU")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument(
        "--phase-marks",
        action="store_true",
        help='print "#phase measure_start|measure_end" lines to stderr as the window opens/closes',
    )
    return p.parse_args(argv)


def _print_phase(name: str) -> None:
    sys.stderr.write(f"#phase {name}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_fd_limit()
    if args.users_file:
        with open(args.users_file, "rb") as uf:
            users = [(str(u), str(t)) for u, t in orjson.loads(uf.read())]
    else:
        users = make_users(2 * args.pairs, args.user_prefix)

    async def go() -> LoadResult:
        return await run_load(
            args.url,
            users,
            pairs=args.pairs,
            rate=args.rate,
            window=args.window,
            duration=args.duration,
            warmup=args.warmup,
            drain=args.drain,
            bidirectional=args.bidirectional,
            on_phase=_print_phase if args.phase_marks else None,
        )

    if args.uvloop:
        import uvloop

        result = uvloop.run(go())
    else:
        result = asyncio.run(go())
    doc = orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2)
    if args.out:
        with open(args.out, "wb") as f:
            f.write(doc)
    sys.stdout.buffer.write(doc + b"\n")
    sys.stdout.flush()
    return 0 if result.errors == 0 and result.unacked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
