"""What a node does with bus frames it cannot trust, and that nodes log in to the bus.

Unit: ``Hub.on_bus`` drops every malformed frame (no exception, nothing pushed, counted).
Real processes: two im-server nodes on an authenticated nats-server; frames injected with the
bus credentials are dropped by the node, and a real cross-node message still arrives after them.
"""

from __future__ import annotations

import asyncio
import secrets
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from cli.targets.local.nats import NatsProcess
from cli.targets.local.procs import free_ports
from im_server import protocol
from im_server.bus import PRESENCE_QUERY
from im_server.client import Client
from im_server.hub import Hub
from im_server.migrate import migrate
from im_server.ratelog import LogThrottle
from tests.im_server.cluster import Cluster, url
from tests.im_server.conftest import until

GOOD_MSG = protocol.msg("d:alice:bob", 1, "alice", 1_700_000_000_000, '{"text":"hi"}')

# (subject, payload): each one once raised out of on_bus or reached a client.
MALFORMED: list[tuple[str, bytes]] = [
    ("im.u.bob", b""),
    ("im.u.bob", b"no newlines at all"),
    ("im.u.bob", b"n9\nmsg"),  # two lines
    ("im.u.bob", b"n9\nmsg\nnot json"),
    ("im.u.bob", b'n9\nmsg\n{"type":"msg"'),  # truncated JSON
    ("im.u.bob", b"n9\nmsg\n[1,2,3]"),  # JSON, not an object
    ("im.u.bob", b'n9\nmsg\n"a string"'),
    ("im.u.bob", b'n9\nmsg\n{"type":"typing","conv":"d:a:b","user":"a"}'),  # kind lies
    ("im.u.bob", b'n9\nmsg\n{"type":"msg"}'),  # msg without conv/seq/from/ts/body
    ("im.u.bob", b"n9\nmsg\n" + GOOD_MSG.replace('"seq":1', '"seq":"1"').encode()),
    ("im.u.bob", b"n9\nmsg\n" + GOOD_MSG.replace('"seq":1', '"seq":true').encode()),
    ("im.u.bob", b"n9\nmsg\n" + GOOD_MSG.replace('"from":"alice"', '"from":"a b"').encode()),
    ("im.u.bob", b"n9\nmsg\n" + GOOD_MSG.replace('"conv":"d:alice:bob"', '"conv":7').encode()),
    ("im.u.bob", b'n9\ntyping\n{"type":"typing","conv":"d:a:b"}'),  # no user
    ("im.u.bob", b"\xff\xfe\nmsg\n" + GOOD_MSG.encode()),  # origin not UTF-8
    ("im.u.bob", b"n9\nmsg\n\xff" + GOOD_MSG.encode()),  # frame not UTF-8
    ("im.u.bob", b"\nmsg\n" + GOOD_MSG.encode()),  # no origin
    ("im.p.bob", b""),
    ("im.p.bob", b"n9"),
    ("im.p.bob", b"n9\nmaybe"),
    ("im.p.bob", b"\nonline"),
    ("im.p.bob", b"\xff\nonline"),
    (PRESENCE_QUERY, b"not json"),
    (PRESENCE_QUERY, b'{"users":["bob"]}'),
    (PRESENCE_QUERY, b'["bob", 7]'),
    (PRESENCE_QUERY, b'"bob"'),
    (PRESENCE_QUERY, ("[" + ",".join(['"u"'] * (protocol.MAX_WATCH + 1)) + "]").encode()),
]


class FakeSession:
    def __init__(self, user: str) -> None:
        self.id = secrets.token_hex(4)
        self.user = user
        self.pushed: list[tuple[str, str]] = []

    def push(self, frame: str, kind: str) -> None:
        self.pushed.append((frame, kind))


class FakeBus:
    connected = True

    def __init__(self) -> None:
        self.replies: list[tuple[str, bytes]] = []

    async def subscribe(self, subject: str) -> None:
        pass

    async def unsubscribe(self, subject: str) -> None:
        pass

    async def publish(self, subject: str, payload: bytes) -> None:
        pass

    async def gather(self, subject: str, payload: bytes, wait: float) -> list[bytes]:
        return []

    async def reply(self, reply_to: str, payload: bytes) -> None:
        self.replies.append((reply_to, payload))

    async def close(self) -> None:
        pass


async def test_on_bus_drops_malformed_frames_and_still_pushes_good_ones() -> None:
    hub = Hub("n1")
    bus = FakeBus()
    hub.bus = bus
    dropped: list[str] = []
    hub.bus_dropped = dropped.append
    bob, carol = FakeSession("bob"), FakeSession("carol")
    await hub.attach(bob)
    await hub.attach(carol)
    await hub.watch(carol, ["bob"], per_session=1000, per_node=5000)
    for subject, payload in MALFORMED:
        await hub.on_bus(subject, payload, "_INBOX.x")  # must not raise
    await hub.on_bus("im.x.bob", b"n9\nmsg\n" + GOOD_MSG.encode(), None)
    await hub.on_bus(PRESENCE_QUERY, b'["bob"]', None)  # a query nobody can answer
    assert bob.pushed == [] and carol.pushed == [] and bus.replies == []
    assert len(dropped) == len(MALFORMED) + 2
    assert set(dropped) == {"user", "presence", "query", "unknown"}

    await hub.on_bus("im.u.bob", b"n9\nmsg\n" + GOOD_MSG.encode(), None)
    assert bob.pushed == [(GOOD_MSG, "msg")]
    typing = protocol.typing("d:alice:bob", "alice")
    await hub.on_bus("im.u.bob", b"n9\ntyping\n" + typing.encode(), None)
    assert bob.pushed[-1] == (typing, "typing")
    await hub.on_bus(PRESENCE_QUERY, b'["bob","zed"]', "_INBOX.y")
    assert bus.replies == [("_INBOX.y", b'{"node":"n1","users":["bob"]}')]
    await hub.on_bus("im.p.dave", b"n9\nonline", None)  # well formed, nobody watches dave
    assert len(dropped) == len(MALFORMED) + 2


def test_a_throttled_log_is_due_once_per_interval_with_the_count_held_back() -> None:
    throttle = LogThrottle(interval=10.0)
    assert [throttle.due() for _ in range(3)] == [1, 0, 0]
    throttle._last -= 10.0  # as if ten seconds went by
    assert [throttle.due(), throttle.due()] == [3, 0]


# --- real processes -------------------------------------------------------------------------


@pytest.fixture
def auth_nats(tmp_path: Path) -> Iterator[NatsProcess]:
    port, monitor = free_ports(2)
    n = NatsProcess(
        port=port,
        monitor_port=monitor,
        store_dir=tmp_path / "nats-store",
        log_file=tmp_path / "nats.log",
        pid_file=tmp_path / "nats.pid",
        password=secrets.token_urlsafe(24),
    )
    n.start()
    yield n
    n.stop(timeout=5)


@pytest.fixture
async def auth_cluster(
    fresh_dsn: str, auth_nats: NatsProcess, tmp_path: Path
) -> AsyncIterator[Cluster]:
    await migrate(fresh_dsn)
    c = Cluster(fresh_dsn, auth_nats.url, tmp_path, secrets.token_urlsafe(24))
    assert auth_nats.password is not None
    c.env.update(IM_NATS_USER=auth_nats.user, IM_NATS_PASSWORD=auth_nats.password)
    yield c
    await c.close()


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_nodes_drop_injected_frames_and_keep_delivering(
    auth_cluster: Cluster, auth_nats: NatsProcess
) -> None:
    n0, n1 = await auth_cluster.add(), await auth_cluster.add()
    async with (
        Client(url(n0.port), auth_cluster.token("alice")) as alice,
        Client(url(n1.port), auth_cluster.token("bob")) as bob,
    ):
        assert (alice.node, bob.node) == ("n0", "n1")
        assert await alice.watch(["bob"]) == ["bob"]  # n0 now listens on im.p.bob
        # The nodes logged in: a message crosses from n0 to n1 through the bus.
        await alice.send({"text": "before"}, to="bob")
        assert (await asyncio.wait_for(bob.messages.get(), 5)).body == {"text": "before"}

        nc = await nats.connect(
            auth_nats.url,
            user=auth_nats.user,
            password=auth_nats.password,
            allow_reconnect=False,
            connect_timeout=2,
        )
        try:
            for subject, payload in MALFORMED:
                await nc.publish(subject, payload)
            await nc.flush(timeout=2)
        finally:
            await nc.close()

        ack = await alice.send({"text": "after"}, to="bob")
        got = await asyncio.wait_for(bob.messages.get(), 5)
        assert (got.seq, got.body) == (ack.seq, {"text": "after"})
        count = {p: sum(s.startswith(p) for s, _ in MALFORMED) for p in ("im.u.", "im.p.", "im.pq")}
        # n1 holds bob (im.u.bob), n0 watches him (im.p.bob); both answer presence queries.
        want = [(n1, count["im.u."] + count["im.pq"]), (n0, count["im.p."] + count["im.pq"])]
        # Injected frames may be handled after the real message: once each node has counted
        # them all, none is still on its way to bob, and the pong follows anything pushed.
        await until(
            lambda: all(_metric(n.port, "im_bus_dropped_total") >= k for n, k in want),
            15,
            "the nodes did not drop every injected frame",
        )
        await bob.ping()
        assert bob.messages.empty()  # nothing injected reached the client
        for node in (n0, n1):
            assert node.proc is not None and node.proc.returncode is None
        assert [_metric(n.port, "im_bus_dropped_total") for n, _ in want] == [k for _, k in want]
