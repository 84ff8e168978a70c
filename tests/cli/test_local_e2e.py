"""The local target end to end, through the real ``imctl`` command and real processes:
deploy -> token -> messages -> status -> scale under traffic -> kill -9 -> reconcile -> destroy."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.locks import StackLock
from cli.targets.local.procs import free_port
from im_server.client import Ack, Client

pytestmark = pytest.mark.slow


def imctl(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def ok_json(home: Path, *args: str) -> dict[str, Any]:
    r = imctl(home, *args, "-o", "json")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie counts as gone)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def imctl_home(prefix: str) -> Iterator[Path]:
    """An IMCTL_HOME for a test module; every stack in it is destroyed afterwards."""
    # Under /tmp with o+x: PostgreSQL runs as an unprivileged user and must reach its data.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    yield root
    for stack in (root / "stacks").glob("*") if (root / "stacks").exists() else []:
        imctl(root, "destroy", "-s", stack.name, "--yes")
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-e2e-")


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def deployed(home: Path, port: int) -> dict[str, Any]:
    return ok_json(home, "deploy", "--replicas", "2", "--port", str(port))


def _dsn(home: Path, stack: str = "dev") -> str:
    d = home / "stacks" / stack
    secrets = json.loads((d / "secrets.json").read_text())
    region = json.loads((d / "config.json").read_text())["regions"][0]["name"]
    ports = json.loads((d / "regions" / region / "ports.json").read_text())
    return f"postgresql://postgres:{secrets['pg_password']}@127.0.0.1:{ports['pg']}/im"


def test_deploy_prints_the_endpoint_and_everything_is_ready(
    deployed: dict[str, Any], home: Path, port: int
) -> None:
    assert deployed["endpoint"] == f"ws://127.0.0.1:{port}/ws"
    assert deployed["created"] is True and deployed["changed"] is True
    st = ok_json(home, "status")
    assert st["healthy"] is True
    (region,) = st["regions"]
    assert [n["ready"] for n in region["nodes"]] == [True, True]
    assert region["database"]["running"] and region["database"]["role"] == "primary"
    assert region["bus"]["running"]
    # All processes are detached: they outlive the imctl command that started them.
    for n in region["nodes"]:
        assert psutil.pid_exists(n["pid"])


def test_second_deploy_changes_nothing(deployed: dict[str, Any], home: Path) -> None:
    before = {n["pid"] for n in ok_json(home, "status")["regions"][0]["nodes"]}
    again = ok_json(home, "deploy")
    assert again["changed"] is False and again["actions"] == []
    assert {n["pid"] for n in again["regions"][0]["nodes"]} == before


async def test_token_then_message_through_the_endpoint(
    deployed: dict[str, Any], home: Path
) -> None:
    alice_tok = ok_json(home, "token", "--user", "alice")["token"]
    bob_tok = ok_json(home, "token", "--user", "bob")["token"]
    async with (
        Client(deployed["endpoint"], alice_tok) as alice,
        Client(deployed["endpoint"], bob_tok) as bob,
    ):
        ack = await alice.send({"text": "hello"}, to="bob")
        got = await asyncio.wait_for(bob.messages.get(), 5)
        assert (got.conv, got.seq, got.body) == (ack.conv, ack.seq, {"text": "hello"})


async def test_scale_up_and_down_under_traffic_loses_nothing(
    deployed: dict[str, Any], home: Path
) -> None:
    tok = ok_json(home, "token", "--user", "streamer")["token"]
    acks: list[Ack] = []
    async with Client(deployed["endpoint"], tok) as c:
        stop = asyncio.Event()

        async def stream() -> None:
            i = 0
            while not stop.is_set():
                acks.append(await c.send({"i": i}, to="sink", timeout=60))
                i += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(stream())
        for n in (3, 1, 2):
            r = await asyncio.to_thread(imctl, home, "scale", "--replicas", str(n), "-o", "json")
            assert r.returncode == 0, r.stderr
            doc = json.loads(r.stdout)
            assert doc["replicas"]["after"] == n
            assert len([x for x in doc["nodes"] if x["ready"]]) == n
        stop.set()
        await asyncio.wait_for(task, 60)
    conn = await asyncpg.connect(_dsn(home))
    try:
        rows = await conn.fetch(
            "SELECT seq FROM messages WHERE conv='d:sink:streamer' ORDER BY seq"
        )
    finally:
        await conn.close()
    seqs = [r["seq"] for r in rows]
    assert len(acks) > 50
    assert seqs == list(range(1, len(seqs) + 1))  # dense
    assert {a.seq for a in acks} <= set(seqs) and len({a.seq for a in acks}) == len(acks)
    # The count is kept: a later deploy does not undo the scale.
    assert ok_json(home, "deploy")["regions"][0]["replicas"] == 2


def test_kill9_node_shows_in_status_and_deploy_reconciles(
    deployed: dict[str, Any], home: Path
) -> None:
    nodes = ok_json(home, "status")["regions"][0]["nodes"]
    victim = nodes[0]
    os.kill(victim["pid"], signal.SIGKILL)
    psutil.Process(victim["pid"]).wait(5) if psutil.pid_exists(victim["pid"]) else None
    r = imctl(home, "status", "--check", "-o", "json")
    assert r.returncode == 10
    doc = json.loads(r.stdout)
    dead = next(n for n in doc["regions"][0]["nodes"] if n["id"] == victim["id"])
    assert doc["healthy"] is False and dead["alive"] is False
    fixed = ok_json(home, "deploy")
    assert fixed["changed"] is True and f"started node {victim['id']}" in fixed["actions"]
    assert ok_json(home, "status", "--check")["healthy"] is True


def test_mutating_command_while_locked_exits_11_naming_the_holder(
    deployed: dict[str, Any], home: Path
) -> None:
    with StackLock(home, "dev", "failover", "oncall@host"):
        r = imctl(home, "scale", "--replicas", "3", "-o", "json")
    assert r.returncode == 11
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "locked" and "failover" in err["message"]


def test_bad_input_is_refused_cleanly(deployed: dict[str, Any], home: Path, port: int) -> None:
    assert imctl(home, "status", "-s", "nope").returncode == 6
    for bad in ("0", "-1", "99"):
        r = imctl(home, "scale", "--replicas", bad, "-o", "json")
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
    # A new stack on a port that is taken: exit 10, and nothing is left half-started.
    r = imctl(home, "deploy", "-s", "other", "--port", str(port), "-o", "json")
    assert r.returncode == 10 and "in use" in json.loads(r.stdout)["error"]["message"]
    assert not (home / "stacks" / "other" / "config.json").exists()
    assert not (home / "stacks" / "other" / "regions").exists()


def test_destroy_needs_yes_without_a_tty_then_removes_all_but_the_backups(
    deployed: dict[str, Any], home: Path
) -> None:
    pids = [n["pid"] for n in ok_json(home, "status")["regions"][0]["nodes"]]
    r = imctl(home, "destroy", "-o", "json")
    assert r.returncode == 2 and "--yes" in r.stdout + r.stderr
    assert all(psutil.pid_exists(p) for p in pids)  # nothing was touched
    doc = ok_json(home, "destroy", "--yes")
    assert doc["data_deleted"] is True
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    # The continuous backup stays (issue 17), like snapshots, unless --delete-snapshots.
    assert doc["backups"]["kept"] is True
    assert {p.name for p in (home / "stacks" / "dev").iterdir()} == {"backups", "destroyed.json"}
    history = ok_json(home, "history")["operations"]
    assert [o["op"] for o in history][-1] == "destroy"
    assert {"deploy", "scale"} <= {o["op"] for o in history}
