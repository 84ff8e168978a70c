"""What a stack is on disk: the config deploy was asked for, its secrets, and where things live.

$IMCTL_HOME/stacks/<stack>/config.json     what deploy/scale were asked for (the desired state)
$IMCTL_HOME/stacks/<stack>/secrets.json    JWT secret, admin token, PostgreSQL and NATS passwords
                                           (0600)
$IMCTL_HOME/stacks/<stack>/regions/<r>/    PostgreSQL data, NATS (nats.conf, 0600), node pid
                                           files and logs
$IMCTL_HOME/stacks/<stack>/snapshots/      snapshots (cli/targets/local/snapshots/)
$IMCTL_HOME/stacks/<stack>/backups/        base backups and the WAL archive, for point-in-time
                                           restore (cli/targets/local/backups/)
$IMCTL_HOME/stacks/<stack>/destroyed.json  after a destroy that kept the snapshots: when, and
                                           the config the stack had (no secrets); only these
                                           two are left, and config.json is gone, so the stack
                                           does not exist until a deploy or a restore
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from cli.errors import StackNotFound, StateInvalid, UsageError
from cli.statecheck import FileCheck
from im_server.syncpolicy import (
    DEFAULT_SYNC_DEGRADE_AFTER,
    DEFAULT_SYNC_POLICY,
    SYNC_DEGRADE_AFTER_MAX,
    SYNC_DEGRADE_AFTER_MIN,
    SYNC_POLICIES,
    SyncPolicy,
)

# fenced: a former primary that lost a forced failover; nothing of it runs until
# `imctl standby rebuild` makes it a standby again.
Role = Literal["primary", "standby", "fenced"]
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
DEFAULT_PORT = 8700
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 32
# The server's own bounds for IM_DRAIN_GRACE_SECONDS (im_server.config): a value outside them
# would only surface as every node failing to start.
DRAIN_GRACE_MIN, DRAIN_GRACE_MAX = 0.1, 3600.0
REPLICATION_MODES = ("sync", "async")
# WAL archiving (continuous backup): async (default; the archiver trails commits by
# milliseconds), sync (a commit also waits for the archiver: nothing acked is missing from the
# archive), off (no point-in-time restore).
Archiving = Literal["async", "sync", "off"]
ARCHIVING_MODES: tuple[Archiving, ...] = get_args(Archiving)
BACKUP_KEEP_DAYS = 7.0
BACKUP_KEEP_DAYS_MIN, BACKUP_KEEP_DAYS_MAX = 0.01, 3650.0
BASE_EVERY_HOURS = 24.0
BASE_EVERY_HOURS_MIN, BASE_EVERY_HOURS_MAX = 0.01, 24.0 * 365
# The server refuses shorter keys (im_server.config).
MIN_SECRET_LEN = 16


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_utc(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 time with its zone (``Z`` or an offset; a fraction down to
    nanoseconds, cut to microseconds) as an aware UTC datetime; ValueError without a zone."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed.astimezone(UTC)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (snapshots and backups check files by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
    sync_policy: SyncPolicy = DEFAULT_SYNC_POLICY
    sync_degrade_after: float = DEFAULT_SYNC_DEGRADE_AFTER
    archiving: Archiving = "async"
    backup_keep_days: float = BACKUP_KEEP_DAYS
    backup_base_every_hours: float = BASE_EVERY_HOURS
    backup_url: str | None = None  # s3://bucket/prefix: base backups and WAL are copied there

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


def _required(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]


def _known(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def check_config(check: FileCheck, doc: Any, stack: str) -> StackConfig:
    """A StackConfig from config.json's parsed content, or StateInvalid naming the key.

    Keys are the dataclasses' fields, so a field added later is known here at once; the values
    checked are the ones commands act on."""
    doc = check.obj(doc)
    check.keys(doc, "", _required(StackConfig), _known(StackConfig))
    if doc["stack"] != stack:
        check.fail(
            "stack",
            f"is {doc['stack']!r}, but this is the directory of stack {stack!r}",
            f"set it to {stack!r}: a stack's name is its directory's",
        )
    check.choice(doc["cloud"], "cloud", ["local"])
    for key in ("created_at", "updated_at"):
        if key in doc:
            check.text(doc[key], key)
    if "drain_grace" in doc:
        check.number_in(doc["drain_grace"], "drain_grace", DRAIN_GRACE_MIN, DRAIN_GRACE_MAX)
    if "replication" in doc:
        check.choice(doc["replication"], "replication", REPLICATION_MODES)
    if "sync_policy" in doc:
        check.choice(doc["sync_policy"], "sync_policy", SYNC_POLICIES)
    if "sync_degrade_after" in doc:
        check.number_in(
            doc["sync_degrade_after"],
            "sync_degrade_after",
            SYNC_DEGRADE_AFTER_MIN,
            SYNC_DEGRADE_AFTER_MAX,
        )
    if "archiving" in doc:
        check.choice(doc["archiving"], "archiving", ARCHIVING_MODES)
    if "backup_keep_days" in doc:
        check.number_in(
            doc["backup_keep_days"], "backup_keep_days", BACKUP_KEEP_DAYS_MIN, BACKUP_KEEP_DAYS_MAX
        )
    if "backup_base_every_hours" in doc:
        check.number_in(
            doc["backup_base_every_hours"],
            "backup_base_every_hours",
            BASE_EVERY_HOURS_MIN,
            BASE_EVERY_HOURS_MAX,
        )
    if doc.get("backup_url") is not None:
        check.text(doc["backup_url"], "backup_url")
    regions = doc["regions"]
    if not isinstance(regions, list) or not regions:
        check.fail("regions", "must be a non-empty list of regions")
    ports: dict[str, int] = {}
    names: dict[str, str] = {}
    for i, r in enumerate(regions):
        at = f"regions[{i}]"
        r = check.obj(r, at)
        check.keys(r, at + ".", _required(RegionConfig), _known(RegionConfig))
        name = check.text(r["name"], at + ".name")
        if not REGION_RE.match(name):
            check.fail(
                at + ".name",
                f"is {name!r}; a region name is 1-31 lowercase letters, digits and -",
            )
        if name in names:
            check.fail(at + ".name", f"is {name!r}, the same as {names[name]}.name")
        names[name] = at
        ports[at + ".port"] = check.port(r["port"], at + ".port")
        check.int_in(
            r["replicas"], at + ".replicas", 1, MAX_REPLICAS, "an integer (im-server nodes)"
        )
        check.choice(r.get("role", "primary"), at + ".role", get_args(Role))
    primaries = [i for i, r in enumerate(regions) if r.get("role", "primary") == "primary"]
    if len(primaries) != 1:
        check.fail(
            "regions[].role",
            f"names {len(primaries)} primary regions; exactly one must be primary",
            "a failover (`imctl failover`) is what moves the primary role; set the roles back",
        )
    global_port = doc.get("global_port")
    if global_port is not None:
        ports["global_port"] = check.port(global_port, "global_port")
    elif len(regions) > 1:
        check.fail(
            "global_port",
            "is missing; a stack with a standby region serves clients on a global port",
            "set it to the port clients use (the --port it was deployed with)",
        )
    check.distinct(ports, "port")
    return StackConfig.from_json(doc)


def check_secrets(check: FileCheck, doc: Any) -> Secrets:
    doc = check.obj(doc)
    check.keys(doc, "", _required(Secrets), _known(Secrets))
    check.text(doc["jwt_secret"], "jwt_secret", min_len=MIN_SECRET_LEN)
    check.text(doc["admin_token"], "admin_token", min_len=MIN_SECRET_LEN)
    check.text(doc["pg_password"], "pg_password", one_line=True)
    return Secrets(**doc)


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

    def _config_check(self) -> FileCheck:
        return FileCheck(
            self.config_path,
            f"correct the value in {self.config_path} (imctl writes this file; a hand edit or a"
            " damaged disk changed it), then run the command again",
        )

    def _secrets_check(self) -> FileCheck:
        return FileCheck(
            self.secrets_path,
            f"restore {self.secrets_path} from a backup: the stack's PostgreSQL password and"
            " tokens are in it, and new ones would not open the existing database",
        )

    @property
    def destroyed_path(self) -> Path:
        return self.dir / "destroyed.json"

    def mark_destroyed(self, cfg: StackConfig) -> None:
        """Recorded when a destroy keeps the snapshots: a restore into the destroyed stack
        builds it again in the shape it had (regions, port, replicas)."""
        doc = {"destroyed_at": now_iso(), "config": cfg.to_json()}
        write_atomic(self.destroyed_path, json.dumps(doc, indent=2) + "\n")

    def destroyed_config(self) -> StackConfig | None:
        """The config a destroyed stack had, or None (never destroyed, or deployed since)."""
        if self.exists() or not self.destroyed_path.exists():
            return None
        check = FileCheck(
            self.destroyed_path,
            f"delete {self.destroyed_path}: a restore then builds the stack with the defaults",
        )
        doc = check.obj(check.load())
        check.keys(doc, "", ["destroyed_at", "config"], ["destroyed_at", "config"])
        return check_config(check, doc["config"], self.name)

    def load_config(self) -> StackConfig:
        if not self.exists():
            if self.destroyed_path.exists():
                raise StackNotFound(
                    f"stack {self.name!r} was destroyed; its snapshots and backups were kept",
                    f"`imctl snapshot list -s {self.name}` lists them; `imctl restore ID -s"
                    f" {self.name}` builds the stack again from one, `imctl deploy -s"
                    f" {self.name}` builds it empty (then `imctl restore --to-time TIME -s"
                    f" {self.name}` reaches the kept continuous backup)",
                )
            raise StackNotFound(
                f"stack {self.name!r} is not deployed", f"deploy it: imctl deploy -s {self.name}"
            )
        check = self._config_check()
        return check_config(check, check.load(), self.name)

    def save_config(self, cfg: StackConfig) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg.updated_at = now_iso()
        write_atomic(self.config_path, json.dumps(cfg.to_json(), indent=2) + "\n")
        # Built again (deploy, or a restore into it): the record of its destroy is history now.
        self.destroyed_path.unlink(missing_ok=True)

    def load_or_create_secrets(self) -> Secrets:
        """The stack's secrets, generating the file or the fields an older imctl did not have."""
        if self.secrets_path.exists() or self.exists():
            # A deployed stack's database was initialised with the password in this file; new
            # secrets would lock every node out of it, so a missing file is an error there.
            made = self.load_secrets()
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
            if self.exists():
                raise StateInvalid(
                    f"{self.secrets_path} is missing, but stack {self.name!r} is deployed",
                    self._secrets_check().hint,
                )
            raise StackNotFound(f"stack {self.name!r} has no secrets file", "deploy it first")
        check = self._secrets_check()
        return check_secrets(check, check.load())
