"""The systems under test, pinned to the server core, and what they cost (CPU, memory).

Everything here is started by this process and stopped by PID (or by its own data directory,
for PostgreSQL): the bare relay (``bench.relay``, via ``bench.stack_compare.start_relay``), one
or two ``im_server serve`` nodes (``bench.im_load.Node``), PostgreSQL and nats-server from the
same wheels the local target uses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from bench.im_load import Node
from bench.stack_compare import Relay, start_relay
from cli.targets.local.nats import NatsProcess
from cli.targets.local.postgres import PgInstance
from cli.targets.local.procs import free_port, free_ports
from im_server import auth
from im_server.migrate import migrate

# Sessions beyond the bench's own: room for a probe, so the cap set for the run is never what
# turns a bench session away.
CONN_HEADROOM = 256


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Pin a process, its descendants and every thread of each: sched_setaffinity(pid) alone
    moves only the main thread (nats-server's Go threads and PostgreSQL's helpers would stay
    free). Processes forked later inherit it."""
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            tids = os.listdir(f"/proc/{p.pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # exited meanwhile
                os.sched_setaffinity(int(tid), cpus)


def affinities(pids: list[int]) -> list[int]:
    """The union of the CPUs the processes (and their children) may run on, for the report."""
    cpus: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                cpus |= os.sched_getaffinity(p.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return sorted(cpus)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants, live and exited: a PostgreSQL backend
    that ends between two samples moves from its own times into the postmaster's
    children_* times, so the difference of two samples stays right."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = float(t.user + t.system + t.children_user + t.children_system)
        kids = root.children(recursive=True)
    except psutil.Error:
        return 0.0
    for k in kids:
        try:
            kt = k.cpu_times()
            total += float(kt.user + kt.system)
        except psutil.Error:
            continue
    return total


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(psutil.Process(pid).memory_info().rss) // 1024
        except psutil.Error:
            continue
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def core_busy_s() -> dict[int, float]:
    """Non-idle CPU seconds per core since boot (irq and softirq included: loopback TCP is
    processed there, charged to no process)."""
    out: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            out[int(name[3:])] = (sum(v) - v[3] - v[4]) / _TICK  # minus idle, iowait
    return out


@dataclass
class Sample:
    """CPU seconds per group of processes and per core, at one instant."""

    t: float
    groups: dict[str, float]
    cores: dict[int, float]


class System:
    """A server to measure: where to connect, how to log in, which processes to account."""

    name = ""
    url = ""

    def credentials(self, names: list[str]) -> list[str]:
        raise NotImplementedError

    def groups(self) -> dict[str, list[int]]:
        """Process trees to account, by group ("server", "postgres", "nats")."""
        raise NotImplementedError

    def server_pids(self) -> list[int]:
        return self.groups()["server"]

    def sample(self) -> Sample:
        groups = {g: sum(tree_cpu_s(p) for p in pids) for g, pids in self.groups().items()}
        return Sample(time.monotonic(), groups, core_busy_s())

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class RelaySystem(System):
    """The baseline: a bare relay (no database, no auth: the hello token is the user name)."""

    def __init__(self, stack: str, loop: str, cpu: int | None, max_seconds: float) -> None:
        self.name = f"relay ({stack}+{loop})"
        self.stack, self.loop, self.cpu, self.max_seconds = stack, loop, cpu, max_seconds
        self.relay: Relay | None = None

    def credentials(self, names: list[str]) -> list[str]:
        return list(names)

    def groups(self) -> dict[str, list[int]]:
        return {"server": [self.relay.pid] if self.relay else []}

    async def start(self) -> None:
        # --max-seconds: the relay exits by itself even if this process is killed.
        self.relay = await start_relay(
            self.stack, self.loop, cpu=self.cpu, max_seconds=self.max_seconds
        )
        self.url = f"ws://127.0.0.1:{self.relay.port}/ws"

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()


class Postgres:
    """One PostgreSQL for every IM setup of the run (a database each), pinned with the servers.

    The local target's settings: fsync, full_page_writes and synchronous_commit on."""

    def __init__(self, tmp: Path, cpus: set[int] | None) -> None:
        self.data_dir, self.cpus = tmp / "pg", cpus
        self.pg: PgInstance | None = None

    def ensure(self) -> PgInstance:
        if self.pg is None:
            pg = PgInstance(data_dir=self.data_dir, port=free_port())
            pg.init(secrets.token_urlsafe(16))
            self.pg = pg
            pg.start()
        pid = self.pg.pid()
        if pid is not None and self.cpus is not None:
            # The postmaster starts where pg_ctl ran (this process's core); backends forked
            # after this inherit the server core.
            pin_tree(pid, self.cpus)
        return self.pg

    def pid(self) -> int | None:
        return self.pg.pid() if self.pg is not None else None

    def stop(self) -> None:
        if self.pg is not None:
            try:
                self.pg.stop(timeout=20)
            except Exception:
                self.pg.kill9()  # ours: found by our data directory's postmaster.pid


class ImSystem(System):
    """im-server nodes on one port (SO_REUSEPORT, as ``imctl deploy`` runs them), all pinned
    to the server core with their PostgreSQL (and nats-server when there are two nodes)."""

    def __init__(
        self,
        nodes: int,
        tmp: Path,
        pg: Postgres,
        connections: int,
        cpus: set[int] | None,
        extra_env: dict[str, str] | None = None,
        code: Path | None = None,
    ) -> None:
        self.nodes_n = nodes
        self.code = code
        self.name = "im-server, 1 node" if nodes == 1 else f"im-server, {nodes} nodes + NATS"
        self.tmp, self.pgs, self.connections, self.cpus = tmp, pg, connections, cpus
        self.extra_env = extra_env or {}
        self.secret = secrets.token_urlsafe(24)
        self.nodes: list[Node] = []
        self.nats: NatsProcess | None = None
        self.env: dict[str, str] = {}

    def credentials(self, names: list[str]) -> list[str]:
        return [auth.mint(self.secret, n, 4 * 3600) for n in names]

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {
            "server": [n.proc.pid for n in self.nodes if n.proc and n.proc.returncode is None]
        }
        pg = self.pgs.pid()
        out["postgres"] = [pg] if pg is not None else []
        if self.nats is not None:
            info = self.nats.pid_info()
            out["nats"] = [info.pid] if info is not None else []
        return out

    async def start(self) -> None:
        pg = self.pgs.ensure()
        db = f"im_{self.nodes_n}n_{secrets.token_hex(3)}"
        pg.create_database(db)
        dsn = pg.dsn(db)
        await migrate(dsn)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IM_")}
        env |= {
            "IM_DATABASE_URL": dsn,
            "IM_JWT_SECRET": self.secret,
            # Set for the run, not left to the default (RLIMIT_NOFILE minus headroom): the
            # session count is part of the shape, and the cap must never be what limits it.
            "IM_MAX_CONNECTIONS": str(self.connections + CONN_HEADROOM),
            # Per-session INFO lines for 5,000 connects would be measured as server work.
            "IM_LOG_LEVEL": "WARNING",
            "IM_DRAIN_GRACE_SECONDS": "2",
        }
        if self.nodes_n > 1:
            nport, mport = free_ports(2)
            password = secrets.token_urlsafe(18)
            self.nats = NatsProcess(
                port=nport, monitor_port=mport, store_dir=self.tmp / "nats",
                log_file=self.tmp / "nats.log", pid_file=self.tmp / "nats.pid",
                password=password,
            )  # fmt: skip
            pid = self.nats.start()
            if self.cpus is not None:
                pin_tree(pid, self.cpus)
            # Bus authentication on, as a deployed node runs.
            env |= {
                "IM_NATS_URL": self.nats.url,
                "IM_NATS_USER": "im",
                "IM_NATS_PASSWORD": password,
            }
        env |= self.extra_env
        self.env = env
        port = free_port()
        cpus = ",".join(str(c) for c in sorted(self.cpus)) if self.cpus is not None else None
        for i in range(self.nodes_n):
            args = ["--health-port", str(free_port())] if self.nodes_n > 1 else []
            node = Node(
                {**env, "IM_NODE_ID": f"n{i}"}, port, self.tmp / f"node{i}.log",
                cpus=cpus or ",".join(str(c) for c in sorted(os.sched_getaffinity(0))),
                args=args, die_with_parent=True, cwd=self.code,
            )  # fmt: skip
            self.nodes.append(node)
            await node.start()
        self.url = f"ws://127.0.0.1:{port}/ws"

    async def stop(self) -> None:
        for n in self.nodes:
            await n.stop()
        if self.nats is not None:
            self.nats.stop(timeout=10)
