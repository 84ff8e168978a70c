"""Shared fixtures: real PostgreSQL and NATS processes from the wheels, loopback only.

Everything a fixture starts, it stops (PostgreSQL by PID if a clean stop fails).
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.errors import ImctlError, ResourceFailure
from cli.targets.local.nats import NatsProcess
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port, free_ports

# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_base_dir() -> Iterator[Path]:
    """A temp root the PostgreSQL system user can traverse (we run as root in CI).

    Not under tmp_path_factory: every pytest session that starts, including concurrent ones,
    chmods /tmp/pytest-of-<user> back to 0700, which would lock the pg user out mid-run.
    """
    base = Path(tempfile.mkdtemp(prefix="imctl-test-pg-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_tmp_path(pg_base_dir: Path, request: pytest.FixtureRequest) -> Path:
    """Like tmp_path, but reachable by the pg user; for tests that create their own clusters."""
    prefix = re.sub(r"\W", "_", request.node.name)[:40] + "-"
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=pg_base_dir))
    path.chmod(0o711)
    return path


def _start_pg(pg: PgInstance, attempts: int = 3) -> int:
    """Start ``pg``; if its port was taken between free_port() and the bind, try new ones."""
    for attempt in range(attempts):
        try:
            return pg.start()
        except ResourceFailure:
            if attempt == attempts - 1:
                raise
            pg.port = free_port()
    raise AssertionError("unreachable")


def _stop_pg(pg: PgInstance) -> None:
    try:
        pg.stop(timeout=15)
    except ImctlError:
        pg.kill9()


def _new_pg(root: Path, start: bool = True) -> PgInstance:
    pg = PgInstance(data_dir=root / "data", port=free_port())
    pg.init(secrets.token_urlsafe(18))
    if start:
        _start_pg(pg)
    return pg


@pytest.fixture(scope="session")
def pg_instance(pg_base_dir: Path) -> Iterator[PgInstance]:
    """One cluster for the whole session; use fresh_dsn for an isolated database in it."""
    pg = _new_pg(pg_base_dir / "session")
    yield pg
    _stop_pg(pg)


@pytest.fixture
def pg_factory(pg_tmp_path: Path) -> Iterator[Callable[..., PgInstance]]:
    """``pg_factory(name="pg", start=True)``: a cluster of the test's own (for tests that stop,
    kill or replicate it), initialised with a random password (``.password``); all stopped
    at teardown."""
    made: list[PgInstance] = []

    def make(name: str = "pg", start: bool = True) -> PgInstance:
        pg = _new_pg(pg_tmp_path / name, start=start)
        made.append(pg)
        return pg

    yield make
    for pg in made:
        _stop_pg(pg)


@pytest.fixture
def fresh_dsn(pg_instance: PgInstance) -> Iterator[str]:
    """DSN of a new, uniquely named, empty database (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    pg_instance.create_database(name)
    yield pg_instance.dsn(name)
    if pg_instance.is_running():
        pg_instance.sql('DROP DATABASE IF EXISTS :"db" WITH (FORCE)', variables={"db": name})


# --- NATS ---------------------------------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsProcess]:
    port, monitor_port = free_ports(2)
    nats = NatsProcess(
        port=port,
        monitor_port=monitor_port,
        store_dir=tmp_path / "nats-store",
        log_file=tmp_path / "nats.log",
        pid_file=tmp_path / "nats.pid",
    )
    nats.start()
    yield nats
    nats.stop(timeout=5)
