"""An in-process im-server on a random loopback port, against a fresh real PostgreSQL database."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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
    health_port: int | None = None  # the node's own, ungated port, when asked for

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


def node_settings(dsn: str, **overrides: Any) -> Settings:
    """A test node's settings: fresh secrets and a drain grace short enough to wait for."""
    base = Settings(
        database_url=dsn,
        jwt_secret=secrets.token_urlsafe(24),
        admin_token=secrets.token_urlsafe(24),
        drain_grace=5.0,
    )
    return dataclasses.replace(base, **overrides)


async def start_node(settings: Settings, node_id: str, health_port: int | None = None) -> Running:
    """An in-process node serving on a random loopback port (and ``health_port`` if given)."""
    server = ImServer(settings, node_id=node_id)
    await server.start()
    port = await server.listen("127.0.0.1", 0, health_port=health_port)
    return Running(server, port, settings, [], health_port)


async def stop_node(r: Running) -> None:
    for c in r.clients:
        await c.close()
    await r.server.stop()


async def until(cond: Callable[[], object], timeout: float = 5.0, what: str = "") -> float:
    """Poll ``cond`` until it is true; ``timeout`` is a liveness bound, not a sleep. Returns the
    seconds it took."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"{what or 'condition'}: not within {timeout}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


@pytest.fixture
async def server_factory(fresh_dsn: str) -> AsyncIterator[ServerFactory]:
    """``await server_factory(health_port=None, **settings)``: a node on the test's own
    database; every node of one test shares its secrets."""
    await migrate(fresh_dsn)
    running: list[Running] = []
    base = node_settings(fresh_dsn)

    async def start(*, health_port: int | None = None, **overrides: Any) -> Running:
        r = await start_node(
            dataclasses.replace(base, **overrides), f"n{len(running)}", health_port
        )
        running.append(r)
        return r

    yield start
    for r in running:
        await stop_node(r)


@pytest.fixture
async def im(server_factory: ServerFactory) -> Running:
    return await server_factory()


@asynccontextmanager
async def module_node(
    pg_instance: PgInstance, node_id: str, **overrides: Any
) -> AsyncIterator[Running]:
    """A node on a database of its own, for a module-scoped fixture (``fresh_dsn`` is per test)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    pg_instance.create_database(name)
    dsn = pg_instance.dsn(name)
    await migrate(dsn)
    r = await start_node(node_settings(dsn, **overrides), node_id)
    yield r
    await stop_node(r)
    if pg_instance.is_running():
        pg_instance.sql('DROP DATABASE IF EXISTS :"db" WITH (FORCE)', variables={"db": name})


# One server per module, its database emptied before each test: a database per test costs half
# a second (CREATE/DROP DATABASE). Tests that need other settings use server_factory.
@pytest.fixture(scope="module")
async def _shared_server(pg_instance: PgInstance) -> AsyncIterator[Running]:
    async with module_node(pg_instance, "shared") as r:
        yield r


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
    # Only the health loop may remain among the server's tasks (no bus here).
    await until(
        lambda: not server.conns and server.batcher.idle.is_set() and len(server._tasks) <= 1,
        what="sessions or requests outlived the test",
    )
