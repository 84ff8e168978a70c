"""The connection cap on the public ports, enforced below aiohttp at accept time."""

from __future__ import annotations

import asyncio
import resource
import ssl
from collections.abc import Callable

from aiohttp import web


def default_max_connections() -> int:
    """Below the descriptor limit by a margin for the database pool, NATS, the health port,
    logs and a burst of accepts: past the limit accept() fails and nobody gets in."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(64, soft - max(256, soft // 5))


_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b'Content-Length: 28\r\nConnection: close\r\n\r\n{"error": "too many connections"}'
)


class Gate:
    """Counts connections on the public ports and turns away those over the cap.

    The count is taken when the protocol is made (at accept), not when aiohttp registers the
    connection a loop iteration later, so a burst of accepts cannot overshoot it."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], cap: int) -> None:
        self.factory = factory
        self.cap = cap
        self.open = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.cap:
            self.refused += 1
            return _Refused()
        self.open += 1
        return _Counted(self, self.factory())


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)  # a few bytes, no parsing: cheap at any rate
        transport.close()


class _Counted(asyncio.Protocol):
    """Forwards everything to aiohttp's handler; gives its slot back when the socket closes."""

    __slots__ = ("gate", "inner")

    def __init__(self, gate: Gate, inner: asyncio.Protocol) -> None:
        self.gate = gate
        self.inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.open -= 1
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GatedSite(web.BaseSite):
    """A shared (SO_REUSEPORT) public port whose connections pass through a Gate."""

    __slots__ = ("_gate", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        gate: Gate,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, backlog=4096, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._gate,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=True,
            ssl=self._ssl_context,
        )
