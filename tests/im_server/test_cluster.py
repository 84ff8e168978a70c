"""Several real im-server processes behind one endpoint behave as one server: cross-node
delivery, and zero loss through kill -9, rolling restarts and a NATS outage."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from cli.targets.local.nats import NatsProcess
from cli.targets.local.procs import free_port
from im_server.client import Client
from im_server.migrate import migrate
from tests.im_server.cluster import Cluster, Traffic, audit, url, wait_ready

pytestmark = pytest.mark.slow

ZERO = {
    "acked_missing": 0,
    "acked_duplicate_seq": 0,
    "seq_gaps": 0,
    "observed_missing": 0,
    "observed_duplicates": 0,
}


@pytest.fixture
async def cluster(
    fresh_dsn: str, nats_server: NatsProcess, tmp_path: Path
) -> AsyncIterator[Cluster]:
    await migrate(fresh_dsn)
    c = Cluster(fresh_dsn, nats_server.url, tmp_path, secrets.token_urlsafe(24))
    clients: list[Client] = []
    c.clients = clients  # type: ignore[attr-defined]
    yield c
    for cl in clients:
        await cl.close()
    await c.close()


async def _client(c: Cluster, user: str, port: int, **kw: object) -> Client:
    cl = Client(url(port), c.token(user), **kw)  # type: ignore[arg-type]
    c.clients.append(cl)  # type: ignore[attr-defined]
    await cl.connect()
    return cl


Chaos = Callable[[dict[str, Client], Traffic], Awaitable[None]]


def _only(report: dict[str, int]) -> dict[str, int]:
    return {k: report[k] for k in ZERO}


async def test_clients_on_different_nodes_talk_and_see_presence(cluster: Cluster) -> None:
    n0, n1, n2 = [await cluster.add() for _ in range(3)]
    alice = await _client(cluster, "alice", n0.port)
    bob = await _client(cluster, "bob", n1.port)
    carol = await _client(cluster, "carol", n2.port)
    assert {alice.node, bob.node, carol.node} == {"n0", "n1", "n2"}

    await alice.send({"text": "hi bob"}, to="bob")
    m = await asyncio.wait_for(bob.messages.get(), 5)
    assert (m.sender, m.body) == ("alice", {"text": "hi bob"})

    group = await carol.create_group("g", ["alice", "bob"])
    await carol.send("to all", conv=group["conv"])
    for c in (alice, bob):
        got = [await asyncio.wait_for(c.messages.get(), 5) for _ in range(2)]
        assert [x.seq for x in got] == [1, 2] and got[1].body == "to all"

    # Presence and typing cross nodes too.
    assert await alice.watch(["bob", "nobody"]) == ["bob"]
    await carol.typing(group["conv"])
    for c in (alice, bob):
        ev = await asyncio.wait_for(c.events.get(), 5)
        assert ev == {"type": "typing", "conv": group["conv"], "user": "carol"}
    await bob.close()
    ev = await asyncio.wait_for(alice.events.get(), 5)
    assert ev == {"type": "presence", "user": "bob", "status": "offline"}
    await _client(cluster, "bob", n2.port)
    ev = await asyncio.wait_for(alice.events.get(), 5)
    assert ev == {"type": "presence", "user": "bob", "status": "online"}


async def _load_setup(cluster: Cluster, port: int) -> tuple[Traffic, dict[str, Client], str]:
    """Two senders and five recipients on a shared port: a group stream and a 1:1 stream."""
    recipients = {f"r{i}": await _client(cluster, f"r{i}", port) for i in range(5)}
    owner = await _client(cluster, "s0", port)
    s1 = await _client(cluster, "s1", port)
    group = (await owner.create_group("load", list(recipients)))["conv"]
    return Traffic(), {"s0": owner, "s1": s1, **recipients}, group


async def _run_load(
    cluster: Cluster,
    port: int,
    n: int,
    chaos: Chaos,
) -> dict[str, int]:
    traffic, clients, group = await _load_setup(cluster, port)
    stop = asyncio.Event()
    recorders = [
        asyncio.create_task(traffic.record(name, c, stop))
        for name, c in clients.items()
        if name.startswith("r")
    ]
    senders = [
        asyncio.create_task(traffic.stream(clients["s0"], {"conv": group}, n, 0.01)),
        asyncio.create_task(traffic.stream(clients["s1"], {"to": "r1"}, n, 0.01)),
    ]
    await chaos(clients, traffic)
    connects_after_chaos = sum(c.connects for c in clients.values())
    await asyncio.wait_for(asyncio.gather(*senders), 120)
    expect = {f"r{i}": {group: n + 1} for i in range(5)}  # +1: the group_created event
    expect["r1"]["d:r1:s1"] = n
    await traffic.settle(expect, timeout=30)
    stop.set()
    await asyncio.gather(*recorders)
    report = await audit(cluster.dsn, traffic, expect)
    if report["observed_missing"]:
        for name, c in clients.items():
            print(
                name,
                c.node,
                c.connects,
                c.connected,
                c.unacked,
                {
                    k[:8]: (st.next, len(st.held), st.filling, st.known_last)
                    for k, st in c._convs.items()
                },
            )
    report["reconnects"] = sum(c.connects for c in clients.values()) - len(clients)
    report["reconnects_seen_at_chaos_end"] = connects_after_chaos - len(clients)
    print(report)
    return report


async def test_kill9_of_a_busy_node_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    port = free_port()
    nodes = [await cluster.add(port) for _ in range(3)]
    killed: list[str] = []

    async def chaos(clients: dict[str, Client], traffic: Traffic) -> None:
        await asyncio.sleep(0.8)
        counts = {n.name: sum(c.node == n.name for c in clients.values()) for n in nodes}
        victim = max(nodes, key=lambda n: counts[n.name])
        victim.kill9()
        killed.append(victim.name)

    report = await _run_load(cluster, port, 150, chaos)
    assert _only(report) == ZERO, report
    assert report["acked"] == 300
    assert killed and report["reconnects"] >= 1  # the victim's clients really moved


async def test_rolling_restart_under_load_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    port = free_port()
    nodes = [await cluster.add(port) for _ in range(3)]
    exits: list[int] = []

    async def chaos(clients: dict[str, Client], traffic: Traffic) -> None:
        for node in nodes:
            await asyncio.sleep(0.4)
            exits.append(await node.sigterm())
            await node.start()
        await wait_ready(port)

    report = await _run_load(cluster, port, 200, chaos)
    assert exits == [0, 0, 0]
    assert _only(report) == ZERO, report
    assert report["acked"] == 400
    assert report["reconnects"] >= len(nodes)  # every node had sessions to drain


async def test_nats_outage_keeps_acking_and_pushes_resume(
    cluster: Cluster, nats_server: NatsProcess
) -> None:
    port = free_port()
    await cluster.add(port)
    await cluster.add(port)
    during: list[int] = []

    async def chaos(clients: dict[str, Client], traffic: Traffic) -> None:
        await asyncio.sleep(0.5)
        nats_server.kill9()
        async with aiohttp.ClientSession() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:  # until the node has noticed; its pings detect it within seconds
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    body = await r.json()
                    status = r.status
                if body["bus"] == "down" or loop.time() > deadline:
                    break
                await asyncio.sleep(0.05)
            # The bus is down, but the node stays ready: sends are still durable.
            assert status == 200 and body["bus"] == "down"
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert "im_bus_connected 0.0" in await r.text()
        before = len(traffic.acks)
        await asyncio.sleep(1.0)
        during.append(len(traffic.acks) - before)
        nats_server.start()

    report = await _run_load(cluster, port, 200, chaos)
    assert during and during[0] > 0, "sends must keep being acked while NATS is down"
    assert _only(report) == ZERO, report
