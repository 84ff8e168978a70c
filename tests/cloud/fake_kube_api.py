"""A small local fake of the Kubernetes API endpoints imctl uses, for tests of ``KubeRest``.

Serves (HTTP, or HTTPS with an ``ssl.SSLContext``) deployments, deployments/scale,
autoscaling/v2 HorizontalPodAutoscalers and v1 Secrets; GET and JSON merge patch (RFC 7386)
only, answering other patch types with 415 as the real API server does. It checks the bearer
token (or, over TLS with client verification, the client certificate), bumps
``metadata.generation`` on spec changes, and lets a rollout converge after ``ready_after``
reads, so ``wait_ready`` really polls. Every request is recorded.

It is a fake: no admission, no field ownership, no resourceVersion conflicts, no watch.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    authorization: str | None
    body: Any


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {}}}},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


@dataclass
class FakeKubeApi:
    tokens: set[str] = field(default_factory=lambda: {"t0ken"})
    tls: ssl.SSLContext | None = None
    ready_after: int = 2  # deployment reads until a changed spec is rolled out
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    hpas: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # status codes for the next requests
    stuck: set[tuple[str, str]] = field(default_factory=set)  # never finish rolling out
    deadline_exceeded: set[tuple[str, str]] = field(default_factory=set)
    _pending: dict[tuple[str, str], int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeKubeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                api._handle(self, "GET")

            def do_PATCH(self) -> None:
                api._handle(self, "PATCH")

            def do_PUT(self) -> None:
                api._handle(self, "PUT")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        assert self._server is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # --- objects ------------------------------------------------------------------------

    def add_deployment(self, namespace: str, name: str, replicas: int = 3) -> None:
        self.deployments[(namespace, name)] = deployment(name, namespace, replicas)

    def add_hpa(self, namespace: str, name: str, lo: int = 3, hi: int = 12) -> None:
        self.hpas[(namespace, name)] = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minReplicas": lo, "maxReplicas": hi},
        }

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.secrets[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]

    # --- handling -----------------------------------------------------------------------

    def _reply(self, h: BaseHTTPRequestHandler, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _status(self, h: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._reply(
            h,
            code,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
             "reason": reason, "code": code},
        )  # fmt: skip

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        auth = h.headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and auth[len("Bearer ") :] in self.tokens:
            return True
        # Over mutual TLS the handshake already checked the client certificate.
        conn = h.connection
        return isinstance(conn, ssl.SSLSocket) and conn.getpeercert() not in (None, {})

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.seen.append(
                Seen(method, parts.path, parse_qs(parts.query), h.headers.get("Content-Type"),
                     h.headers.get("Authorization"), body)
            )  # fmt: skip
            if self.fail_next:
                code = self.fail_next.pop(0)
                self._status(h, code, "ServiceUnavailable", "scripted failure")
                return
            if not self._authorized(h):
                self._status(h, 401, "Unauthorized", "Unauthorized")
                return
            if (
                method == "PATCH"
                and h.headers.get("Content-Type") != "application/merge-patch+json"
            ):
                self._status(h, 415, "UnsupportedMediaType", "unsupported patch type")
                return
            if method == "PUT":
                self._status(h, 405, "MethodNotAllowed", "the fake takes merge patches only")
                return
            code, doc = self._route(method, parts.path, body)
        self._reply(h, code, doc)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        seg = path.strip("/").split("/")
        # /apis/apps/v1/namespaces/{ns}/deployments/{name}[/scale]
        if seg[:3] == ["apis", "apps", "v1"] and len(seg) in (7, 8) and seg[5] == "deployments":
            key = (seg[4], seg[6])
            if key not in self.deployments:
                return self._missing("deployments.apps", key[1])
            if len(seg) == 8 and seg[7] == "scale":
                return self._scale(key, method, body)
            if len(seg) == 8:
                return self._missing("subresource", seg[7])
            if method == "PATCH":
                self._patch_deployment(key, body)
            else:
                self._progress(key)
            return 200, copy.deepcopy(self.deployments[key])
        if (
            seg[:3] == ["apis", "autoscaling", "v2"]
            and len(seg) == 7
            and seg[5] == ("horizontalpodautoscalers")
        ):
            key = (seg[4], seg[6])
            return self._plain(self.hpas, "horizontalpodautoscalers.autoscaling", key, method, body)
        if seg[:2] == ["api", "v1"] and len(seg) == 6 and seg[4] == "secrets":
            return self._plain(self.secrets, "secrets", (seg[3], seg[5]), method, body)
        return 404, {"kind": "Status", "code": 404, "message": f"the server could not find {path}"}

    def _missing(self, kind: str, name: str) -> tuple[int, dict[str, Any]]:
        message = f'{kind} "{name}" not found'
        return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": message}  # fmt: skip

    def _plain(
        self,
        store: dict[tuple[str, str], dict[str, Any]],
        kind: str,
        key: tuple[str, str],
        method: str,
        body: Any,
    ) -> tuple[int, dict[str, Any]]:
        if key not in store:
            return self._missing(kind, key[1])
        if method == "PATCH":
            store[key] = merge_patch(store[key], body)
        return 200, copy.deepcopy(store[key])

    def _scale(self, key: tuple[str, str], method: str, body: Any) -> tuple[int, dict[str, Any]]:
        dep = self.deployments[key]
        if method == "PATCH":
            replicas = int(body["spec"]["replicas"])
            self._patch_deployment(key, {"spec": {"replicas": replicas}})
        return 200, {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": key[1], "namespace": key[0]},
            "spec": {"replicas": dep["spec"]["replicas"]},
            "status": {"replicas": dep["status"].get("replicas", 0)},
        }

    def _patch_deployment(self, key: tuple[str, str], patch: Any) -> None:
        dep = self.deployments[key]
        before = copy.deepcopy(dep["spec"])
        dep.update(merge_patch(dep, patch))
        if dep["spec"] != before:
            dep["metadata"]["generation"] += 1
            self._pending[key] = self.ready_after
            # Mid-rollout: the controller has not caught up, old pods still count.
            dep["status"]["updatedReplicas"] = 0
            dep["status"]["readyReplicas"] = min(
                dep["status"].get("readyReplicas", 0), dep["spec"]["replicas"]
            )

    def _progress(self, key: tuple[str, str]) -> None:
        dep = self.deployments[key]
        if key in self.deadline_exceeded:
            dep["status"]["conditions"] = [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": f'ReplicaSet "{key[1]}-7d9f" has timed out progressing.'}
            ]  # fmt: skip
            return
        if key in self.stuck or key not in self._pending:
            return
        self._pending[key] -= 1
        if self._pending[key] > 0:
            dep["status"]["observedGeneration"] = dep["metadata"]["generation"]
            return
        del self._pending[key]
        n = dep["spec"]["replicas"]
        dep["status"].update(
            observedGeneration=dep["metadata"]["generation"],
            replicas=n,
            updatedReplicas=n,
            readyReplicas=n,
            availableReplicas=n,
        )
