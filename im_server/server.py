"""The asyncio adapter: aiohttp moves bytes; protocol.py decides what they mean.

One port serves WebSocket sessions at ``/ws`` and HTTP (``/healthz``, ``/readyz``, ``/metrics``,
``/admin``). Several processes may bind the same port (SO_REUSEPORT); the kernel spreads new
connections over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hmac
import logging
import os
import random
import secrets
import signal
import socket
import ssl
import time
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from im_server import auth, conversations, protocol
from im_server.batcher import SendBatcher
from im_server.bus import PRESENCE_QUERY, NatsBus, user_subject
from im_server.config import Settings
from im_server.errors import (
    AccessError,
    AuthError,
    ErrorCode,
    FrameError,
    ImError,
    LimitError,
    UnavailableError,
)
from im_server.gate import Gate, GatedSite, default_max_connections
from im_server.health import PROBE_EVERY, HealthMonitor
from im_server.hub import Hub
from im_server.limits import TokenBucket
from im_server.metrics import Metrics
from im_server.store import Committed, SendItem, Store

log = logging.getLogger("im_server")

CLOSE_GOING_AWAY_RESTART = 1012  # "service restart": the client should reconnect
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
# A refused hello is answered and closed; waiting for a hostile client to answer the close
# would hold the connection (up to aiohttp's 10 s close timeout) for nothing.
REFUSED_CLOSE_WAIT = 0.1


class Connection:
    """One WebSocket session. Pushes are queued so a slow reader never blocks fan-out."""

    __slots__ = (
        "bucket",
        "closed",
        "expires",
        "id",
        "inflight",
        "max_out",
        "max_out_bytes",
        "metrics",
        "out",
        "out_bytes",
        "room",
        "tasks",
        "user",
        "writer",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, metrics: Metrics, settings: Settings) -> None:
        self.ws = ws
        self.id = secrets.token_hex(8)
        self.user = ""
        self.metrics = metrics
        self.out: deque[str] = deque()
        self.writer: asyncio.Task[None] | None = None
        self.closed = False
        self.max_out = settings.max_outbound_frames
        # Never below a few of the largest frames a session may be sent (a msg of max_frame).
        self.max_out_bytes = max(settings.max_outbound_bytes, 4 * settings.max_frame)
        # Characters, not bytes: the queue holds str, and counting is O(1) this way.
        self.out_bytes = 0
        self.inflight = 0  # requests spawned as tasks and not yet answered
        self.expires = 0  # the token's exp (Unix seconds), once hello is accepted
        # Those of them nobody needs once the session is gone (reads): cancelled at its end,
        # so a client that pipelines and leaves does not leave queries queued for the pool.
        self.tasks: set[asyncio.Task[None]] = set()
        self.room: asyncio.Future[None] | None = None  # set when out_bytes falls to half the cap
        self.bucket = TokenBucket(settings.rate_per_sec, settings.rate_burst, time.monotonic())

    def push(self, frame: str, kind: str) -> None:
        if self.closed:
            return
        self.out.append(frame)
        self.out_bytes += len(frame)
        counter = self.metrics.out_by_type.get(kind)
        if counter is not None:
            counter.inc()
        if len(self.out) > self.max_out or self.out_bytes > self.max_out_bytes:
            # A client that does not read would hold unbounded memory. Dropping it loses nothing:
            # everything pushed is in PostgreSQL, and the client resyncs on reconnect.
            self.metrics.dropped_slow.inc()
            self.out.clear()
            self.out_bytes = 0
            self.out.append(
                protocol.error(ErrorCode.SLOW_CONSUMER, "too many unread frames", retryable=True)
            )
            self.shut()
            asyncio.get_running_loop().create_task(self._close_after_flush(CLOSE_TRY_AGAIN))
            return
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    def shut(self) -> None:
        """No more pushes; whoever waits for room stops waiting."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.room is not None:
            self.room.set_result(None)
            self.room = None

    async def wait_room(self) -> None:
        """Wait until at most half the outbound byte cap is queued (or the session ends).

        Request replies wait here before their query runs, so a client that asks without
        reading stalls its own requests instead of being sent (and holding) their answers;
        with at most ``max_inflight_requests`` replies of at most ``reply_budget`` each, the
        queue stays under the cap and a client that reads is never cut off as slow."""
        while not self.closed and self.out_bytes > self.max_out_bytes // 2:
            if self.room is None:
                self.room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.room)

    def reply_budget(self, max_inflight: int) -> int:
        return max(16 * 1024, self.max_out_bytes // (2 * max_inflight))

    async def _write(self) -> None:
        try:
            while self.out:
                frame = self.out.popleft()
                self.out_bytes -= len(frame)
                if self.room is not None and self.out_bytes <= self.max_out_bytes // 2:
                    self._wake()
                await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            self.out.clear()
            self.out_bytes = 0
            self.shut()
        finally:
            self.writer = None

    async def flush(self) -> None:
        while self.writer is not None:
            await asyncio.shield(self.writer)

    async def _close_after_flush(
        self, code: int, message: bytes = b"", wait: float | None = None
    ) -> None:
        if self.writer is None and self.out:
            self.writer = asyncio.get_running_loop().create_task(self._write())
        with contextlib.suppress(Exception):
            await self.flush()
        with contextlib.suppress(Exception):
            # Past ``wait`` aiohttp stops waiting for the client's close and drops the socket.
            await asyncio.wait_for(self.ws.close(code=code, message=message), wait)

    async def close(self, code: int, message: bytes = b"", wait: float | None = None) -> None:
        self.shut()
        await self._close_after_flush(code, message, wait)


class ImServer:
    def __init__(self, settings: Settings, *, node_id: str | None = None) -> None:
        self.settings = settings
        self.node_id = node_id or settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        # Reported by /admin/digest: a restore's check tells pods started after its roll (and so
        # reading the new database URL) from older ones.
        self.started_at = time.time()
        self.metrics = Metrics()
        self.store: Store = None  # type: ignore[assignment]  # set in start()
        self.bus: NatsBus | None = None
        self.hub = Hub(self.node_id)
        self.batcher = SendBatcher(self)
        self.health = HealthMonitor(settings, self.batcher.oldest_commit_age)
        self.conns: set[Connection] = set()
        self.draining = False
        self.drained = asyncio.Event()
        self._bus_was_down = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.tls_port: int | None = None  # bound by listen() when a certificate is configured
        # Frames larger than this are cut off by aiohttp (close 1009); between max_frame and
        # this the client gets a frame_too_large error and keeps its session.
        self.hard_cap = max(4 * settings.max_frame, 1024 * 1024)
        # client limits (issue 12)
        self._sessions_ended = 0  # when to give memory back (_trim_loop)
        self._trim_task: asyncio.Task[None] | None = None
        self.gate: Gate | None = None  # connections on the public ports, set by listen()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.connect(s.database_url, max_size=s.db_pool_size)
        if s.nats_url:
            self.bus = NatsBus(
                s.nats_url,
                self.hub.on_bus,
                self._bus_state,
                user=s.nats_user,
                password=s.nats_password,
            )
            self.hub.bus = self.bus
            self.hub.bus_dropped = lambda family: self.metrics.bus_dropped.labels(family).inc()
            try:
                await self.bus.start()
                await self.bus.subscribe(PRESENCE_QUERY)
            except Exception as exc:
                # Sends stay durable without the bus; cross-node pushes wait for it.
                log.warning("bus unavailable at start (%r); retrying in background", exc)
                self._bus_was_down = True
                self._spawn(self._bus_retry())
        self.batcher.start(s.send_workers)
        self._spawn(self._health_loop())

    def _bus_state(self, up: bool) -> None:
        self.metrics.bus_connected.set(1 if up else 0)
        if up and self._bus_was_down:
            # Pushes published elsewhere while we were cut off are gone; tell our sessions to
            # compare their last seqs with the database (convs + sync) now, not on the next push.
            frame = protocol.reply("resync", None)
            for conn in list(self.conns):
                if conn.user:
                    conn.push(frame, "reply")
        self._bus_was_down = not up

    async def _bus_retry(self) -> None:
        assert self.bus is not None
        while not self.bus.connected and not self.draining:
            await asyncio.sleep(1)
            try:
                await self.bus.start()
                await self.bus.subscribe(PRESENCE_QUERY)
                for user in list(self.hub.by_user):
                    await self.bus.subscribe(user_subject(user))
            except Exception:
                continue

    async def _health_loop(self) -> None:
        while True:
            try:
                h = await self.health.check()
                self.metrics.db_up.set(1 if h.database == "up" else 0)
                self.metrics.writes_state.state(h.writes)
            except Exception:  # the loop must outlive any one probe; readyz goes stale if not
                log.exception("health check failed")
            await asyncio.sleep(PROBE_EVERY)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @web.middleware
    async def _body_deadline(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # The header timeout ends when the headers are in; a body trickled in byte by byte
        # would hold the connection for as long as the client likes.
        if request.body_exists:
            try:
                async with asyncio.timeout(self.settings.header_timeout):
                    await request.read()
            except TimeoutError:
                return web.json_response({"error": "request body too slow"}, status=408)
        result: web.StreamResponse = await handler(request)
        return result

    def app(self) -> web.Application:
        # Admin bodies (a group of 1,000 members) can exceed one chat frame.
        app = web.Application(
            client_max_size=max(self.settings.max_frame, 1024 * 1024),
            middlewares=[self._body_deadline],
        )
        app.router.add_get("/ws", self.ws_handler)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_handler)
        from im_server.admin import add_routes

        add_routes(app, self)
        return app

    async def listen(
        self,
        host: str,
        port: int,
        health_port: int | None = None,
        global_port: int | None = None,
    ) -> int:
        """Bind the shared port (SO_REUSEPORT) and serve; return the bound port.

        ``health_port`` is this node's own port (same app): with several processes on the
        shared port, it is how an operator reaches one particular node. ``global_port`` is a
        second shared port, the clients' endpoint, bound only by nodes of the primary region.
        """
        # Not in _tasks: those are the work a test waits to see finish; this never does.
        self._trim_task = asyncio.get_running_loop().create_task(self._trim_loop())
        s = self.settings
        # aiohttp's keep-alive timer starts when a connection is accepted and closes it while
        # no complete request has arrived: a header timeout against slowloris (and the idle
        # limit of keep-alive connections). An upgraded WebSocket is past it.
        self._runner = web.AppRunner(
            self.app(), handle_signals=False, access_log=None, keepalive_timeout=s.header_timeout
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self.gate = Gate(self._runner.server, s.max_connections or default_max_connections())
        await GatedSite(self._runner, host, port, self.gate).start()
        bound: int = self._runner.addresses[0][1]
        if health_port is not None:
            # Not gated: probes and operators still get in when the public port is full.
            await web.TCPSite(self._runner, host, health_port).start()
        if global_port is not None:
            await GatedSite(self._runner, host, global_port, self.gate).start()
        cert, key = self.settings.tls_cert_file, self.settings.tls_key_file
        if cert and key:
            # TLS (issue 13): the clients' wss:// port; the plain port above stays for probes
            # and scrapes inside the cluster. Started last, so its address is the last one.
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(cert, key)
            await GatedSite(self._runner, host, self.settings.tls_port, self.gate, tls).start()
            self.tls_port = self._runner.addresses[-1][1]
            self._spawn(self._tls_reload(tls, cert, key))
        return bound

    async def _tls_reload(self, tls: ssl.SSLContext, cert: str, key: str) -> None:
        """Load a renewed certificate into the live context: new handshakes get it, sessions
        already open keep theirs. A Secret volume swaps its files atomically, so a change shows
        as a new inode; a pair caught half-written is retried on the next round."""
        seen = _file_stamps(cert, key)
        while True:
            await asyncio.sleep(self.settings.tls_reload_seconds)
            now = _file_stamps(cert, key)
            if now == seen:
                continue
            try:
                tls.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS certificate not reloaded (%s); keeping the current one", exc)
                continue
            seen = now
            log.info("TLS certificate reloaded from %s", cert)

    async def _trim_loop(self) -> None:
        """Give memory freed by ended sessions back to the OS.

        glibc returns only the top of its heap by itself; the tasks, frames and bus
        subscriptions of sessions that came and went leave free pages below live objects. After
        an attack of 1,000 watch sessions the node stayed ~45 MB above its idle RSS; after
        ``malloc_trim`` within ~5 MB (tests/im_server/test_hostile_memory.py). It walks the
        heap (a millisecond or so), so it runs at most every few seconds and only after sessions
        ended."""
        if _malloc_trim is None:
            return
        seen = self._sessions_ended
        while True:
            await asyncio.sleep(5.0)
            if self._sessions_ended != seen:
                seen = self._sessions_ended
                # Ended sessions leave reference cycles (aiohttp requests, exceptions with their
                # frames) that wait for a full collection, which comes rarely on a large heap.
                gc.collect()
                _malloc_trim(0)

    async def drain(self) -> None:
        """Readiness off, clients told to reconnect, in-flight sends finish, close 1012."""
        if self.draining:
            await self.drained.wait()
            return
        self.draining = True
        self.metrics.draining.set(1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_grace
        # The listener stays open while draining: /readyz must answer 503 (not refuse), and
        # closing a SO_REUSEPORT socket would reset connections waiting in its accept queue.
        # New sessions are refused with 503 and retried by clients; the kernel spreads retries
        # over the other processes on the port.
        jitter = self.settings.reconnect_jitter_ms
        for conn in list(self.conns):
            conn.push(protocol.reconnect(random.randint(0, jitter) if jitter else 0), "reconnect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.batcher.idle.wait(), max(0.0, deadline - loop.time()))
        closing = [c.close(CLOSE_GOING_AWAY_RESTART, b"server draining") for c in self.conns]
        if closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True),
                    max(0.1, deadline - loop.time()),
                )
        self.drained.set()

    async def stop(self) -> None:
        if self._trim_task is not None:
            self._trim_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.store is not None and not self.batcher.idle.is_set():
            # A commit still waiting (for a lost synchronous standby) must not be cancelled:
            # PostgreSQL would end the wait and make it visible unreplicated. Closing the
            # sockets sends no cancel; the backends keep waiting and commit when they can.
            self.store.pool.terminate()
        self.batcher.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.bus is not None:
            await self.bus.close()
        await self.health.close()
        if self.store is not None:
            await self.store.close()

    # --- HTTP -----------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node": self.node_id})

    async def readyz(self, request: web.Request) -> web.Response:
        bus = "none" if self.bus is None else ("up" if self.bus.connected else "down")
        h = self.health
        # Not ready while writes are blocked: a node that cannot commit must not look healthy.
        # Unprotected writes still work, so the node stays ready and says so.
        ready = h.ready() and not self.draining
        body = {
            "ready": ready,
            **h.state.to_json(),
            "bus": bus,
            "draining": self.draining,
            "connections": len(self.conns),
            "node": self.node_id,
        }
        if not h.fresh:
            body["database"] = "down"
            body["reason"] = "the database probe has not answered recently"
        # The bus is reported but does not gate readiness: without it sends are still durable,
        # and taking every node out of the load balancer would turn a degraded state into an outage.
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_handler(self, request: web.Request) -> web.Response:
        want = self.settings.metrics_token
        if want is not None:
            got = request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {want}".encode()):
                return web.json_response(
                    {"error": {"code": "unauthorized", "message": "metrics need the bearer token"}},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    # --- WebSocket ------------------------------------------------------------------------

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self.draining:
            return web.json_response({"error": "draining"}, status=503)
        # No permessage-deflate: zlib state costs ~280 KB per connection (a 32 KB window each
        # way plus the deflate tables; aiohttp cannot shrink the window a client offers), and
        # freed zlib buffers fragment the heap so RSS did not come back after churn (measured:
        # 1,000 bad-token hellos held ~280 MB with it, ~30 MB without). Chat frames are a few
        # hundred bytes of JSON: little to gain.
        ws = web.WebSocketResponse(max_msg_size=self.hard_cap, heartbeat=30.0, compress=False)
        await ws.prepare(request)
        conn = Connection(ws, self.metrics, self.settings)
        self.conns.add(conn)
        self.metrics.connections.inc()
        expiry: asyncio.TimerHandle | None = None
        try:
            if await self._hello(conn):
                # A session lives no longer than its token: a revoked user (no new token) is
                # out within the token's lifetime, not whenever the connection happens to drop.
                expiry = asyncio.get_running_loop().call_later(
                    max(0.0, conn.expires - time.time()), self._expire, conn
                )
                await self._serve(conn)
        except Exception:
            log.exception("session failed")
            self.send_error(conn, ImError(ErrorCode.INTERNAL, "internal error"), None)
            await conn.close(1011)
        finally:
            if expiry is not None:
                expiry.cancel()
            conn.shut()
            for task in list(conn.tasks):
                task.cancel()
            self._sessions_ended += 1
            self.conns.discard(conn)
            self.metrics.connections.dec()
            if conn.user:
                await self.hub.detach(conn)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    def send_error(self, conn: Connection, exc: ImError, ref: dict[str, str] | None) -> None:
        self.metrics.errors.labels(exc.code.value).inc()
        retry_after = exc.retry_after_ms if isinstance(exc, LimitError) else None
        conn.push(
            protocol.error(
                exc.code, exc.message, retryable=exc.retryable, ref=ref, retry_after_ms=retry_after
            ),
            "error",
        )

    def _expire(self, conn: Connection) -> None:
        self.send_error(conn, AuthError(ErrorCode.TOKEN_EXPIRED, "token has expired"), None)
        self._spawn(conn.close(CLOSE_POLICY, ErrorCode.TOKEN_EXPIRED.value.encode()))

    async def _refuse(self, conn: Connection, exc: ImError) -> bool:
        self.send_error(conn, exc, None)
        await conn.close(CLOSE_POLICY, exc.code.value.encode(), wait=REFUSED_CLOSE_WAIT)
        return False

    async def _hello(self, conn: Connection) -> bool:
        s = self.settings
        try:
            msg = await conn.ws.receive(timeout=s.hello_timeout)
        except TimeoutError:
            return await self._refuse(
                conn, FrameError(ErrorCode.HELLO_TIMEOUT, f"no hello within {s.hello_timeout}s")
            )
        if msg.type != WSMsgType.TEXT:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return False
            return await self._refuse(
                conn, FrameError(ErrorCode.BAD_FRAME, "expected a text hello frame")
            )
        if _frame_bytes(msg.data) > s.max_frame:
            return await self._refuse(
                conn, FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame over {s.max_frame} bytes")
            )
        try:
            req = protocol.parse_request(msg.data)
            if not isinstance(req, protocol.Hello):
                raise FrameError(ErrorCode.NOT_AUTHENTICATED, "the first frame must be hello")
            user, conn.expires = auth.verify_claims(s.jwt_secret, req.token, s.max_token_ttl)
        except ImError as exc:
            return await self._refuse(conn, exc)
        self.metrics.in_by_type["hello"].inc()
        if self.draining:
            return await self._refuse(
                conn, UnavailableError(ErrorCode.DRAINING, "node is draining; reconnect")
            )
        if self.hub.sessions_of(user) >= s.max_sessions_per_user:
            return await self._refuse(
                conn,
                LimitError(
                    ErrorCode.SESSION_LIMIT,
                    f"at most {s.max_sessions_per_user} sessions per user on one node",
                ),
            )
        conn.user = user
        # Queued before the session can receive pushes, so welcome is always the first frame.
        conn.push(protocol.welcome(user, conn.id, int(time.time() * 1000), self.node_id), "welcome")
        await self.hub.attach(conn)
        for conv, after in req.resume.items():
            # Each entry is a query: it pays a rate-limit token like a sync frame (waiting for
            # one rather than failing: the client asked for nothing else yet), and waits for
            # the client to read what was already sent.
            # The bucket says how long until its next token: nothing to wait on but the clock.
            while (wait_ms := conn.bucket.take(time.monotonic())) and not conn.closed:  # noqa: ASYNC110
                await asyncio.sleep(wait_ms / 1000)
            await conn.wait_room()
            if conn.closed:
                break
            await self._resume(conn, conv, after)
        return True

    async def _resume(self, conn: Connection, conv: str, after: int) -> None:
        try:
            items, more, last_seq = await self._sync(conn, conv, after, protocol.MAX_SYNC_LIMIT)
        except ImError as exc:
            self.send_error(conn, exc, {"conv": conv})
            return
        if items:
            conn.push(protocol.batch(None, conv, items, more, last_seq), "batch")

    async def _sync(
        self, conn: Connection, conv: str, after: int, limit: int
    ) -> tuple[list[str], bool, int]:
        """A page of history as batch items, cut to what the session's queue may hold."""
        budget = conn.reply_budget(self.settings.max_inflight_requests)
        msgs, more, last_seq = await self.store.sync(conn.user, conv, after, limit, budget)
        return [protocol.msg_item(m.seq, m.sender, m.ts, m.body) for m in msgs], more, last_seq

    async def _serve(self, conn: Connection) -> None:
        ws = conn.ws
        s = self.settings
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                data: str = msg.data
                size = _frame_bytes(data)
                if size > s.max_frame:
                    if not self._charge(conn, None):
                        continue
                    self.send_error(
                        conn,
                        FrameError(
                            ErrorCode.FRAME_TOO_LARGE,
                            f"frame of {size} bytes is over the {s.max_frame} byte limit",
                        ),
                        None,
                    )
                    continue
                try:
                    self._on_frame(conn, data)
                except Exception:
                    # No single frame may kill a session: answer it and carry on.
                    log.exception("frame handling failed")
                    self.send_error(conn, ImError(ErrorCode.INTERNAL, "internal error"), None)
            elif msg.type == WSMsgType.BINARY:
                self.send_error(
                    conn, FrameError(ErrorCode.BAD_FRAME, "binary frames are not supported"), None
                )
            else:
                # CLOSE, CLOSING, CLOSED, or ERROR (e.g. over the hard size cap: aiohttp closes
                # with 1009 itself).
                return

    def _charge(self, conn: Connection, ref: dict[str, str] | None) -> bool:
        """Take a rate-limit token; every frame pays, well-formed or not."""
        wait_ms = conn.bucket.take(time.monotonic())
        if wait_ms:
            self.send_error(
                conn, LimitError(ErrorCode.RATE_LIMITED, "slow down", retry_after_ms=wait_ms), ref
            )
            return False
        return True

    def _on_frame(self, conn: Connection, data: str) -> None:
        try:
            req = protocol.parse_request(data)
        except FrameError as exc:
            self.metrics.in_unknown.inc()
            if self._charge(conn, exc.ref):
                self.send_error(conn, exc, exc.ref)
            return
        ftype = protocol.FRAME_TYPE_OF[type(req)]
        self.metrics.in_by_type[ftype].inc()
        ref = {"cid": req.cid} if isinstance(req, protocol.Send) else _rid_ref(req)
        if not self._charge(conn, ref):
            return
        if isinstance(req, protocol.Send):
            if self.draining:
                self.send_error(
                    conn,
                    UnavailableError(
                        ErrorCode.DRAINING, "node is draining; resend after reconnect"
                    ),
                    {"cid": req.cid},
                )
                return
            conv = (
                req.conv
                if req.conv is not None
                else conversations.direct_conv_id(conn.user, req.to or "")
            )
            self.batcher.submit(SendItem(conn.user, req.cid, conv, req.body), conn)
        elif isinstance(req, protocol.Ping):
            conn.push(protocol.reply("pong", req.rid), "reply")
        elif isinstance(req, protocol.Hello):
            self.send_error(
                conn, FrameError(ErrorCode.ALREADY_AUTHENTICATED, "hello was already sent"), None
            )
        elif conn.inflight >= self.settings.max_inflight_requests:
            # Each request is a task (and maybe a query): a pipelining client gets a bounded
            # number of them, the rest are refused like an empty token bucket.
            self.send_error(
                conn,
                LimitError(
                    ErrorCode.RATE_LIMITED,
                    f"at most {self.settings.max_inflight_requests} requests in flight",
                    retry_after_ms=100,
                ),
                ref,
            )
        else:
            conn.inflight += 1
            task = self._spawn(self._request(conn, req))
            if not isinstance(req, _NOT_CANCELLED):
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)

    async def _request(self, conn: Connection, req: protocol.Request) -> None:
        ref = _rid_ref(req)
        try:
            await conn.wait_room()
            if not conn.closed:
                await self._handle(conn, req)
        except ImError as exc:
            if isinstance(exc, UnavailableError):
                self.metrics.db_errors.inc()
            self.send_error(conn, exc, ref)
        except Exception:
            log.exception("request %s failed", type(req).__name__)
            self.send_error(conn, ImError(ErrorCode.INTERNAL, "internal error"), ref)
        finally:
            conn.inflight -= 1

    async def _handle(self, conn: Connection, req: protocol.Request) -> None:
        store = self.store
        user = conn.user
        if isinstance(req, protocol.Sync):
            items, more, last_seq = await self._sync(conn, req.conv, req.after_seq, req.limit)
            conn.push(protocol.batch(req.rid, req.conv, items, more, last_seq), "batch")
        elif isinstance(req, protocol.Read):
            read_seq = await store.mark_read(user, req.conv, req.seq)
            conn.push(protocol.reply("read_ok", req.rid, conv=req.conv, read_seq=read_seq), "reply")
        elif isinstance(req, protocol.Convs):
            convs = await store.conversations(user)
            conn.push(protocol.reply("convs", req.rid, convs=convs), "reply")
        elif isinstance(req, protocol.Typing):
            members = await store.members_of(req.conv)
            if user not in members:
                raise AccessError(ErrorCode.NOT_MEMBER, f"you are not a member of '{req.conv}'")
            frame = protocol.typing(req.conv, user)
            await self.hub.deliver([u for u in members if u != user], frame, "typing")
        elif isinstance(req, protocol.Watch):
            s = self.settings
            online = await self.hub.watch(
                conn, req.users, s.max_watch_per_session, s.max_watched_per_node
            )
            conn.push(
                protocol.reply("watching", req.rid, users=list(req.users), online=online), "reply"
            )
        elif isinstance(req, protocol.GroupCreate):
            done = await store.create_group(user, req.title, req.members)
            conn.push(
                protocol.reply(
                    "group", req.rid, conv=done.conv, title=req.title, members=list(done.recipients)
                ),
                "reply",
            )
            await self.fan_out(done, exclude=None)
        elif isinstance(req, protocol.GroupAdd | protocol.GroupRemove):
            if isinstance(req, protocol.GroupAdd):
                change = await store.add_member(user, req.conv, req.user)
            else:
                change = await store.remove_member(user, req.conv, req.user)
            try:
                now = [m["user"] for m in await store.list_members(None, req.conv)]
            except AccessError:  # the last member left: the group is empty, not unknown
                now = []
            conn.push(
                protocol.reply(
                    "group", req.rid, conv=req.conv, changed=change is not None, members=now
                ),
                "reply",
            )
            if change is not None:
                await self.fan_out(change, exclude=None)
        elif isinstance(req, protocol.GroupMembers):
            listed = await store.list_members(user, req.conv)
            conn.push(protocol.reply("members", req.rid, conv=req.conv, members=listed), "reply")

    async def fan_out(self, c: Committed, exclude: str | None) -> None:
        """Push a committed system message (membership change) to its recipients."""
        frame = protocol.msg(c.conv, c.seq, c.sender, c.ts, c.body)
        await self.hub.deliver(c.recipients, frame, "msg", exclude=exclude)


def _libc_malloc_trim() -> Any:
    # The process's own symbols (libc is linked already): find_library("c") would run
    # `ldconfig -p` in a subprocess on every import of this module.
    return getattr(ctypes.CDLL(None), "malloc_trim", None)  # None off glibc: nothing to trim


_malloc_trim = _libc_malloc_trim()


def _frame_bytes(data: str) -> int:
    # The limit is in bytes on the wire; isascii() is O(1) and avoids encoding the common case.
    return len(data) if data.isascii() else len(data.encode())


def _file_stamps(*paths: str) -> tuple[tuple[int, int, int], ...]:
    """(inode, mtime, size) of each path, following symlinks; zeros for a missing file."""
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((0, 0, 0))
        else:
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


# Never cancelled halfway: these commit and then push to other members, or (watch) hold bus
# subscriptions that a cancellation at the wrong await would orphan.
_NOT_CANCELLED = (protocol.GroupCreate, protocol.GroupAdd, protocol.GroupRemove, protocol.Watch)


def _rid_ref(req: protocol.Request) -> dict[str, str]:
    rid = getattr(req, "rid", None)
    return {"rid": rid} if isinstance(rid, str) else {}


async def serve(
    settings: Settings,
    host: str,
    port: int,
    ready_file: str | None = None,
    health_port: int | None = None,
    global_port: int | None = None,
) -> int:
    """Run one node until SIGTERM/SIGINT, then drain; return the exit code."""
    server = ImServer(settings)
    await server.start()
    bound = await server.listen(host, port, health_port, global_port)
    log.info("im-server %s listening on %s:%d", server.node_id, host, bound)
    if ready_file:
        Path(ready_file).write_text(str(bound))  # noqa: ASYNC240 - once, before serving
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining (grace %.1fs)", settings.drain_grace)
    await server.drain()
    await server.stop()
    return 0
