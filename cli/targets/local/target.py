"""The local target: the whole topology on this machine, with real processes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from cli.errors import PreconditionFailed, UsageError
from cli.state import (
    DEFAULT_PORT,
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    REGION_RE,
    RegionConfig,
    StackConfig,
    StackFiles,
)
from cli.targets.local.runtime import Region

Step = Callable[[str], None]
DEFAULT_REGION = "local"


def validate_replicas(n: int) -> int:
    if not 1 <= n <= MAX_REPLICAS:
        raise UsageError(
            f"--replicas must be between 1 and {MAX_REPLICAS}, got {n}",
            "to stop everything use `imctl destroy`",
        )
    return n


def validate_port(p: int) -> int:
    if not 1024 <= p <= 65535:
        raise UsageError(f"--port must be between 1024 and 65535, got {p}")
    return p


class LocalTarget:
    def __init__(self, files: StackFiles) -> None:
        self.files = files

    def regions(self, cfg: StackConfig) -> list[Region]:
        secrets = self.files.load_secrets()
        return [
            Region(self.files.region_dir(r.name), r, secrets, drain_grace=cfg.drain_grace)
            for r in cfg.regions
        ]

    def endpoint(self, cfg: StackConfig) -> str:
        return f"ws://127.0.0.1:{cfg.endpoint_port}/ws"

    def plan_config(
        self, region: str | None, replicas: int | None, port: int | None
    ) -> tuple[StackConfig, bool]:
        """The config deploy should reconcile to, and whether the stack is new."""
        if replicas is not None:
            validate_replicas(replicas)
        if port is not None:
            validate_port(port)
        if region is not None and not REGION_RE.match(region):
            raise UsageError(f"invalid region name {region!r}", "use lowercase letters, digits, -")
        if not self.files.exists():
            cfg = StackConfig(
                stack=self.files.name,
                cloud="local",
                regions=[
                    RegionConfig(
                        region or DEFAULT_REGION, port or DEFAULT_PORT, replicas or DEFAULT_REPLICAS
                    )
                ],
            )
            return cfg, True
        cfg = self.files.load_config()
        primary = cfg.primary
        if region is not None and region not in {r.name for r in cfg.regions}:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} runs region {primary.name!r}, not {region!r}",
                "regions cannot be renamed in place; destroy the stack or use another -s",
            )
        if port is not None and port != primary.port:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} serves on port {primary.port}; it cannot move to {port}"
                " while deployed",
                "destroy it first, or deploy a new stack with -s NAME --port P",
            )
        if replicas is not None:
            primary.replicas = replicas
        return cfg, False

    def deploy(
        self, region: str | None, replicas: int | None, port: int | None, step: Step
    ) -> dict[str, Any]:
        cfg, new = self.plan_config(region, replicas, port)
        secrets = self.files.load_or_create_secrets()
        regions = [
            Region(self.files.region_dir(r.name), r, secrets, drain_grace=cfg.drain_grace)
            for r in cfg.regions
        ]
        for r in regions:
            r.check_port()  # before anything starts: a bad port leaves nothing half-started
        self.files.save_config(cfg)
        actions: list[str] = []
        for r in regions:
            actions += r.reconcile(step)
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "endpoint": self.endpoint(cfg),
            "created": new,
            "changed": bool(actions),
            "actions": actions,
            "regions": [r.status() for r in regions],
        }

    def status(self) -> dict[str, Any]:
        cfg = self.files.load_config()
        regions = [r.status() for r in self.regions(cfg)]
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "endpoint": self.endpoint(cfg),
            "healthy": all(r["healthy"] for r in regions if r["role"] == "primary"),
            "regions": regions,
        }

    def scale(self, replicas: int, region: str | None, step: Step) -> dict[str, Any]:
        validate_replicas(replicas)
        cfg = self.files.load_config()
        rc = cfg.region(region) if region else cfg.primary
        before = rc.replicas
        rc.replicas = replicas
        # Written first: if scaling fails half-way, the next deploy finishes the job.
        self.files.save_config(cfg)
        target = next(r for r in self.regions(cfg) if r.cfg.name == rc.name)
        started = target.ensure_nodes(replicas, step)
        removed = target.remove_nodes(replicas, step)
        return {
            "stack": cfg.stack,
            "region": rc.name,
            "replicas": {"before": before, "after": replicas},
            "started": started,
            "drained": removed,
            "nodes": target.status()["nodes"],
        }

    def destroy_plan(self) -> list[str]:
        cfg = self.files.load_config()
        lines = []
        for r in self.regions(cfg):
            alive = sum(1 for n in r.node_ids() if r.node_status(n).alive)
            lines.append(
                f"region {r.cfg.name}: stop {alive} im-server node(s), NATS and PostgreSQL"
            )
        lines.append(f"delete {self.files.dir} (all messages of stack {cfg.stack!r})")
        return lines

    def destroy(self, keep_data: bool, step: Step) -> dict[str, Any]:
        cfg = self.files.load_config()
        actions: list[str] = []
        for r in self.regions(cfg):
            actions += r.stop_all(step)
        if not keep_data:
            step(f"deleting {self.files.dir}")
            shutil.rmtree(self.files.dir)
        return {
            "stack": cfg.stack,
            "cloud": "local",
            "stopped": actions,
            "data_deleted": not keep_data,
            "data_dir": None if not keep_data else str(self.files.dir),
        }
