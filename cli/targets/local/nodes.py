"""A region's im-server processes: nodes n1..nN sharing the region's port, each with a pid file,
a log and a private health port; started, waited on until ready, drained and rolled."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

from cli.deadline import poll
from cli.errors import OperationTimeout, ResourceFailure, StateInvalid
from cli.progress import Note
from cli.state import RegionConfig
from cli.targets.local import procs

NODE_READY_TIMEOUT = 30.0
NODE_ID_RE = re.compile(r"n[1-9][0-9]{0,3}")


@dataclass
class NodeStatus:
    id: str
    pid: int | None
    alive: bool
    ready: bool
    connections: int | None
    health_port: int | None
    draining: bool = False
    writes: str | None = None  # ok | blocked | unprotected, as the node's /readyz says
    writes_reason: str | None = None


def http_json(url: str, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
    """GET a JSON document; (status, body). Connection failures are (0, {})."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


@dataclass(kw_only=True)
class Nodes:
    """The im-server processes of one region. ``env`` gives a node's environment by node id:
    the region's database, bus and sync settings, which change while the region lives; a
    running node whose ``sync_keys`` differ from it is replaced."""

    cfg: RegionConfig
    nodes_dir: Path
    drain_grace: float
    global_port: int | None
    env: Callable[[str], dict[str, str]]
    sync_keys: tuple[str, ...]

    def node_ids(self) -> list[str]:
        """Nodes that have a pid file (alive or not), in start order."""
        if not self.nodes_dir.exists():
            return []
        ids = [p.stem for p in self.nodes_dir.glob("n*.pid")]
        for node in ids:
            if not NODE_ID_RE.fullmatch(node):
                raise StateInvalid(
                    f"{self.nodes_dir / (node + '.pid')} is not a node's pid file"
                    " (n<number>.pid); imctl did not write it",
                    "move it out of the nodes directory",
                )
        return sorted(ids, key=lambda i: int(i[1:]))

    def pid_file(self, node: str) -> Path:
        return self.nodes_dir / f"{node}.pid"

    def node_log(self, node: str) -> Path:
        return self.nodes_dir / f"{node}.log"

    def node_info(self, node: str) -> procs.PidInfo | None:
        return procs.read_pid_file(self.pid_file(node))

    @staticmethod
    def _health_port(info: procs.PidInfo) -> int | None:
        argv = info.argv
        if "--health-port" in argv:
            return int(argv[argv.index("--health-port") + 1])
        return None

    def node_status(self, node: str) -> NodeStatus:
        info = self.node_info(node)
        if info is None or not procs.is_alive(info):
            return NodeStatus(node, info.pid if info else None, False, False, None, None)
        port = self._health_port(info)
        code, body = http_json(f"http://127.0.0.1:{port}/readyz") if port else (0, {})
        return NodeStatus(
            node,
            info.pid,
            True,
            code == 200,
            body.get("connections"),
            port,
            bool(body.get("draining")),
            body.get("writes"),
            body.get("reason"),
        )

    def _start_node(self, node: str) -> None:
        self.nodes_dir.mkdir(parents=True, exist_ok=True)
        health = procs.free_port()
        # -P: the caller's working directory must not shadow a module (a stray timeit.py in
        # the directory imctl was run from once took every node down).
        argv = [
            sys.executable, "-P", "-m", "im_server", "serve",
            "--host", "127.0.0.1", "--port", str(self.cfg.port), "--health-port", str(health),
        ]  # fmt: skip
        if self.global_port is not None and self.cfg.role == "primary":
            argv += ["--global-port", str(self.global_port)]
        procs.spawn_detached(
            argv,
            log_file=self.node_log(node),
            pid_file=self.pid_file(node),
            env=self.env(f"{self.cfg.name}-{node}"),
            cwd=self.nodes_dir,
        )

    def _wait_ready(self, nodes: list[str], timeout: float = NODE_READY_TIMEOUT) -> None:
        pending = set(nodes)

        def still_pending() -> set[str]:
            for node in list(pending):
                st = self.node_status(node)
                # A node that serves but cannot commit (writes blocked: a lost synchronous
                # standby under policy wait) has started; `status` reports the writes. Waiting
                # for it would keep deploy from applying --sync-policy degrade, the way out.
                if st.ready or (st.writes == "blocked" and not st.draining):
                    pending.discard(node)
                elif not st.alive:
                    tail = procs.log_tail(self.node_log(node), 15)
                    raise ResourceFailure(
                        f"im-server {node} in region {self.cfg.name} exited during start:\n{tail}",
                        f"full log: {self.node_log(node)}",
                    )
            return pending

        def not_ready(left: set[str]) -> set[str]:
            raise OperationTimeout(
                f"nodes {', '.join(sorted(left))} not ready after {timeout:.0f}s",
                f"see {self.nodes_dir}/*.log",
            )

        poll(
            still_pending,
            done=lambda left: not left,
            state=lambda left: f"{len(left)} not ready",
            what=f"im-server nodes of region {self.cfg.name}",
            limit=timeout,
            interval=0.05,
            timed_out=not_ready,
        )

    def ensure_nodes(self, replicas: int, step: Note) -> list[str]:
        """Nodes n1..nN alive and ready; returns what was started.

        A running node whose durability settings (the IM_SYNC_* variables) are not what the
        stack wants now is replaced, one at a time, so the others keep serving."""
        wanted = [f"n{i}" for i in range(1, replicas + 1)]
        started = []
        for node in wanted:
            if not self.node_status(node).alive:
                self._start_node(node)
                started.append(node)
        if started:
            step(f"started im-server {', '.join(started)} on port {self.cfg.port}")
        self._wait_ready(wanted)
        drifted = [n for n in wanted if n not in started and self.env_drifted(n, self.sync_keys)]
        self.restart_nodes(drifted, "its durability settings changed", step)
        return started + drifted

    def env_drifted(self, node: str, keys: Iterable[str]) -> bool:
        """A live node whose environment differs from what it would start with now in any of
        ``keys``. Unreadable counts as drifted: a restart is cheap next to a wrong setting."""
        info = self.node_info(node)
        if info is None or not procs.is_alive(info):
            return False
        want = self.env(f"{self.cfg.name}-{node}")
        try:
            have = psutil.Process(info.pid).environ()
        except psutil.Error:
            return True
        return any(have.get(k, "") != want.get(k, "") for k in keys)

    def restart_nodes(self, nodes: list[str], why: str, step: Note) -> None:
        """One at a time, each ready before the next goes, so the others keep serving."""
        for node in nodes:
            step(f"restarting im-server {node}: {why}")
            self.stop_node(node)
            self._start_node(node)
            self._wait_ready([node])

    def stop_node(self, node: str) -> bool:
        """Drain (SIGTERM) and wait; True if it exited by itself within the grace."""
        info = self.node_info(node)
        clean = True
        if info is not None and procs.is_alive(info):
            clean = procs.terminate(info, self.drain_grace + 5)
        self.pid_file(node).unlink(missing_ok=True)
        return clean

    def remove_nodes(self, keep: int, step: Note) -> list[str]:
        """Drain every node past ``keep`` (newest first, in parallel); return those removed."""
        extra = [n for n in self.node_ids() if int(n[1:]) > keep]
        if not extra:
            return []
        step(f"draining im-server {', '.join(extra)}")
        with ThreadPoolExecutor(max_workers=len(extra)) as pool:
            results = list(pool.map(self.stop_node, extra))
        if not all(results):
            dirty = [n for n, ok in zip(extra, results, strict=True) if not ok]
            raise ResourceFailure(
                f"{', '.join(dirty)} did not finish draining in {self.drain_grace + 5:.0f}s and "
                "were killed; clients reconnect and resend, so acked messages are safe",
                "raise the drain grace if this repeats",
            )
        return extra
