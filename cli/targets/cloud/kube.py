"""The Kubernetes operations cloud ops need, behind one small interface.

``KubeApi`` is the protocol; the real REST implementation lives in ``kube_rest.py`` (the tests'
in-memory stand-in is tests/cloud/fake_kube.py)."""

from __future__ import annotations

from typing import Protocol


class KubeApi(Protocol):
    def get_replicas(self, namespace: str, deployment: str) -> tuple[int, int]:
        """(desired, ready) of a Deployment."""
        ...

    def scale_deployment(self, namespace: str, deployment: str, replicas: int) -> None: ...

    def patch_hpa(
        self, namespace: str, hpa: str, min_replicas: int | None, max_replicas: int | None
    ) -> None: ...

    def get_secret(self, namespace: str, secret: str) -> dict[str, str]:
        """The Secret's keys, decoded (restore reads the current database URL)."""
        ...

    def patch_secret(self, namespace: str, secret: str, data: dict[str, str]) -> None:
        """Set keys (plain text here; base64 on the wire)."""
        ...

    def restart_deployment(self, namespace: str, deployment: str) -> None:
        """A rolling restart (the restartedAt annotation, like `kubectl rollout restart`)."""
        ...

    def wait_ready(self, namespace: str, deployment: str, timeout: float) -> None: ...
