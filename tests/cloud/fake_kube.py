"""``FakeKube``: an in-memory ``KubeApi`` for tests of the cloud ops; it records every call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeKube:
    replicas: dict[tuple[str, str], int] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def get_replicas(self, namespace: str, deployment: str) -> tuple[int, int]:
        n = self.replicas.get((namespace, deployment), 0)
        return n, n

    def scale_deployment(self, namespace: str, deployment: str, replicas: int) -> None:
        self.calls.append(("scale", (namespace, deployment, replicas)))
        self.replicas[(namespace, deployment)] = replicas

    def patch_hpa(
        self, namespace: str, hpa: str, min_replicas: int | None, max_replicas: int | None
    ) -> None:
        self.calls.append(("hpa", (namespace, hpa, min_replicas, max_replicas)))

    def get_secret(self, namespace: str, secret: str) -> dict[str, str]:
        return dict(self.secrets.get((namespace, secret), {}))

    def patch_secret(self, namespace: str, secret: str, data: dict[str, str]) -> None:
        self.calls.append(("secret", (namespace, secret, sorted(data))))
        self.secrets.setdefault((namespace, secret), {}).update(data)

    def restart_deployment(self, namespace: str, deployment: str) -> None:
        self.calls.append(("restart", (namespace, deployment)))

    def wait_ready(self, namespace: str, deployment: str, timeout: float) -> None:
        self.calls.append(("wait", (namespace, deployment)))
