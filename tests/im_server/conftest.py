"""An in-process im-server on a random loopback port, against a fresh real PostgreSQL database."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from im_server import auth
from im_server.client import Client
from im_server.config import Settings
from im_server.migrate import migrate
from im_server.server import ImServer


@dataclass
class Running:
    server: ImServer
    port: int
    settings: Settings
    clients: list[Client]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, user: str, ttl: int = 3600) -> str:
        return auth.mint(self.settings.jwt_secret, user, ttl)

    async def client(self, user: str, **kw: Any) -> Client:
        c = Client(self.url, self.token(user), **kw)
        self.clients.append(c)
        await c.connect()
        return c


ServerFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def server_factory(fresh_dsn: str) -> AsyncIterator[ServerFactory]:
    await migrate(fresh_dsn)
    running: list[Running] = []
    base = Settings(
        database_url=fresh_dsn,
        jwt_secret=secrets.token_urlsafe(24),
        admin_token=secrets.token_urlsafe(24),
        drain_grace=5.0,
    )

    async def start(**overrides: Any) -> Running:
        settings = dataclasses.replace(base, **overrides)
        srv = ImServer(settings, node_id=f"n{len(running)}")
        await srv.start()
        port = await srv.listen("127.0.0.1", 0)
        r = Running(srv, port, settings, [])
        running.append(r)
        return r

    yield start
    for r in running:
        for c in r.clients:
            await c.close()
        await r.server.stop()


@pytest.fixture
async def im(server_factory: ServerFactory) -> Running:
    return await server_factory()
