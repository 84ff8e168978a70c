"""An in-process im-server on a random loopback port, against a fresh real PostgreSQL database."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from cli.targets.local.postgres import PgInstance
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


# One server per module, its database emptied before each test: a database per test costs half
# a second (CREATE/DROP DATABASE). Tests that need other settings use server_factory.
@pytest.fixture(scope="module")
async def _shared_server(pg_instance: PgInstance) -> AsyncIterator[Running]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    pg_instance.create_database(name)
    dsn = pg_instance.dsn(name)
    await migrate(dsn)
    settings = Settings(
        database_url=dsn,
        jwt_secret=secrets.token_urlsafe(24),
        admin_token=secrets.token_urlsafe(24),
        drain_grace=5.0,
    )
    server = ImServer(settings, node_id="shared")
    await server.start()
    port = await server.listen("127.0.0.1", 0)
    yield Running(server, port, settings, [])
    await server.stop()
    if pg_instance.is_running():
        pg_instance.sql('DROP DATABASE IF EXISTS :"db" WITH (FORCE)', variables={"db": name})


@pytest.fixture
async def shared_im(_shared_server: Running) -> AsyncIterator[Running]:
    """The module's server with an empty database, no sessions and nothing in flight."""
    conn = await asyncpg.connect(_shared_server.settings.database_url)
    try:
        await conn.execute("TRUNCATE conversations, members, messages")
    finally:
        await conn.close()
    running = Running(_shared_server.server, _shared_server.port, _shared_server.settings, [])
    yield running
    for c in running.clients:
        await c.close()
    server = running.server
    deadline = time.monotonic() + 5
    # Only the health loop may remain among the server's tasks (no bus here).
    while server.conns or not server.batcher.idle.is_set() or len(server._tasks) > 1:
        assert time.monotonic() < deadline, "sessions or requests outlived the test"
        await asyncio.sleep(0.01)
