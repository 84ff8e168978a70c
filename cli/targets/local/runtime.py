"""One region of a local stack: PostgreSQL, NATS and N im-server processes on one shared port.

Every start is idempotent and gated on readiness: ``reconcile`` looks at what runs, starts only
what is missing or dead, and waits until each part answers before the next one starts. The
im-server processes are ``Nodes`` (cli/targets/local/nodes.py); a ``Region`` hands them the
environment its database, bus and sync settings make.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cli.errors import ImctlError, PreconditionFailed
from cli.progress import Note
from cli.state import RegionConfig, Secrets, write_atomic
from cli.statecheck import FileCheck
from cli.targets.local import procs
from cli.targets.local.nats import NatsProcess
from cli.targets.local.nodes import Nodes, NodeStatus
from cli.targets.local.postgres import PgInstance
from im_server.syncpolicy import (
    DEFAULT_SYNC_DEGRADE_AFTER,
    DEFAULT_SYNC_POLICY,
    SYNC_DEGRADE_AFTER_ENV,
    SYNC_POLICY_ENV,
    SYNC_STANDBY_ENV,
)

DATABASE = "im"


@dataclass
class Ports:
    """Ports picked once at first deploy and kept, so restarts find everything where it was."""

    pg: int
    nats: int
    nats_monitor: int


@dataclass(frozen=True)
class SyncWatch:
    """What the primary's nodes are told about the synchronous standby (im_server/health.py)."""

    standby: str  # "" when replication is async or there is no standby
    policy: str
    degrade_after: float

    def env(self) -> dict[str, str]:
        return {
            SYNC_STANDBY_ENV: self.standby,
            SYNC_POLICY_ENV: self.policy,
            SYNC_DEGRADE_AFTER_ENV: f"{self.degrade_after:g}",
        }


NO_SYNC = SyncWatch("", DEFAULT_SYNC_POLICY, DEFAULT_SYNC_DEGRADE_AFTER)


def load_ports(path: Path, taken: dict[str, int]) -> Ports:
    """ports.json, checked: ports in range, distinct, and none of them the endpoint ports in
    ``taken`` (what the stack config names them)."""
    check = FileCheck(
        path,
        f"correct {path}: PostgreSQL's port is `port` in pg/data/imctl.conf, NATS's are -p and"
        " -m in nats/nats.pid's argv",
    )
    doc = check.obj(check.load())
    names = [f.name for f in fields(Ports)]
    check.keys(doc, "", names, names)
    ports = {k: check.port(doc[k], k) for k in names}
    clash = {f"config.json's {k}": v for k, v in taken.items()}
    check.distinct({**clash, **ports}, "port")
    return Ports(**ports)


class Region:
    def __init__(
        self,
        root: Path,
        cfg: RegionConfig,
        secrets: Secrets,
        *,
        drain_grace: float = 10.0,
        global_port: int | None = None,
        upstream: Region | None = None,
        sync: SyncWatch = NO_SYNC,
    ) -> None:
        self.root = root
        self.cfg = cfg
        self.secrets = secrets
        self.drain_grace = drain_grace
        # Nodes of the primary region also bind the global endpoint (when there is a standby).
        self.global_port = global_port
        # A standby streams from the primary region's PostgreSQL.
        self.upstream = upstream
        self.sync = sync
        self.nodes_dir = root / "nodes"
        self.ports_path = root / "ports.json"
        self.nodes = Nodes(
            cfg=cfg,
            nodes_dir=self.nodes_dir,
            drain_grace=drain_grace,
            global_port=global_port,
            env=self.node_env,
            sync_keys=tuple(NO_SYNC.env()),
        )

    # --- parts ----------------------------------------------------------------------------

    def ports(self) -> Ports:
        if self.ports_path.exists():
            taken = {"port": self.cfg.port}
            if self.global_port is not None:
                taken["global_port"] = self.global_port
            return load_ports(self.ports_path, taken)
        self.root.mkdir(parents=True, exist_ok=True)
        pg, nats, mon = procs.free_ports(3)
        ports = Ports(pg, nats, mon)
        write_atomic(self.ports_path, json.dumps(asdict(ports)) + "\n")
        return ports

    def pg(self) -> PgInstance:
        from cli.targets.local.replication import standby_settings

        settings = {}
        if self.cfg.role == "standby" and self.upstream is not None:
            settings = standby_settings(
                self.upstream.ports().pg, self.secrets.pg_password, self.cfg.name
            )
        return PgInstance(
            data_dir=self.root / "pg" / "data",
            port=self.ports().pg,
            log_file=self.root / "pg" / "postgres.log",
            password=self.secrets.pg_password,
            settings=settings,
        )

    def nats(self) -> NatsProcess:
        p = self.ports()
        return NatsProcess(
            port=p.nats,
            monitor_port=p.nats_monitor,
            store_dir=self.root / "nats" / "store",
            log_file=self.root / "nats" / "nats.log",
            pid_file=self.root / "nats" / "nats.pid",
            server_name=f"{self.cfg.name}-nats",
            # A stack whose secrets predate bus auth keeps an open bus until its next deploy
            # generates the password (cli.state.StackFiles.load_or_create_secrets).
            password=self.secrets.nats_password or None,
        )

    def check_files(self) -> None:
        """Read, and so check, every file of the region a command acts on, so that a bad one
        stops the command before it has changed anything. Creates nothing."""
        if self.ports_path.exists():
            self.ports()
        for node in self.node_ids():
            self.nodes.node_info(node)
        procs.read_pid_file(self.root / "nats" / "nats.pid")

    def dsn(self) -> str:
        return self.pg().dsn(DATABASE)

    def node_env(self, node_id: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IM_", "PG"))}
        env.update(
            IM_DATABASE_URL=self.dsn(),
            IM_JWT_SECRET=self.secrets.jwt_secret,
            IM_ADMIN_TOKEN=self.secrets.admin_token,
            IM_NATS_URL=self.nats().url,
            IM_NODE_ID=node_id,
            IM_DRAIN_GRACE_SECONDS=str(self.drain_grace),
            IM_LOG_LEVEL=os.environ.get("IMCTL_NODE_LOG_LEVEL", "INFO"),
        )
        env.update(self.sync.env() if self.cfg.role == "primary" else NO_SYNC.env())
        # Bus credentials travel in the environment (readable only by our uid and root), never
        # in argv, which every local user can list.
        nats = self.nats()
        if nats.password is not None:
            env.update(IM_NATS_USER=nats.user, IM_NATS_PASSWORD=nats.password)
        return env

    # --- nodes (cli/targets/local/nodes.py) -----------------------------------------------

    def node_ids(self) -> list[str]:
        return self.nodes.node_ids()

    def node_log(self, node: str) -> Path:
        return self.nodes.node_log(node)

    def node_status(self, node: str) -> NodeStatus:
        return self.nodes.node_status(node)

    def ensure_nodes(self, replicas: int, step: Note) -> list[str]:
        return self.nodes.ensure_nodes(replicas, step)

    def stop_node(self, node: str) -> bool:
        return self.nodes.stop_node(node)

    def remove_nodes(self, keep: int, step: Note) -> list[str]:
        return self.nodes.remove_nodes(keep, step)

    # --- database and bus -----------------------------------------------------------------

    def ensure_database(self, step: Note, *, migrate: bool = True) -> list[str]:
        if self.cfg.role == "standby":
            return self.ensure_standby_database(step)
        actions = []
        pg = self.pg()
        if not (pg.data_dir / "PG_VERSION").exists():
            pg.init(self.secrets.pg_password)
            actions.append("initialized PostgreSQL")
        if not pg.is_running():
            pg.start()
            actions.append(f"started PostgreSQL on 127.0.0.1:{pg.port}")
        pg.create_database(DATABASE)
        for a in actions:
            step(a)
        return actions + (self.migrate(step) if migrate else [])

    def migrate(self, step: Note) -> list[str]:
        from im_server.migrate import migrate

        applied = asyncio.run(migrate(self.dsn()))
        if not applied:
            return []
        msg = f"applied {len(applied)} migration(s)"
        step(msg)
        return [msg]

    def ensure_standby_database(self, step: Note) -> list[str]:
        from cli.targets.local import replication

        assert self.upstream is not None, "a standby needs its primary region"
        actions = []
        pg = self.pg()
        if not (pg.data_dir / "PG_VERSION").exists():
            step(f"copying the primary into region {self.cfg.name} (pg_basebackup)")
            replication.base_backup(self.upstream.pg(), pg, self.cfg.name, self.secrets.pg_password)
            actions.append(f"built standby of {self.upstream.cfg.name}")
        if not pg.is_running():
            pg.start()
            actions.append(f"started PostgreSQL standby on 127.0.0.1:{pg.port}")
        for a in actions:
            step(a)
        return actions

    def ensure_bus(self, step: Note) -> list[str]:
        """NATS running with the stack's credentials, and every node able to log in to it.

        Turning authentication on for a running stack (its secrets just gained the password)
        goes clients first: the nodes restart one at a time with the credentials (an open
        server accepts them, so the bus keeps working meanwhile), then NATS restarts with auth
        and the nodes reconnect logged in. The other order would lock out every node still
        running without credentials (nats-py gives up on an authorization error). When NATS is
        down, or already wants a login the old nodes cannot give, it goes first instead: a
        node starting with credentials it cannot use would wait for the bus and never be ready.
        """
        nats = self.nats()
        alive = nats.is_alive()
        if nats.password is None:  # a stack without a bus password yet: open bus until deploy
            if alive:
                return []
            msg = self._start_bus(nats, "started")
            step(msg)
            return [msg]
        actions = []
        if alive and nats.runs_current_config():
            return self._roll_nodes_for_bus(step)
        if alive and nats.requires_login() is False:
            actions += self._roll_nodes_for_bus(step)
        if alive:
            step("restarting NATS to apply its configuration (authentication)")
            nats.stop()
        actions.append(self._start_bus(nats, "restarted" if alive else "started"))
        step(actions[-1])
        return actions + self._roll_nodes_for_bus(step)

    @staticmethod
    def _start_bus(nats: NatsProcess, verb: str) -> str:
        nats.start()
        return f"{verb} NATS on 127.0.0.1:{nats.port}"

    def _roll_nodes_for_bus(self, step: Note) -> list[str]:
        stale = [n for n in self.node_ids() if self.nodes.env_drifted(n, ["IM_NATS_PASSWORD"])]
        self.nodes.restart_nodes(stale, "it needs the bus credentials", step)
        return [f"restarted node {n} with bus credentials" for n in stale]

    def check_port(self, port: int | None = None) -> None:
        """The endpoint port must be ours or free; a foreign listener would split traffic."""
        port = port or self.cfg.port
        if any(self.node_status(n).alive for n in self.node_ids()):
            return
        # discovery's functions take a Region: imported here, not at the top, so the two
        # modules do not import each other.
        from cli.targets.local import discovery

        if discovery.nodes_running(self):  # ours, even with their pid files gone
            return
        if not procs.port_is_free("127.0.0.1", port):
            from cli.targets.local.port_owners import owner

            stack_dir = self.root.parent.parent  # <home>/stacks/<stack>/regions/<region>
            held = owner(stack_dir.parent, port, exclude=stack_dir.name)
            if held is not None:
                other, what = held
                raise PreconditionFailed(
                    f"port {port} is in use by stack {other!r} ({what})",
                    f"`imctl destroy -s {other} --keep-data` stops that stack and keeps its"
                    " data, or pick another --port",
                )
            raise PreconditionFailed(
                f"port {port} is in use by another program",
                f"pick another --port, or stop what listens: ss -ltnp 'sport = :{port}'",
            )

    def reconcile_data(self, step: Note) -> list[str]:
        """PostgreSQL (without migrations) and NATS up."""
        if self.cfg.role == "fenced":
            return []  # stays down until `imctl standby rebuild`
        self.check_port()
        actions = self.ensure_database(step, migrate=False)
        actions += self.ensure_bus(step)
        return actions

    def reconcile_nodes(self, step: Note) -> list[str]:
        """Migrations (primary), then the im-server nodes the region should run."""
        if self.cfg.role == "fenced":
            return []
        actions = self.migrate(step) if self.cfg.role == "primary" else []
        # A standby region runs no im-server nodes: they start when it is promoted.
        want = self.cfg.replicas if self.cfg.role == "primary" else 0
        if want:
            started = self.ensure_nodes(want, step)
            actions += [f"started node {n}" for n in started]
        actions += [f"drained node {n}" for n in self.remove_nodes(want, step)]
        return actions

    def fence(self, *, kill_db: bool) -> list[int]:
        """Make sure nothing of this region can take a write: kill -9 its nodes and NATS, and
        stop its PostgreSQL at once (``kill_db``: kill -9 it too, as losing the machine would).
        Returns the pids signalled."""
        from cli.targets.local import discovery  # see check_port

        killed = []
        for node in self.node_ids():
            info = self.nodes.node_info(node)
            if info is not None and procs.is_alive(info):
                procs.kill9(info)
                killed.append(info.pid)
            self.nodes.pid_file(node).unlink(missing_ok=True)
        nats = self.nats()
        info = nats.pid_info()
        if info is not None and nats.is_alive():
            nats.kill9()
            killed.append(info.pid)
        # What runs without a pid file could take a write just as well.
        for f in discovery.orphans(self):
            discovery.kill(f)
            killed.append(f.pid)
        pg = self.pg()
        pid = pg.pid()
        if pid is not None:
            if kill_db:
                pg.kill9()
            else:
                pg.stop(mode="immediate")
            killed.append(pid)
        return killed

    def stop_all(self, step: Note) -> list[str]:
        actions = [f"drained node {n}" for n in self.remove_nodes(0, step)]
        nats = self.nats()
        if nats.is_alive():
            step("stopping NATS")
            nats.stop()
            actions.append("stopped NATS")
        pg = self.pg()
        if pg.is_running():
            step("stopping PostgreSQL")
            pg.stop()
            actions.append("stopped PostgreSQL")
        return actions

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        from cli.targets.local import discovery  # see check_port

        nodes = [self.node_status(n) for n in self.node_ids()]
        pg = self.pg()
        pg_pid = pg.pid()
        nats = self.nats()
        info = nats.pid_info()
        db: dict[str, Any] = {
            "pid": pg_pid,
            "running": pg_pid is not None,
            "answering": False,
            "port": pg.port,
            "role": None,
        }
        if pg_pid is not None:
            db.update(probe(pg))
        bus = {"pid": info.pid if info else None, "running": nats.is_alive(), "port": nats.port}
        want = self.cfg.replicas if self.cfg.role == "primary" else 0
        healthy = db["answering"] and bus["running"] and len([n for n in nodes if n.ready]) >= want
        replication: dict[str, Any] | None = None
        if db["answering"] and (self.cfg.role == "standby" or db["role"] == "primary"):
            replication = self._replication(pg)
            if self.cfg.role == "standby":
                healthy = healthy and bool(replication and replication.get("streaming"))
        return {
            "name": self.cfg.name,
            "role": self.cfg.role,
            "port": self.cfg.port,
            "replicas": self.cfg.replicas,
            "healthy": bool(healthy),
            "nodes": [asdict(n) for n in nodes],
            "database": db,
            "bus": bus,
            "replication": replication,
            # Processes of this region its pid files do not name: `deploy` adopts or stops
            # them, `destroy` stops them.
            "orphans": [f.to_json() for f in discovery.orphans(self)],
        }

    def _replication(self, pg: PgInstance) -> dict[str, Any] | None:
        from cli.targets.local import replication as rep

        try:
            if self.cfg.role == "primary":
                return {"standbys": rep.primary_view(pg, PROBE_TIMEOUT)}
            st = rep.standby_state(pg, PROBE_TIMEOUT)
            lag_bytes = None
            if self.upstream is not None and self.upstream.pg().is_running():
                with contextlib.suppress(Exception):
                    upstream_lsn = rep.current_lsn(self.upstream.pg(), PROBE_TIMEOUT)
                    lag_bytes = max(0, upstream_lsn - st.replay_lsn)
            # The replay timestamp is that of the last commit replayed, so "now - it" grows
            # while the primary is idle: seconds count only while there are bytes to replay.
            lag_seconds = st.lag_seconds if lag_bytes else None if lag_bytes is None else 0.0
            return {
                "streaming": st.streaming,
                "upstream": self.upstream.cfg.name if self.upstream else None,
                "lag_bytes": lag_bytes,
                "lag_seconds": lag_seconds,
            }
        except Exception:
            return None


# Long enough for psql to start on a loaded machine, short enough that a frozen database shows
# as "not answering" well within the 5 s a status must take to say so.
PROBE_TIMEOUT = 2.0


def probe(pg: PgInstance) -> dict[str, Any]:
    """Whether the database answers within PROBE_TIMEOUT, its role, and on a primary whether
    commits wait for a synchronous standby that is not streaming."""
    try:
        row = pg.sql(
            "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),"
            " (SELECT count(*) FROM pg_stat_replication"
            "   WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum'))",
            timeout=PROBE_TIMEOUT,
        )
        recovery, names, streaming = row.split("|")
    except (ImctlError, ValueError):
        return {"answering": False}
    return {
        "answering": True,
        "role": "standby" if recovery == "t" else "primary",
        "synchronous_standby_names": names,
        "sync_standbys_streaming": int(streaming),
    }
