"""What a stack is on disk: the config deploy was asked for, its secrets, and where things live.

$IMCTL_HOME/stacks/<stack>/config.json     what deploy/scale were asked for (the desired state)
$IMCTL_HOME/stacks/<stack>/secrets.json    JWT secret, admin token, PostgreSQL and NATS passwords
                                           (0600)
$IMCTL_HOME/stacks/<stack>/regions/<r>/    PostgreSQL data, NATS (nats.conf, 0600), node pid
                                           files and logs
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cli.errors import StackNotFound, UsageError

# fenced: a former primary that lost a forced failover; nothing of it runs until
# `imctl standby rebuild` makes it a standby again.
Role = Literal["primary", "standby", "fenced"]
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
DEFAULT_PORT = 8700
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 32


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write-then-rename, so a crash never leaves a half-written config."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class RegionConfig:
    name: str
    port: int  # the region's own endpoint (all its nodes share it)
    replicas: int
    role: Role = "primary"


@dataclass
class StackConfig:
    stack: str
    cloud: str
    regions: list[RegionConfig]
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    drain_grace: float = 10.0
    replication: Literal["sync", "async"] = "sync"
    global_port: int | None = None  # the clients' endpoint when a standby region exists
    # With sync replication, when the standby is lost: wait (writes stop, nothing acked can be
    # lost) or degrade (after sync_degrade_after seconds, async until the standby is back).
    sync_policy: Literal["wait", "degrade"] = "wait"
    sync_degrade_after: float = 5.0

    @property
    def standbys(self) -> list[RegionConfig]:
        return [r for r in self.regions if r.role == "standby"]

    def region(self, name: str) -> RegionConfig:
        for r in self.regions:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.regions)
        raise UsageError(f"stack {self.stack!r} has no region {name!r}", f"regions: {known}")

    @property
    def primary(self) -> RegionConfig:
        return next(r for r in self.regions if r.role == "primary")

    @property
    def endpoint_port(self) -> int:
        return self.global_port if self.global_port is not None else self.primary.port

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StackConfig:
        regions = [RegionConfig(**r) for r in doc.pop("regions")]
        return cls(regions=regions, **doc)


@dataclass
class Secrets:
    jwt_secret: str
    admin_token: str
    pg_password: str
    # Empty in a secrets.json written before the bus had a password; the next deploy fills it
    # in (load_or_create_secrets) and turns authentication on.
    nats_password: str = ""

    @classmethod
    def generate(cls) -> Secrets:
        return cls(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(32),
        )


class StackFiles:
    def __init__(self, stack_dir: Path) -> None:
        self.dir = stack_dir
        self.config_path = stack_dir / "config.json"
        self.secrets_path = stack_dir / "secrets.json"

    @property
    def name(self) -> str:
        return self.dir.name

    def exists(self) -> bool:
        return self.config_path.exists()

    def region_dir(self, region: str) -> Path:
        return self.dir / "regions" / region

    def load_config(self) -> StackConfig:
        if not self.exists():
            raise StackNotFound(
                f"stack {self.name!r} is not deployed", f"deploy it: imctl deploy -s {self.name}"
            )
        try:
            return StackConfig.from_json(json.loads(self.config_path.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(
                f"{self.config_path} is unreadable: {exc}",
                "restore it from a backup, or `imctl destroy` and deploy again",
            ) from exc

    def save_config(self, cfg: StackConfig) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg.updated_at = now_iso()
        write_atomic(self.config_path, json.dumps(cfg.to_json(), indent=2) + "\n")

    def load_or_create_secrets(self) -> Secrets:
        """The stack's secrets, generating the file or the fields an older imctl did not have."""
        if self.secrets_path.exists():
            made = Secrets(**json.loads(self.secrets_path.read_text()))
            if made.nats_password:
                return made
            made.nats_password = secrets.token_urlsafe(32)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            made = Secrets.generate()
        write_atomic(self.secrets_path, json.dumps(asdict(made)) + "\n", mode=0o600)
        return made

    def load_secrets(self) -> Secrets:
        if not self.secrets_path.exists():
            raise StackNotFound(f"stack {self.name!r} has no secrets file", "deploy it first")
        return Secrets(**json.loads(self.secrets_path.read_text()))
