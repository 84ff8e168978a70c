"""The local bus is authenticated (issue 12), through the real ``imctl`` and real processes.

A deployed stack's NATS refuses clients without the stack's credentials (they can neither
connect nor subscribe to ``im.u.>``), its nodes still deliver across the bus, no secret is on
any command line, and the monitoring port stays on loopback. Last, a stack deployed before the
bus had a password (secrets.json without it, NATS started with flags, nodes without
credentials) is turned into an authenticated one by the next ``imctl deploy``.

The tests share one stack and run in file order (the last one rebuilds it the old way).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.state import Secrets, StackFiles
from cli.targets.local import procs
from cli.targets.local.nats import NatsProcess, find_nats_server
from cli.targets.local.procs import free_port, free_ports
from cli.targets.local.target import LocalTarget
from im_server import auth
from im_server.client import Client
from tests.cli.test_local_e2e import imctl, ok_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    # Under /tmp with o+x: PostgreSQL runs as an unprivileged user and must reach its data.
    root = Path(tempfile.mkdtemp(prefix="imctl-busauth-"))
    root.chmod(0o711)
    yield root
    imctl(root, "destroy", "-s", "dev", "--yes")
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def deployed(home: Path) -> dict[str, Any]:
    return ok_json(home, "deploy", "--replicas", "2", "--port", str(free_port()))


def _stack(home: Path) -> StackFiles:
    return StackFiles(home / "stacks" / "dev")


def _secrets(home: Path) -> dict[str, str]:
    doc: dict[str, str] = json.loads(_stack(home).secrets_path.read_text())
    return doc


def _bus(home: Path) -> dict[str, Any]:
    bus: dict[str, Any] = ok_json(home, "status")["regions"][0]["bus"]
    return bus


def _nats_url(home: Path) -> str:
    return f"nats://127.0.0.1:{_bus(home)['port']}"


async def _raw_subscribe(port: int, connect: dict[str, Any]) -> bytes:
    """Speak the NATS protocol by hand: CONNECT, SUB im.u.>, PING; return all the server said
    until it closed the connection or went quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        got = await reader.readline()  # INFO
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nSUB im.u.> 1\r\nPING\r\n")
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            while chunk := await asyncio.wait_for(reader.read(4096), 2):
                got += chunk
        return got
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_clients_without_the_credentials_are_refused(
    deployed: dict[str, Any], home: Path
) -> None:
    url = _nats_url(home)
    for creds in ({}, {"user": "im", "password": "wrong"}, {"user": "other", "password": "x"}):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(url, allow_reconnect=False, connect_timeout=2, **creds)
    # The protocol by hand: the subscription is refused and the connection closed.
    port = _bus(home)["port"]
    said = await _raw_subscribe(port, {"verbose": False, "pedantic": False})
    assert b"-ERR 'Authorization Violation'" in said and b"PONG" not in said
    # The stack's own credentials get in (the refusals above are about them).
    pw = _secrets(home)["nats_password"]
    nc = await nats.connect(url, user="im", password=pw, allow_reconnect=False, connect_timeout=2)
    await nc.close()


async def _client_on_another_node(endpoint: str, token: str, avoid: str | None) -> Client:
    for _ in range(30):  # SO_REUSEPORT picks the node by the connection's hash
        c = Client(endpoint, token)
        await c.connect()
        if c.node != avoid:
            return c
        await c.close()
    raise AssertionError(f"every connection landed on {avoid}")


@pytest.fixture
async def two_nodes(deployed: dict[str, Any], home: Path) -> AsyncIterator[tuple[Client, Client]]:
    secret = _secrets(home)["jwt_secret"]
    bob = await _client_on_another_node(deployed["endpoint"], auth.mint(secret, "bob", 600), None)
    alice = await _client_on_another_node(
        deployed["endpoint"], auth.mint(secret, "alice", 600), bob.node
    )
    yield alice, bob
    await alice.close()
    await bob.close()


async def test_authenticated_nodes_deliver_across_the_bus(two_nodes: tuple[Client, Client]) -> None:
    alice, bob = two_nodes
    assert alice.node != bob.node
    ack = await alice.send({"text": "through NATS"}, to="bob")
    got = await asyncio.wait_for(bob.messages.get(), 5)
    assert (got.conv, got.seq, got.body) == (ack.conv, ack.seq, {"text": "through NATS"})


def test_no_secret_on_any_command_line_and_monitoring_on_loopback(
    deployed: dict[str, Any], home: Path
) -> None:
    values = [v for v in _secrets(home).values() if v]
    assert len(values) == 4  # jwt, admin, PostgreSQL, NATS
    region = ok_json(home, "status")["regions"][0]
    pids = [region["bus"]["pid"], *(n["pid"] for n in region["nodes"])]
    assert len(pids) == 3
    for pid in pids:
        argv = " ".join(psutil.Process(pid).cmdline())
        assert not [v for v in values if v in argv], f"a secret is on the command line of {pid}"
    nats_proc = psutil.Process(region["bus"]["pid"])
    assert nats_proc.cmdline()[1] == "-c"
    conf = Path(nats_proc.cmdline()[2])
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(_stack(home).secrets_path.stat().st_mode) == 0o600
    # Every port NATS listens on (client and monitoring) is bound to loopback only.
    listening = [c.laddr for c in nats_proc.net_connections("inet") if c.status == "LISTEN"]
    assert len(listening) == 2 and {a.ip for a in listening} == {"127.0.0.1"}
    # The nodes carry the credentials in their environment instead.
    for n in region["nodes"]:
        env = psutil.Process(n["pid"]).environ()
        assert env["IM_NATS_USER"] == "im"
        assert env["IM_NATS_PASSWORD"] == _secrets(home)["nats_password"]


def _make_it_an_old_stack(home: Path) -> None:
    """What an imctl from before bus auth left running: secrets.json without the NATS
    password, nats-server started with flags and no config file, nodes without credentials."""
    files = _stack(home)
    old = {k: v for k, v in _secrets(home).items() if k != "nats_password"}
    cfg = files.load_config()
    [region] = LocalTarget(files).regions(cfg, Secrets(**old))
    region.remove_nodes(0, lambda _: None)
    nats_proc = region.nats()
    nats_proc.stop()
    nats_proc.config_path.unlink()
    flags = ["-a", "127.0.0.1", "-p", str(nats_proc.port), "-m", str(nats_proc.monitor_port)]
    procs.spawn_detached(
        [str(find_nats_server()), *flags],
        log_file=nats_proc.log_file,
        pid_file=nats_proc.pid_file,
        env=None,
        cwd=nats_proc.store_dir,
    )
    deadline = time.monotonic() + 10
    while not nats_proc.healthy():
        assert time.monotonic() < deadline, "old-style nats-server did not come up"
        time.sleep(0.05)
    region.ensure_nodes(cfg.primary.replicas, lambda _: None)
    files.secrets_path.write_text(json.dumps(old) + "\n")
    files.secrets_path.chmod(0o600)


async def test_next_deploy_turns_auth_on_for_a_stack_from_before(
    deployed: dict[str, Any], home: Path
) -> None:
    before = _secrets(home)
    await asyncio.to_thread(_make_it_an_old_stack, home)
    # It really is the old, open bus now.
    nc = await nats.connect(_nats_url(home), allow_reconnect=False, connect_timeout=2)
    await nc.close()
    old_pid = _bus(home)["pid"]

    doc = await asyncio.to_thread(ok_json, home, "deploy")
    actions = doc["actions"]
    assert "restarted node n1 with bus credentials" in actions
    assert "restarted node n2 with bus credentials" in actions
    # Nodes first, then the bus: no node was ever locked out.
    assert actions.index("restarted node n2 with bus credentials") < next(
        i for i, a in enumerate(actions) if a.startswith("restarted NATS")
    )
    after = _secrets(home)
    assert after["nats_password"] and {k: after[k] for k in before if k != "nats_password"} == {
        k: v for k, v in before.items() if k != "nats_password"
    }
    assert stat.S_IMODE(_stack(home).secrets_path.stat().st_mode) == 0o600
    assert _bus(home)["pid"] != old_pid

    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(_nats_url(home), allow_reconnect=False, connect_timeout=2)
    # Tokens minted before still work (the JWT secret is unchanged), and delivery crosses nodes.
    secret = before["jwt_secret"]
    bob = await _client_on_another_node(doc["endpoint"], auth.mint(secret, "bob2", 600), None)
    alice = await _client_on_another_node(
        doc["endpoint"], auth.mint(secret, "alice2", 600), bob.node
    )
    try:
        ack = await alice.send("after the upgrade", to="bob2")
        got = await asyncio.wait_for(bob.messages.get(), 5)
        assert (got.seq, got.body) == (ack.seq, "after the upgrade")
    finally:
        await alice.close()
        await bob.close()
    # And the deploy after that has nothing left to do.
    assert (await asyncio.to_thread(ok_json, home, "deploy"))["actions"] == []


@pytest.mark.parametrize("password", [None, "pw-for-this-test"])
def test_requires_login_is_what_the_server_says(tmp_path: Path, password: str | None) -> None:
    port, monitor = free_ports(2)
    n = NatsProcess(
        port=port,
        monitor_port=monitor,
        store_dir=tmp_path / "store",
        log_file=tmp_path / "nats.log",
        pid_file=tmp_path / "nats.pid",
        password=password,
    )
    assert n.requires_login() is None  # nothing listens yet
    n.start()
    try:
        assert n.requires_login() is (password is not None)
        assert n.runs_current_config()
        n.password = "another"  # what a changed secret would ask for
        assert not n.runs_current_config()
    finally:
        n.stop(timeout=5)
