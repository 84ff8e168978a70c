"""Bare relay servers, one per WebSocket stack, for choosing the IM server's transport.

Every stack runs the same :class:`RelayCore` (orjson, one dict lookup per message), so a
difference in throughput is the stack's own cost. No database, no auth: the hello token *is* the
user name.

Protocol (text frames, JSON)::

    -> {"type":"hello","v":1,"token":"alice"}
    <- {"type":"welcome","v":1,"user":"alice"}
    -> {"type":"send","cid":"c1","to":"bob","body":{...}}
    <- {"type":"ack","cid":"c1","id":7}
    bob <- {"type":"msg","id":7,"cid":"c1","from":"alice","body":{...}}

A send to a user who is not connected is still acked (and counted as dropped), as the real
server would store it.

HTTP on the same port, where the stack can: ``GET /healthz``, ``GET /metrics`` and
``POST /admin/echo`` (echoes a JSON body; stands in for the admin API).

Run: ``python -m bench.relay --stack aiohttp --port 8080 [--uvloop] [--reuse-port]``. The process
prints one JSON line ``{"ready": true, "port": ...}`` once it listens, stops on SIGTERM/SIGINT
and, so that a forgotten one cannot linger, after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson

from bench import raise_fd_limit

STACKS = ("aiohttp", "websockets", "picows")
WS_PATH = "/ws"
HELLO_TIMEOUT = 10.0
MAX_FRAME = 64 * 1024
BACKLOG = 1024

C = TypeVar("C")
Data = bytes | bytearray | memoryview | str
Stopper = Callable[[], Awaitable[None]]

ERR_BAD_JSON = orjson.dumps({"type": "error", "code": "bad_json"})
ERR_HELLO = orjson.dumps({"type": "error", "code": "hello_required"})
ERR_BAD_FRAME = orjson.dumps({"type": "error", "code": "bad_frame"})


class RelayCore(Generic[C]):
    """The protocol, independent of the transport; ``C`` is the stack's connection object."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.conns: dict[str, C] = {}
        self.seq = 0
        self.relayed = 0
        self.dropped = 0

    def hello(self, data: Data) -> tuple[str | None, bytes]:
        """Return (user, welcome) or (None, error frame)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None, ERR_BAD_JSON
        if not isinstance(obj, dict) or obj.get("type") != "hello":
            return None, ERR_HELLO
        user = obj.get("token")
        if not isinstance(user, str) or not user:
            return None, ERR_HELLO
        return user, orjson.dumps({"type": "welcome", "v": 1, "user": user})

    def register(self, user: str, conn: C) -> None:
        # Last connection wins, like a reconnect that races the old socket's close.
        self.conns[user] = conn

    def unregister(self, user: str, conn: C) -> None:
        if self.conns.get(user) is conn:
            del self.conns[user]

    def route(self, sender: str, data: Data) -> tuple[bytes, C | None, bytes]:
        """Return (reply to sender, peer connection or None, frame for the peer)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return ERR_BAD_JSON, None, b""
        if not isinstance(obj, dict) or obj.get("type") != "send":
            return ERR_BAD_FRAME, None, b""
        cid = obj.get("cid")
        to = obj.get("to")
        if not isinstance(to, str) or cid is None:
            return ERR_BAD_FRAME, None, b""
        self.seq += 1
        mid = self.seq
        ack = orjson.dumps({"type": "ack", "cid": cid, "id": mid})
        peer = self.conns.get(to)
        if peer is None:
            self.dropped += 1
            return ack, None, b""
        self.relayed += 1
        out = orjson.dumps(
            {"type": "msg", "id": mid, "cid": cid, "from": sender, "body": obj.get("body")}
        )
        return ack, peer, out

    def health(self) -> bytes:
        return orjson.dumps({"ok": True, "stack": self.stack, "connections": len(self.conns)})

    def metrics(self) -> bytes:
        return (
            f"relay_connections {len(self.conns)}\n"
            f"relay_messages_relayed_total {self.relayed}\n"
            f"relay_messages_dropped_total {self.dropped}\n"
        ).encode()


# --- aiohttp -----------------------------------------------------------------------------------


async def start_aiohttp(host: str, port: int, reuse_port: bool) -> tuple[int, Stopper]:
    from aiohttp import WSMsgType, web

    core: RelayCore[web.WebSocketResponse] = RelayCore("aiohttp")

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        # decode_text=False hands orjson the raw bytes instead of a decoded str.
        ws = web.WebSocketResponse(compress=False, decode_text=False, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        try:
            first = await ws.receive(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            await ws.close()
            return ws
        if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return ws
        user, reply = core.hello(first.data)
        await ws.send_frame(reply, WSMsgType.TEXT)
        if user is None:
            await ws.close()
            return ws
        core.register(user, ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    ack, peer, out = core.route(user, msg.data)
                    await ws.send_frame(ack, WSMsgType.TEXT)
                    if peer is not None and not peer.closed:
                        # The peer may be closing; its loss is not the sender's error.
                        with contextlib.suppress(ConnectionError):
                            await peer.send_frame(out, WSMsgType.TEXT)
        finally:
            core.unregister(user, ws)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=core.health(), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=core.metrics(), content_type="text/plain")

    async def admin_echo(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, body=ERR_BAD_JSON, content_type="application/json")
        return web.Response(body=orjson.dumps({"echo": body}), content_type="application/json")

    app = web.Application()
    app.router.add_get(WS_PATH, ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/echo", admin_echo)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=BACKLOG)
    await site.start()
    bound = int(runner.addresses[0][1])
    return bound, runner.cleanup


# --- websockets (new asyncio API) --------------------------------------------------------------


async def start_websockets(host: str, port: int, reuse_port: bool) -> tuple[int, Stopper]:
    from http import HTTPStatus

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response

    core: RelayCore[ServerConnection] = RelayCore("websockets")

    def json_response(body: bytes, content_type: str = "application/json") -> Response:
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return Response(HTTPStatus.OK, "OK", headers, body)

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return None
        if path == "/healthz":
            return json_response(core.health())
        if path == "/metrics":
            return json_response(core.metrics(), "text/plain")
        return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")

    async def handler(ws: ServerConnection) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(decode=False), HELLO_TIMEOUT)
        except (TimeoutError, ConnectionClosed):
            return
        user, reply = core.hello(first)
        await ws.send(reply, text=True)
        if user is None:
            await ws.close()
            return
        core.register(user, ws)
        try:
            while True:
                data = await ws.recv(decode=False)
                ack, peer, out = core.route(user, data)
                await ws.send(ack, text=True)
                if peer is not None:
                    with contextlib.suppress(ConnectionClosed):
                        await peer.send(out, text=True)
        except ConnectionClosed:
            pass
        finally:
            core.unregister(user, ws)

    server = await serve(
        handler,
        host,
        port,
        process_request=process_request,
        # Same conditions for every stack: no compression, no server keepalive pings.
        compression=None,
        ping_interval=None,
        max_size=MAX_FRAME,
        reuse_port=reuse_port or None,
        backlog=BACKLOG,
    )
    bound = int(next(iter(server.sockets)).getsockname()[1])

    async def stop() -> None:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    return bound, stop


# --- picows ------------------------------------------------------------------------------------


async def start_picows(
    host: str, port: int, reuse_port: bool, read_buffer: int = 16 * 1024
) -> tuple[int, Stopper]:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        WSUpgradeResponse,
        WSUpgradeResponseWithListener,
        ws_create_server,
    )

    class Conn(WSListener):
        def __init__(self) -> None:
            super().__init__()
            self.user: str | None = None
            self.transport: WSTransport | None = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            mt = frame.msg_type
            if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY:
                # The memoryview is only valid inside this callback; orjson copies what it keeps.
                data = frame.get_payload_as_memoryview()
                user = self.user
                if user is None:
                    user, reply = core.hello(data)
                    transport.send(WSMsgType.TEXT, reply)
                    if user is None:
                        transport.disconnect()
                        return
                    self.user = user
                    core.register(user, self)
                    return
                ack, peer, out = core.route(user, data)
                transport.send(WSMsgType.TEXT, ack)
                if peer is not None:
                    pt = peer.transport
                    if pt is not None and not pt.is_disconnected:
                        pt.send(WSMsgType.TEXT, out)
            elif mt is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if self.user is not None:
                core.unregister(self.user, self)

    core: RelayCore[Conn] = RelayCore("picows")

    def http_ok(body: bytes, content_type: str) -> WSUpgradeResponseWithListener:
        resp = WSUpgradeResponse.create_ok_response(body, {"Content-Type": content_type})
        return WSUpgradeResponseWithListener(resp, None)

    def route(request: WSUpgradeRequest) -> Any:
        path = bytes(request.path).split(b"?", 1)[0]
        if path == WS_PATH.encode():
            return Conn()
        if path == b"/healthz":
            return http_ok(core.health(), "application/json")
        if path == b"/metrics":
            return http_ok(core.metrics(), "text/plain")
        return None  # picows answers 404

    server = await ws_create_server(
        route,
        host,
        port,
        max_frame_size=MAX_FRAME,
        # picows allocates this per connection up front; it dominates idle memory.
        read_buffer_init_size=read_buffer,
        reuse_port=reuse_port or None,
        backlog=BACKLOG,
    )
    bound = int(server.sockets[0].getsockname()[1])

    async def stop() -> None:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    return bound, stop


STARTERS: dict[str, Callable[[str, int, bool], Awaitable[tuple[int, Stopper]]]] = {
    "aiohttp": start_aiohttp,
    "websockets": start_websockets,
    "picows": start_picows,
}


async def serve(
    stack: str,
    host: str,
    port: int,
    reuse_port: bool,
    max_seconds: float,
    picows_read_buffer: int | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop_event = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    if stack == "picows" and picows_read_buffer is not None:
        bound, stop = await start_picows(host, port, reuse_port, picows_read_buffer)
    else:
        bound, stop = await STARTERS[stack](host, port, reuse_port)
    ready = {
        "ready": True,
        "stack": stack,
        "port": bound,
        "pid": os.getpid(),
        "loop": type(loop).__module__.split(".")[0],
    }
    sys.stdout.buffer.write(orjson.dumps(ready) + b"\n")
    sys.stdout.flush()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), max_seconds)
    await stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description="bare IM relay server")
    p.add_argument("--stack", choices=STACKS, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT, for N processes")
    p.add_argument("--cpu", type=int, help="pin to one CPU (before any thread starts)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long")
    p.add_argument("--picows-read-buffer", type=int, help="picows read_buffer_init_size (bytes)")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_fd_limit()
    coro = serve(
        args.stack,
        args.host,
        args.port,
        args.reuse_port,
        args.max_seconds,
        args.picows_read_buffer,
    )
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
