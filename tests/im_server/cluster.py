"""Real im-server processes sharing one PostgreSQL and one NATS, for multi-node and chaos tests.

Also the traffic and the audit those tests share: senders that stream until acked, recipients
that record what they saw, and a check of both against the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from cli.targets.local.procs import free_port
from im_server import auth
from im_server.client import Ack, Client, Message


@dataclass
class Node:
    name: str
    port: int
    env: dict[str, str]
    ready_file: Path
    proc: asyncio.subprocess.Process | None = None
    preexec_fn: Callable[[], None] | None = None  # run in the child before exec

    async def start(self, timeout: float = 15.0) -> None:
        self.ready_file.unlink(missing_ok=True)
        log = open(self.ready_file.with_suffix(".log"), "ab")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "im_server",
            "serve",
            "--port",
            str(self.port),
            "--ready-file",
            str(self.ready_file),
            env={**self.env, "IM_NODE_ID": self.name},
            stdout=log,
            stderr=log,
            preexec_fn=self.preexec_fn,
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.ready_file.exists() and self.ready_file.read_text():
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"node {self.name} did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def sigterm(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def reap(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class Cluster:
    def __init__(self, dsn: str, nats_url: str, tmp: Path, secret: str) -> None:
        self.dsn = dsn
        self.secret = secret
        self.tmp = tmp
        self.env = {
            **os.environ,
            "IM_DATABASE_URL": dsn,
            "IM_JWT_SECRET": secret,
            "IM_NATS_URL": nats_url,
            "IM_DRAIN_GRACE_SECONDS": "5",
            "IM_RECONNECT_JITTER_MS": "300",
            "IM_LOG_LEVEL": "WARNING",
        }
        self.nodes: list[Node] = []

    async def add(self, port: int | None = None) -> Node:
        """Start a node; nodes given the same port share it through SO_REUSEPORT."""
        name = f"n{len(self.nodes)}"
        node = Node(name, port or free_port(), self.env, self.tmp / f"{name}.port")
        await node.start()
        self.nodes.append(node)
        return node

    def token(self, user: str) -> str:
        return auth.mint(self.secret, user, 3600)

    async def close(self) -> None:
        for n in self.nodes:
            await n.reap()


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def wait_ready(port: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"port {port} never became ready")


@dataclass
class Traffic:
    """Senders streaming into conversations; recipients recording every message they get."""

    acks: list[Ack] = field(default_factory=list)
    seen: dict[str, dict[str, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    async def stream(self, c: Client, target: dict[str, str], n: int, pace: float) -> None:
        for i in range(n):
            self.acks.append(await c.send({"i": i}, timeout=60, **target))
            await asyncio.sleep(pace)

    async def record(self, name: str, c: Client, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                m: Message = await asyncio.wait_for(c.messages.get(), 0.2)
            except TimeoutError:
                continue
            self.seen[name][m.conv].append(m.seq)

    async def settle(self, expect: dict[str, dict[str, int]], timeout: float = 30.0) -> None:
        """Wait until each recipient has seen every seq of its conversations (or time out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if all(
                len(set(self.seen[name][conv])) >= last
                for name, convs in expect.items()
                for conv, last in convs.items()
            ):
                return
            await asyncio.sleep(0.1)


async def audit(dsn: str, traffic: Traffic, expect: dict[str, dict[str, int]]) -> dict[str, int]:
    """Lost and duplicated messages, in the database and as each recipient observed them."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT conv, seq, sender, cid FROM messages")
    finally:
        await conn.close()
    by_conv: dict[str, list[int]] = defaultdict(list)
    stored = set()
    for r in rows:
        by_conv[r["conv"]].append(r["seq"])
        stored.add((r["conv"], r["seq"]))
    report = {
        "acked": len(traffic.acks),
        "acked_missing": sum((a.conv, a.seq) not in stored for a in traffic.acks),
        "acked_duplicate_seq": len(traffic.acks) - len({(a.conv, a.seq) for a in traffic.acks}),
        "seq_gaps": sum(sorted(s) != list(range(1, len(s) + 1)) for s in by_conv.values()),
        "observed_missing": 0,
        "observed_duplicates": 0,
    }
    detail: list[str] = []
    for name, convs in expect.items():
        for conv in convs:
            got = traffic.seen[name][conv]
            report["observed_duplicates"] += len(got) - len(set(got))
            missing = sorted(set(by_conv[conv]) - set(got))
            report["observed_missing"] += len(missing)
            if missing:
                detail.append(
                    f"{name} {conv} missing {missing[:3]}..{missing[-1]} of {len(missing)}"
                )
    if detail:
        print("observed gaps:", "; ".join(detail))
    return report
