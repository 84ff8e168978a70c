"""What stands behind a region's endpoint when a cloud test checks restored content.

``RollingKube``: a FakeKube whose rolling restart restarts what serves the endpoint, the way
new pods read the Secret when they start. ``ImProcess``: a real im-server process on loopback
against real PostgreSQL (tests/conftest.py's cluster); the AWS tests use it, since the URL imctl
writes there keeps user, password and database and only swaps the host. ``FakeImAdmin``: the
im-server's GET /admin/digest and nothing else, answering with counts a test sets, for GCP and
Alibaba Cloud, whose restores write a URL to a Cloud SQL / ApsaraDB address no test can reach.
It computes the credential and the database identity with the server's own functions.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.targets.cloud.kube import KubeApi
from cli.targets.local.procs import free_port
from im_server import auth
from im_server.client import Client
from im_server.config import database_identity
from tests.cloud.fake_kube import FakeKube

ROOT = Path(__file__).resolve().parents[2]
SECRET = "im-server"


@dataclass
class RollingKube(FakeKube):
    """A rolling restart calls every ``on_restart`` hook with the Secret as it is then."""

    on_restart: list[Callable[[dict[str, str]], None]] = field(default_factory=list)

    def restart_deployment(self, namespace: str, deployment: str) -> None:
        super().restart_deployment(namespace, deployment)
        for hook in self.on_restart:
            hook(dict(self.secrets.get((namespace, SECRET), {})))


class RegionKubes:
    """One FakeKube per region, as ops get them through ``kube(region)``: the primary's rolls
    restart what serves its endpoint (RollingKube) and its Secret holds the database URL and
    admin token; a region in ``down`` raises like an unreachable API server."""

    def __init__(
        self,
        primary: str,
        standby: str,
        *,
        namespace: str,
        deployment: str,
        database_url: str,
        admin_token: str,
    ) -> None:
        self.by_region: dict[str, FakeKube] = {primary: RollingKube(), standby: FakeKube()}
        self.by_region[primary].replicas[(namespace, deployment)] = 3
        self.by_region[primary].secrets[(namespace, SECRET)] = {
            "database-url": database_url,
            "admin-token": admin_token,
        }
        self.down: set[str] = set()

    def __call__(self, region: str) -> KubeApi:
        if region in self.down:
            raise ConnectionError(f"the API server of {region} does not answer")
        return self.by_region[region]


class Log:
    """A progress callback that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


class ImProcess:
    """``python -m im_server serve`` on a fixed loopback port; ``restart(url)`` is one rolling
    restart of the Deployment: a new process that reads the database URL when it starts."""

    def __init__(self, tmp: Path, database_url: str, admin_token: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.database_url = database_url
        self.admin_token = admin_token
        self.jwt_secret = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        ready = self.tmp / f"im-ready-{self.starts}"
        log = self.tmp / "im.log"
        env = {
            **os.environ,
            "IM_DATABASE_URL": self.database_url,
            "IM_JWT_SECRET": self.jwt_secret,
            "IM_ADMIN_TOKEN": self.admin_token,
            "IM_NODE_ID": f"im-server-pod-{self.starts}",
            "IM_DRAIN_GRACE_SECONDS": "0.2",
            "IM_LOG_LEVEL": "WARNING",
        }
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "im_server", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--ready-file", str(ready)],
                env=env, stdout=out, stderr=out, cwd=ROOT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists() and ready.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"im-server did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, secret: dict[str, str]) -> None:
        self.stop()
        self.database_url = secret["database-url"]
        self.start()

    def send(self, sender: str, to: str, count: int) -> None:
        """``count`` acked (committed) direct messages from ``sender`` to ``to``."""

        async def run() -> None:
            token = auth.mint(self.jwt_secret, sender, 600)
            async with Client(f"ws://{self.endpoint}/ws", token) as c:
                for i in range(count):
                    await c.send({"i": i}, to=to)

        asyncio.run(run())


class FakeImAdmin:
    """GET /admin/digest as the im-server answers it, from ``counts``; the database and start
    time are those of the last rolling restart (the Secret's URL at that moment)."""

    def __init__(self, kube: RollingKube, namespace: str, admin_token: str) -> None:
        self.admin_token = admin_token
        self.counts: dict[str, int] = {
            "messages": 10,
            "conversations": 2,
            "max_seq": 6,
            "latest_ms": 1_700_000_000_000,
            "non_dense": 0,
        }
        self.database_url = kube.secrets.get((namespace, SECRET), {}).get("database-url", "")
        self.started_at = time.time()
        self.pod = 1
        self.fail_with: int | None = None  # answer every request with this HTTP status
        self.requests = 0
        kube.on_restart.append(self._rolled)
        self.port = free_port()
        admin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                admin.requests += 1
                code, doc = admin._answer(self.path, self.headers.get("Authorization", ""))
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _rolled(self, secret: dict[str, str]) -> None:
        self.database_url = secret.get("database-url", "")
        self.started_at = time.time()
        self.pod += 1

    def _answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        if path != "/admin/digest":
            return 404, {"error": {"code": "not_found", "message": path}}
        if authorization != f"Bearer {auth.digest_token(self.admin_token)}":
            return 401, {"error": {"code": "unauthorized", "message": "wrong token"}}
        if self.fail_with is not None:
            return self.fail_with, {"error": {"code": "unavailable", "message": "down"}}
        now = int(time.time() * 1000)
        return 200, {
            **self.counts,
            "at_ms": now,
            "database": database_identity(self.database_url),
            "node": f"im-server-pod-{self.pod}",
            "started_at_ms": int(self.started_at * 1000),
            "draining": False,
        }
