"""The multi-node IM server (NATS fan-out): 1 node vs 2 nodes, cross-node latency, reconnect storm.

    python -m bench.cluster_load              # about 2.5 minutes, 10,000 storm clients
    python -m bench.cluster_load --quick      # about 1 minute, 3,000 storm clients

Each run first waits (at most --quiet-wait s) for the machine to be idle, so a busy box makes
it longer; every run's JSON says how busy the rest of the machine was (``other``).

One PostgreSQL, one nats-server and up to two ``im_server`` nodes, all real processes. Every
node binds one shared port (SO_REUSEPORT, as ``imctl deploy`` does) and its own port, so a run
can let the kernel spread clients or put senders on node A and receivers on node B (every
delivery then crosses NATS: the honest worst case). The load generator is ``bench.im_load``'s
worker (``bench.loadgen.run_load``) on CPU 1; the nodes are pinned to ``--node-cpus`` (default:
both on CPU 0, so 2 nodes get the same server CPU as 1 node).

Phases:

* scale: deliveries/s (closed loop, saturation) and p99 send->deliver at a fixed open-loop rate,
  for 1 node, 2 nodes on the shared port, and 2 nodes with every delivery cross-node; ratios are
  against 1 node in the same run.
* latency: p50/p99 send->deliver at a light rate, sender and receiver on the same node vs on
  different nodes.
* storm: N raw picows clients (SDK reconnect policy, resume in hello, then ``convs`` as the SDK
  does after a reconnect), each with a message it has not seen; kill -9 one node, then kill -9
  both and restart them; time until every affected client is reconnected and resynced.
* sdk: kill -9 one of two nodes under ``im_server.client.Client`` instances (fewer: one aiohttp
  session each); resynced = the missed message reached ``Client.messages``.

Prints one JSON document on stdout and a one-line summary on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import im_load, loadgen
from bench.im_load import CLIENT_CPU, Node, _pick, metric, raise_fds, run_worker
from bench.loadgen import ConnectionPool, LatencyStats
from bench.stack_compare import proc_cpu_s, system_busy_s, wait_quiet
from cli.targets.local.nats import NatsProcess
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port, free_ports
from im_server import auth
from im_server.client import Client
from im_server.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
MODULE = "bench.cluster_load"
# Before each run, wait (at most --quiet-wait s) until other processes use less than this many
# cores: the box is shared, and a run next to someone's test suite measures the test suite.
QUIET = 0.3

# --- load runs with receivers on another node ---------------------------------------------


def route_receivers(recv_url: str) -> None:
    """Make ``run_load`` open its receivers on ``recv_url`` and its senders on the URL it got.

    run_load takes one URL for both ends of every pair; patching the connection opener (in the
    worker process only) is how every delivery is made to cross nodes without a second copy of
    the load loop.
    """
    original = loadgen._open

    async def routed(
        url: str,
        run: loadgen._Run,
        specs: Sequence[tuple[str, str | None]],
        concurrency: int,
        timeout: float,
    ) -> ConnectionPool:
        send_ix = [i for i, (_, peer) in enumerate(specs) if peer is not None]
        recv_ix = [i for i, (_, peer) in enumerate(specs) if peer is None]
        # Sender cids are "<index>-<n>" by position in the list opened: senders stay unique.
        sp = await original(url, run, [specs[i] for i in send_ix], concurrency, timeout)
        rp = await original(recv_url, run, [specs[i] for i in recv_ix], concurrency, timeout)
        slots: list[loadgen._Client | None] = [None] * len(specs)
        for ix, pool in ((send_ix, sp), (recv_ix, rp)):
            for i, c in zip(ix, pool.slots, strict=True):
                slots[i] = c
        failures = dict(sp.failures)
        for k, v in rp.failures.items():
            failures[k] = failures.get(k, 0) + v
        return ConnectionPool(run, slots, failures)

    loadgen._open = routed


def load_worker(spec_json: str) -> int:
    spec = orjson.loads(spec_json)
    if spec.get("recv_url"):
        route_receivers(spec["recv_url"])
    return im_load.worker(spec_json)


# --- the reconnect storm: clients in their own process (CPU 1) ------------------------------

# The SDK's reconnect policy (full jitter, doubling), read from its signature so the two agree.
_sdk = inspect.signature(Client.__init__).parameters
BACKOFF_MIN = float(_sdk["backoff_min"].default)
BACKOFF_MAX = float(_sdk["backoff_max"].default)
HELLO_TIMEOUT = 15.0  # the SDK's wait for the welcome; here it bounds connect + upgrade too
CONVS_FRAME = orjson.dumps({"type": "convs", "rid": "c"})


@dataclass
class StormState:
    convs_after_resume: bool
    stopping: bool = False
    attempts: list[float] = field(default_factory=list)  # start time of every connect
    failures: list[tuple[float, str]] = field(default_factory=list)
    connect_errors: dict[str, int] = field(default_factory=dict)
    server_errors: dict[str, int] = field(default_factory=dict)
    empty_resumes: int = 0

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class StormClient(WSListener):
    """One device: remembers the last seq it saw and resumes from it on every reconnect."""

    def __init__(self, st: StormState, token: str, conv: str) -> None:
        super().__init__()
        self.st = st
        self.token = token
        self.conv = conv
        self.last_seq = 0
        self.resume = False  # the first hello is a cold start; later ones resume
        self.transport: WSTransport | None = None
        self.welcomed: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] | None = None
        self.sessions = 0
        self.t_welcome = self.t_batch = self.t_convs = self.t_disc = 0.0
        self.discs: list[float] = []
        self.starts: list[float] = []  # when each connect attempt began

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        hello: dict[str, Any] = {"type": "hello", "v": 1, "token": self.token}
        if self.resume:
            hello["resume"] = {self.conv: self.last_seq}
        transport.send(WSMsgType.TEXT, orjson.dumps(hello))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is WSMsgType.TEXT:
            now = time.monotonic()
            obj = orjson.loads(frame.get_payload_as_bytes())
            kind = obj.get("type")
            if kind == "welcome":
                self.t_welcome = now
                self.sessions += 1
                self.resume = True
                if self.welcomed is not None and not self.welcomed.done():
                    self.welcomed.set_result(None)
            elif kind == "batch" and obj.get("rid") is None:
                msgs = obj.get("msgs") or []
                if msgs:
                    self.last_seq = max(self.last_seq, int(msgs[-1]["seq"]))
                else:
                    self.st.empty_resumes += 1
                self.t_batch = now
                if self.st.convs_after_resume:
                    transport.send(WSMsgType.TEXT, CONVS_FRAME)
            elif kind == "convs":
                self.t_convs = now
            elif kind == "error":
                self.st.count(self.st.server_errors, str(obj.get("code")))
        elif mt is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        now = time.monotonic()
        self.t_disc = now
        self.discs.append(now)
        for fut in (self.welcomed, self.closed):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def synced(self) -> bool:
        """Back on a session (welcome after the last drop) and its resume batch arrived."""
        if self.t_welcome <= self.t_disc or self.t_batch < self.t_welcome:
            return False
        return not self.st.convs_after_resume or self.t_convs >= self.t_batch

    async def session(self, url: str, gate: asyncio.Semaphore | None) -> bool:
        """Connect, hello, stay until the connection drops; True if a welcome came."""
        loop = asyncio.get_running_loop()
        self.welcomed = loop.create_future()
        self.closed = loop.create_future()
        now = time.monotonic()
        self.st.attempts.append(now)
        self.starts.append(now)
        before = self.sessions

        async def open_and_hello() -> None:
            # asyncio.timeout, not wait_for: no extra task per attempt, and one process has to
            # start thousands of attempts at once.
            async with asyncio.timeout(HELLO_TIMEOUT):
                await ws_connect(
                    lambda: self, url, websocket_handshake_timeout=HELLO_TIMEOUT,
                    enable_auto_ping=False, read_buffer_init_size=4096,
                )  # fmt: skip
                assert self.welcomed is not None
                await self.welcomed

        try:
            if gate is not None:
                async with gate:  # setup only: a storm is not paced by anyone
                    await open_and_hello()
            else:
                await open_and_hello()
            if self.sessions > before:
                await self.closed
        except Exception as exc:  # every failure is counted and retried, as the SDK does
            self.st.count(self.st.connect_errors, type(exc).__name__)
            self.st.failures.append((time.monotonic(), type(exc).__name__))
            if self.transport is not None and not self.transport.is_disconnected:
                self.transport.disconnect(graceful=False)
        return self.sessions > before

    async def life(self, url: str, gate: asyncio.Semaphore | None) -> None:
        delay = BACKOFF_MIN
        while not self.st.stopping:
            if await self.session(url, gate):
                delay = BACKOFF_MIN
            gate = None
            if self.st.stopping:
                return
            wait = random.uniform(0, delay)
            delay = min(BACKOFF_MAX, delay * 2)
            await asyncio.sleep(wait)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.flush()


def _stats(values: list[float]) -> dict[str, float]:
    s = LatencyStats.of(values)
    # min too: after a burst, p50 close to max means nearly everyone waited for all of it.
    first = round(min(values) * 1000.0, 3) if values else 0.0
    return {"min_ms": first, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms}


async def _watch(clients: list[StormClient], st: StormState, cmd: dict[str, Any]) -> dict[str, Any]:
    """Wait until ``expect`` clients dropped after t0 and every one of them has resynced."""
    t0, expect = float(cmd["t0"]), int(cmd["expect"])
    deadline = time.monotonic() + float(cmd["timeout"])
    cpu0, w0 = time.process_time(), time.monotonic()
    hit: list[StormClient] = []
    while True:
        hit = [c for c in clients if c.t_disc >= t0]
        done = sum(c.synced() for c in hit)
        if (len(hit) >= expect and done == len(hit)) or time.monotonic() >= deadline:
            break
        # Figures come from per-client timestamps; polling slowly leaves the CPU to the storm.
        await asyncio.sleep(0.25)
    back = [c for c in hit if c.t_welcome > c.t_disc]
    synced = [c for c in hit if c.synced()]
    own = [c.t_batch - min(d for d in c.discs if d >= t0) for c in synced]
    # The SDK waits uniform(0, 50 ms) before its first reconnect; anything beyond that is this
    # one process lagging behind thousands of simultaneous drops (real devices would not).
    lag = []
    for c in hit:
        drop = min(d for d in c.discs if d >= t0)
        later = [s for s in c.starts if s >= drop]
        if later:
            lag.append(min(later) - drop)
    errors: dict[str, int] = {}
    for t, kind in st.failures:
        if t >= t0:
            st.count(errors, kind)
    out: dict[str, Any] = {
        "expected": expect,
        "dropped": len(hit),
        "reconnected": len(back),
        "resynced": len(synced),
        "all_reconnected_s": round(max(c.t_welcome - t0 for c in back), 3) if back else None,
        "all_resynced_s": round(max(c.t_batch - t0 for c in synced), 3) if synced else None,
        "reconnect_ms": _stats([c.t_welcome - t0 for c in back]),
        "resync_ms": _stats([c.t_batch - t0 for c in synced]),
        "resync_from_own_drop_ms": _stats(own),
        "drop_to_first_attempt_ms": _stats(lag),
        "connect_attempts": sum(t >= t0 for t in st.attempts),
        "connect_errors": errors,
        "client_cpu": round((time.process_time() - cpu0) / max(1e-3, time.monotonic() - w0), 3),
    }
    if st.convs_after_resume:
        out["all_convs_s"] = round(max(c.t_convs - t0 for c in synced), 3) if synced else None
        out["convs_ms"] = _stats([c.t_convs - t0 for c in synced])
    return out


async def storm_clients(spec: dict[str, Any]) -> None:
    st = StormState(convs_after_resume=bool(spec["convs"]))
    n, prefix, secret = int(spec["clients"]), str(spec["prefix"]), str(spec["secret"])
    clients = [
        StormClient(st, auth.mint(secret, f"{prefix}{i}", 7200), f"d:bot:{prefix}{i}")
        for i in range(n)
    ]
    gate = asyncio.Semaphore(int(spec["connect_concurrency"]))
    t0 = time.monotonic()
    tasks = [asyncio.create_task(c.life(spec["url"], gate)) for c in clients]
    deadline = t0 + float(spec["connect_timeout"])
    while time.monotonic() < deadline:
        if all(c.sessions for c in clients):
            break
        await asyncio.sleep(0.05)
    connected = sum(c.t_welcome > c.t_disc for c in clients)
    _emit(
        {
            "event": "ready",
            "connected": connected,
            "connect_s": round(time.monotonic() - t0, 3),
            "connect_errors": dict(st.connect_errors),
        }
    )
    async for cmd in _commands():
        _emit({"event": "watched", **await _watch(clients, st, cmd)})
    st.stopping = True
    for c in clients:
        if c.transport is not None and not c.transport.is_disconnected:
            c.transport.disconnect(graceful=False)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _emit(
        {
            "event": "stopped",
            "connect_errors": st.connect_errors,
            "server_errors": st.server_errors,
            "empty_resumes": st.empty_resumes,
        }
    )


async def _commands() -> AsyncIterator[dict[str, Any]]:
    """Commands from the orchestrator, one JSON object per stdin line, until "stop" or EOF."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd: dict[str, Any] = orjson.loads(line)
        if cmd["cmd"] == "stop":
            return
        yield cmd


async def sdk_clients(spec: dict[str, Any]) -> None:
    """The same storm with the SDK itself: a client counts as resynced when the message it
    missed reaches ``Client.messages`` (reconnect, then its own convs + sync, as an app sees it).
    """
    n, prefix, secret = int(spec["clients"]), str(spec["prefix"]), str(spec["secret"])
    clients = [Client(spec["url"], auth.mint(secret, f"{prefix}{i}", 7200)) for i in range(n)]
    gate = asyncio.Semaphore(int(spec["connect_concurrency"]))

    async def connect(c: Client) -> None:
        async with gate:
            await c.connect(timeout=float(spec["connect_timeout"]))

    t0 = time.monotonic()
    done = await asyncio.gather(*(connect(c) for c in clients), return_exceptions=True)
    failed = [type(r).__name__ for r in done if isinstance(r, BaseException)]
    home = [c.node for c in clients]
    t_back: list[float | None] = [None] * n
    t_msg: list[float | None] = [None] * n

    async def first_message(i: int) -> None:
        await clients[i].messages.get()
        t_msg[i] = time.monotonic()

    async def poll_reconnects() -> None:
        # The SDK has no reconnect callback; 10 ms polling is fine against second-scale figures.
        while True:
            now = time.monotonic()
            for i, c in enumerate(clients):
                if t_back[i] is None and c.connects > 1 and c.connected:
                    t_back[i] = now
            await asyncio.sleep(0.01)

    watchers = [asyncio.create_task(first_message(i)) for i in range(n)]
    watchers.append(asyncio.create_task(poll_reconnects()))
    _emit(
        {
            "event": "ready",
            "connected": n - len(failed),
            "connect_s": round(time.monotonic() - t0, 3),
            "connect_errors": {k: failed.count(k) for k in set(failed)},
        }
    )
    async for cmd in _commands():
        w0 = time.monotonic()
        start, node = float(cmd["t0"]), str(cmd["node"])
        hit = {i for i in range(n) if home[i] == node}
        deadline = w0 + float(cmd["timeout"])
        while time.monotonic() < deadline:
            if all(t_back[i] is not None and t_msg[i] is not None for i in hit):
                break
            await asyncio.sleep(0.02)
        back = [tb - start for i in hit if (tb := t_back[i]) is not None]
        synced = [tm - start for i in hit if (tm := t_msg[i]) is not None]
        _emit(
            {
                "event": "watched",
                "expected": len(hit),
                "reconnected": len(back),
                "resynced": len(synced),
                "all_reconnected_s": round(max(back), 3) if back else None,
                "all_resynced_s": round(max(synced), 3) if synced else None,
                "reconnect_ms": _stats(back),
                "resync_ms": _stats(synced),
                "others_got_message": sum(t_msg[i] is not None for i in range(n) if i not in hit),
            }
        )
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    _emit({"event": "stopped"})


def storm_worker(spec_path: str) -> int:
    spec = orjson.loads(Path(spec_path).read_bytes())
    os.sched_setaffinity(0, {CLIENT_CPU})
    raise_fds()
    import uvloop

    uvloop.run(sdk_clients(spec) if spec.get("sdk") else storm_clients(spec))
    return 0


# --- the system under test ------------------------------------------------------------------


@dataclass
class Cluster:
    tmp: Path
    pg: PgInstance
    nats: NatsProcess
    dsn: str
    secret: str
    env: dict[str, str]
    shared_port: int
    cpus: list[str]
    nodes: dict[str, Node] = field(default_factory=dict)
    own: dict[str, int] = field(default_factory=dict)
    _runs: int = 0

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            own = free_port()
            cpu = self.cpus[len(self.nodes) % len(self.cpus)]
            env = {**self.env, "IM_NODE_ID": name}
            log = self.tmp / f"{name}.log"
            self.nodes[name] = Node(
                env, self.shared_port, log, cpus=cpu, args=["--health-port", str(own)]
            )
            self.own[name] = own
        return self.nodes[name]

    def url(self, name: str | None = None) -> str:
        port = self.shared_port if name is None else self.own[name]
        return f"ws://127.0.0.1:{port}/ws"

    def users(self, n: int) -> list[tuple[str, str]]:
        """Fresh users for every run, so every row starts from new direct conversations."""
        self._runs += 1
        names = [f"r{self._runs}_{i}" for i in range(n)]
        return [(u, auth.mint(self.secret, u, 7200)) for u in names]

    def pids(self) -> dict[str, list[int]]:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        out: dict[str, list[int]] = {"nodes": [], "nats": [], "postgres": [], "bench": []}
        for node in self.nodes.values():
            if node.proc is not None and node.proc.returncode is None:
                out["nodes"].append(node.proc.pid)
        info = self.nats.pid_info()
        if info is not None:
            out["nats"].append(info.pid)
        pg = self.pg.pid()
        with contextlib.suppress(psutil.Error):
            if pg is not None:
                kids = psutil.Process(pg).children(recursive=True)
                out["postgres"] = [pg, *(int(k.pid) for k in kids)]
            # This process and its load/storm workers (the nodes are children too).
            known = {p for pids in out.values() for p in pids}
            mine = psutil.Process().children(recursive=True)
            out["bench"] = [os.getpid(), *(int(k.pid) for k in mine if k.pid not in known)]
        return out

    def cpu(self) -> CpuSnapshot:
        parts = {
            part: {p: c for p in pids if (c := proc_cpu_s(p)) is not None}
            for part, pids in self.pids().items()
        }
        return system_busy_s(), parts


CpuSnapshot = tuple[float, dict[str, dict[int, float]]]


def _busy(s0: CpuSnapshot, s1: CpuSnapshot, wall: float) -> dict[str, float]:
    """Cores busy per part (the machine has 2). ``other`` is everything else: other users'
    processes, and kernel time no process is charged for (loopback TCP in softirq)."""
    (m0, p0), (m1, p1) = s0, s1
    out: dict[str, float] = {}
    for part, now in p1.items():
        prev = p0.get(part, {})
        out[part] = sum(v - prev[pid] for pid, v in now.items() if pid in prev) / wall
    out["other"] = (m1 - m0) / wall - sum(out.values())
    out["machine"] = (m1 - m0) / wall
    return {k: round(v, 2) for k, v in out.items()}


async def load_run(
    cl: Cluster,
    a: argparse.Namespace,
    mode: dict[str, Any],
    url: str,
    recv_url: str | None = None,
    *,
    sample_cpu: bool = True,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "url": url,
        "users": cl.users(2 * a.pairs),
        "pairs": a.pairs,
        "duration": a.duration,
        "warmup": a.warmup,
        "protocol": "im",
        **mode,
    }
    if recv_url is not None:
        spec["recv_url"] = recv_url
    running = [n for n, node in cl.nodes.items() if node.proc and node.proc.returncode is None]
    split: dict[str, int] = {}
    busy: dict[str, float] = {}
    batches: dict[str, float] = {}

    async def sample() -> None:
        # Once every session is up, run_load starts its clock (50 ms later); CPU is read over
        # the middle 80% of the measured window so warmup and drain stay out of it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for n in running:
                split[n] = int(await metric(cl.own[n], "im_connections"))
            if sum(split.values()) >= 2 * a.pairs:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05 + a.warmup + 0.1 * a.duration)
        c0, b0, w0 = cl.cpu(), await commits(), time.monotonic()
        await asyncio.sleep(0.8 * a.duration)
        busy.update(_busy(c0, cl.cpu(), time.monotonic() - w0))
        b1 = await commits()
        txs = b1[1] - b0[1]
        batches["commits_per_s"] = round(txs / (time.monotonic() - w0), 1)
        batches["sends_per_commit"] = round((b1[0] - b0[0]) / txs, 2) if txs else 0.0

    async def commits() -> tuple[float, float]:
        # Group commit: more nodes means more concurrent transactions, each with fewer sends.
        total = count = 0.0
        for name in running:
            total += await metric(cl.own[name], "im_send_batch_size_sum")
            count += await metric(cl.own[name], "im_send_batch_size_count")
        return total, count

    budget = a.duration + a.warmup + 60
    quiet = await wait_quiet(a.quiet_wait, QUIET) if sample_cpu else None
    if sample_cpu:
        res, _ = await asyncio.gather(run_worker(spec, budget, module=MODULE), sample())
    else:
        res = await run_worker(spec, budget, module=MODULE)
    out = _pick(res)
    if "error" not in out and sample_cpu:
        out["sessions_per_node"] = split
        out["cores_busy"] = busy
        out["group_commit"] = batches
        out["others_busy_before"] = quiet
    return out


# --- phases -----------------------------------------------------------------------------------


def _ratio(x: dict[str, Any], base: dict[str, Any], key: str) -> float | None:
    if "error" in x or "error" in base or not base[key]:
        return None
    return round(float(x[key]) / float(base[key]), 3)


def _p99(r: dict[str, Any]) -> float:
    return float(r["deliver_ms"]["p99_ms"])


async def scale_phase(cl: Cluster, a: argparse.Namespace) -> dict[str, Any]:
    closed, opened = {"window": a.window}, {"rate": a.rate}
    out: dict[str, Any] = {}
    for name in list(cl.nodes):  # the 1-node rows run with node A alone
        if name != "A":
            await cl.nodes[name].stop()
    await cl.node("A").start()
    out["1_node"] = {
        "closed": await load_run(cl, a, closed, cl.url()),
        "open": await load_run(cl, a, opened, cl.url()),
    }
    await cl.node("B").start()
    out["2_nodes_shared_port"] = {
        "closed": await load_run(cl, a, closed, cl.url()),
        "open": await load_run(cl, a, opened, cl.url()),
    }
    out["2_nodes_all_cross"] = {
        "closed": await load_run(cl, a, closed, cl.url("A"), cl.url("B")),
        "open": await load_run(cl, a, opened, cl.url("A"), cl.url("B")),
    }
    # 1 node again, last: the gap between the two 1-node rows is the drift within one run
    # (database growth, a noisy neighbour), the yardstick for the 2-node ratios.
    await cl.nodes["B"].stop()
    out["1_node_repeat"] = {"closed": await load_run(cl, a, closed, cl.url())}
    base = out["1_node"]
    for key in ("2_nodes_shared_port", "2_nodes_all_cross", "1_node_repeat"):
        r = out[key]
        vs: dict[str, float | None] = {
            "closed_deliveries": _ratio(r["closed"], base["closed"], "delivered_per_s")
        }
        op = r.get("open", {"error": "not run"})
        if "error" not in op and "error" not in base["open"] and _p99(base["open"]):
            vs["open_deliver_p99"] = round(_p99(op) / _p99(base["open"]), 3)
        r["vs_1_node"] = vs
    return out


async def latency_phase(cl: Cluster, a: argparse.Namespace) -> dict[str, Any]:
    await _both_up(cl)
    # Both at once, half the rate each: a stall of the machine then hits both alike, which
    # back-to-back runs of a few seconds cannot promise on a 2-core box.
    half = {"rate": a.light_rate / 2}
    quiet = await wait_quiet(a.quiet_wait, QUIET)
    same, cross = await asyncio.gather(
        load_run(cl, a, half, cl.url("A"), sample_cpu=False),
        load_run(cl, a, half, cl.url("A"), cl.url("B"), sample_cpu=False),
    )
    return {"same_node": same, "cross_node": cross, "others_busy_before": quiet}


async def seed_storm(dsn: str, n: int, prefix: str) -> None:
    """One direct conversation per storm user with a 'bot' (setup, not measured)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO conversations (id, kind, created_by)"
            " SELECT 'd:bot:' || $2 || i, 'direct', 'bot' FROM generate_series(0, $1 - 1) i",
            n,
            prefix,
        )
        await conn.execute(
            "INSERT INTO members (conv, user_id)"
            " SELECT 'd:bot:' || $2 || i, u FROM generate_series(0, $1 - 1) i,"
            " unnest(ARRAY['bot', $2 || i]) u",
            n,
            prefix,
        )
    finally:
        await conn.close()


async def add_missed(dsn: str, prefix: str) -> None:
    """One message per storm user written straight to PostgreSQL: nobody was pushed it, so
    every client has something unseen that only its resume can bring."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "WITH c AS (UPDATE conversations SET last_seq = last_seq + 1"
            "  WHERE id LIKE 'd:bot:' || $1 || '%' RETURNING id, last_seq)"
            " INSERT INTO messages (conv, seq, sender, body)"
            " SELECT id, last_seq, 'bot', '{\"text\":\"missed\"}' FROM c",
            prefix,
        )
    finally:
        await conn.close()


class StormDriver:
    """The storm worker process, driven line by line over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def event(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"storm worker exited (rc={await self.proc.wait()})")
        ev: dict[str, Any] = orjson.loads(line)
        return ev

    async def command(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
        await self.proc.stdin.drain()
        return await self.event(timeout)

    async def close(self) -> dict[str, Any]:
        ev: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            ev = await self.command({"cmd": "stop"}, 20)
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return ev


async def _sessions(cl: Cluster, names: Sequence[str]) -> dict[str, int]:
    out = {}
    for n in names:
        try:
            out[n] = int(await metric(cl.own[n], "im_connections"))
        except OSError:
            out[n] = -1
    return out


async def start_storm_worker(cl: Cluster, spec: dict[str, Any], name: str) -> StormDriver:
    # The spec goes through a file: thousands of tokens would not fit in one argv string.
    spec_path = cl.tmp / f"{name}.json"
    spec_path.write_bytes(orjson.dumps(spec))
    with (cl.tmp / f"{name}.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", MODULE, "--storm-worker", str(spec_path),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    return StormDriver(proc)


async def _both_up(cl: Cluster) -> tuple[Node, Node]:
    nodes = cl.node("A"), cl.node("B")
    for node in nodes:
        if node.proc is None or node.proc.returncode is not None:
            await node.start()
    return nodes


async def storm_phase(cl: Cluster, a: argparse.Namespace) -> dict[str, Any]:
    prefix = "s"
    A, B = await _both_up(cl)
    await seed_storm(cl.dsn, a.clients, prefix)
    quiet = await wait_quiet(a.quiet_wait, QUIET)
    spec = {
        "url": cl.url(),
        "secret": cl.secret,
        "clients": a.clients,
        "prefix": prefix,
        "convs": True,
        "connect_concurrency": 256,
        "connect_timeout": a.storm_timeout,
    }
    drv = await start_storm_worker(cl, spec, "storm")
    out: dict[str, Any] = {"clients": a.clients, "others_busy_before": quiet}
    try:
        ready = await drv.event(a.storm_timeout + 30)
        out["setup"] = ready | {"sessions_per_node": await _sessions(cl, ["A", "B"])}

        # 1. One of two nodes dies: its clients land on the survivor (same shared port).
        await add_missed(cl.dsn, prefix)
        expect = out["setup"]["sessions_per_node"]["B"]
        c0, t_kill = cl.cpu(), time.monotonic()
        await B.kill9()
        one = await drv.command(
            {"cmd": "watch", "t0": t_kill, "expect": expect, "timeout": a.storm_timeout},
            a.storm_timeout + 30,
        )
        one["cores_busy"] = _busy(c0, cl.cpu(), time.monotonic() - t_kill)
        out["kill_one_of_two"] = one | {"sessions_after": await _sessions(cl, ["A"])}

        # 2. Both die and come back: every client reconnects, into nodes that are starting.
        await B.start()
        await add_missed(cl.dsn, prefix)
        expect = sum(v for v in (await _sessions(cl, ["A", "B"])).values() if v > 0)
        t_kill = time.monotonic()
        await asyncio.gather(A.kill9(), B.kill9())
        await asyncio.gather(A.start(), B.start())
        up_after = time.monotonic() - t_kill
        # New node processes: their CPU is counted from the moment they are ready.
        c0, w0 = cl.cpu(), time.monotonic()
        both = await drv.command(
            {"cmd": "watch", "t0": t_kill, "expect": expect, "timeout": a.storm_timeout},
            a.storm_timeout + 30,
        )
        both["cores_busy_after_ready"] = _busy(c0, cl.cpu(), time.monotonic() - w0)
        both["nodes_ready_after_s"] = round(up_after, 3)
        if both.get("all_resynced_s") is not None:
            both["all_resynced_after_ready_s"] = round(both["all_resynced_s"] - up_after, 3)
        out["kill_both_restart"] = both | {"sessions_after": await _sessions(cl, ["A", "B"])}
    finally:
        out["worker"] = await drv.close()
    return out


async def sdk_storm_phase(cl: Cluster, a: argparse.Namespace) -> dict[str, Any]:
    """kill -9 one of two nodes under ``im_server.client.Client`` instances (fewer: heavier)."""
    prefix = "k"
    _, B = await _both_up(cl)
    await seed_storm(cl.dsn, a.sdk_clients, prefix)
    quiet = await wait_quiet(a.quiet_wait, QUIET)
    spec = {
        "sdk": True,
        "url": cl.url(),
        "secret": cl.secret,
        "clients": a.sdk_clients,
        "prefix": prefix,
        "connect_concurrency": 64,
        "connect_timeout": a.storm_timeout,
    }
    drv = await start_storm_worker(cl, spec, "sdk-storm")
    out: dict[str, Any] = {"clients": a.sdk_clients, "others_busy_before": quiet}
    try:
        ready = await drv.event(a.storm_timeout + 30)
        out["setup"] = ready | {"sessions_per_node": await _sessions(cl, ["A", "B"])}
        await add_missed(cl.dsn, prefix)
        t_kill = time.monotonic()
        await B.kill9()
        one = await drv.command(
            {"cmd": "watch", "t0": t_kill, "node": "B", "timeout": a.storm_timeout},
            a.storm_timeout + 30,
        )
        out["kill_one_of_two"] = one | {"sessions_after": await _sessions(cl, ["A"])}
    finally:
        await drv.close()
    return out


# --- main -------------------------------------------------------------------------------------


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    raise_fds()
    tmp = Path(tempfile.mkdtemp(prefix="imctl-cluster-bench-"))
    tmp.chmod(0o711)  # PostgreSQL runs as its own user and must reach its data dir
    pg = PgInstance(data_dir=tmp / "pg", port=free_port())
    pg.init(secrets.token_urlsafe(16))
    pg.start()
    nport, mport = free_ports(2)
    nats = NatsProcess(
        port=nport,
        monitor_port=mport,
        store_dir=tmp / "nats",
        log_file=tmp / "nats.log",
        pid_file=tmp / "nats.pid",
    )
    cl: Cluster | None = None
    t_start = time.monotonic()
    try:
        nats.start()
        pg.create_database("im")
        dsn = pg.dsn("im")
        await migrate(dsn)
        secret = secrets.token_urlsafe(24)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IM_")},
            "IM_DATABASE_URL": dsn,
            "IM_JWT_SECRET": secret,
            "IM_NATS_URL": nats.url,
            "IM_RATE_PER_SEC": "100000",
            "IM_RATE_BURST": "100000",
            "IM_MAX_SESSIONS_PER_USER": "10000",
            "IM_LOG_LEVEL": "WARNING",
            # Nodes left at the end are drained; the default 20 s grace would only add wait.
            "IM_DRAIN_GRACE_SECONDS": "2",
        }
        cl = Cluster(tmp, pg, nats, dsn, secret, env, free_port(), a.node_cpus.split(","))
        out: dict[str, Any] = {
            "config": {k: v for k, v in vars(a).items() if k not in ("worker", "storm_worker")}
            | {"cpus": os.cpu_count(), "loadgen_cpu": CLIENT_CPU}
        }
        phases = set(a.only.split(","))
        steps: list[tuple[str, Callable[[Cluster, argparse.Namespace], Awaitable[Any]]]] = [
            ("scale", scale_phase),
            ("latency", latency_phase),
            ("storm", storm_phase),
            ("sdk", sdk_storm_phase),
        ]
        timings = {}
        for name, fn in steps:
            if name in phases:
                t0 = time.monotonic()
                out[name] = await fn(cl, a)
                timings[name] = round(time.monotonic() - t0, 1)
        out["phase_seconds"] = timings
        return out
    finally:
        if cl is not None:
            await asyncio.gather(*(n.stop() for n in cl.nodes.values()))
        with contextlib.suppress(Exception):
            nats.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"cluster_load: {time.monotonic() - t_start:.0f}s", file=sys.stderr)


def summary(doc: dict[str, Any]) -> str:
    parts = []
    sc = doc.get("scale")
    if sc:
        one = sc["1_node"]["closed"]
        if "error" not in one:
            parts.append(f"1 node {one['delivered_per_s']:.0f} deliv/s")
        for key, label in (("2_nodes_shared_port", "2 shared"), ("2_nodes_all_cross", "2 cross")):
            r = sc[key]["closed"]
            vs = sc[key]["vs_1_node"]["closed_deliveries"]
            if "error" not in r:
                parts.append(f"{label} {r['delivered_per_s']:.0f} ({vs}x)")
        p99 = [
            f"{k} {_p99(sc[k]['open']):.1f}"
            for k in ("1_node", "2_nodes_shared_port", "2_nodes_all_cross")
            if "error" not in sc[k]["open"]
        ]
        parts.append(f"p99 deliver @{doc['config']['rate']:.0f}/s ms: " + ", ".join(p99))
    lat = doc.get("latency")
    if lat and "error" not in lat["same_node"] and "error" not in lat["cross_node"]:
        s, c = lat["same_node"]["deliver_ms"], lat["cross_node"]["deliver_ms"]
        parts.append(
            f"@{doc['config']['light_rate']:.0f}/s p50/p99 same {s['p50_ms']:.1f}/"
            f"{s['p99_ms']:.1f} ms, cross {c['p50_ms']:.1f}/{c['p99_ms']:.1f} ms"
        )
    st = doc.get("storm")
    if st:
        for key, label in (("kill_one_of_two", "kill 1/2"), ("kill_both_restart", "kill 2/2")):
            r = st.get(key)
            if r:
                parts.append(
                    f"storm {label}: {r['resynced']}/{r['dropped']} resynced,"
                    f" all back {r['all_reconnected_s']} s, all resynced {r['all_resynced_s']} s"
                )
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--storm-worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="shorter runs, 3,000 storm clients")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8, help="in-flight sends per sender (saturation)")
    p.add_argument("--rate", type=float, default=3000.0, help="open-loop msgs/s, 1 vs 2 nodes")
    p.add_argument("--light-rate", type=float, default=500.0, help="msgs/s, same vs cross node")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--clients", type=int, default=10000, help="reconnect storm clients")
    p.add_argument("--storm-timeout", type=float, default=60.0, help="bound on each storm wait")
    p.add_argument(
        "--node-cpus", default="0,0", help="CPU list per node (taskset), e.g. 0,0 or 0,1"
    )
    p.add_argument(
        "--quiet-wait", type=float, default=10.0, help="max s to wait for an idle machine per run"
    )
    p.add_argument("--sdk-clients", type=int, default=1000, help="SDK clients, kill -9 storm")
    p.add_argument(
        "--only", default="scale,latency,storm,sdk", help="phases: scale,latency,storm,sdk"
    )
    a = p.parse_args(argv)
    if a.worker:
        return load_worker(a.worker)
    if a.storm_worker:
        return storm_worker(a.storm_worker)
    if a.quick:
        a.duration, a.warmup, a.clients, a.storm_timeout = 3.0, 1.0, 3000, 30.0
        a.sdk_clients = min(a.sdk_clients, 500)
        a.quiet_wait = min(a.quiet_wait, 3.0)
    doc = asyncio.run(amain(a))
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    print(summary(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
