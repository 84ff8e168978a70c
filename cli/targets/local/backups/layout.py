"""Where a local stack's continuous backups live, and the two small records that describe them.

::

    <stack>/backups/chains/<chain>/chain.json          the cluster and timeline it archives
                                  /wal/                 pg_receivewal's segments (+ .partial)
                                  /base/<id>/base.tar   pg_basebackup -Ft -X stream
                                            /pg_wal.tar
                                            /backup_manifest
                                  /base/<id>.json       written last: the backup is complete
                                                        (beside it: pg_verifybackup refuses
                                                        any file of its own in a tar backup)
    <stack>/backups/archiver.pid, archiver.log          the pg_receivewal process
    <stack>/backups/shipper.pid, shipper.log            the bucket shipper (--backup-url)

A *chain* is one unbroken history: one cluster (system identifier) on one timeline. A restore
or a failover starts a new timeline, and a snapshot restore into a new cluster a new system
identifier; WAL of the new history cannot continue the old archive, so a new chain starts (with
a base backup) and the old one stays, restorable to any time inside its own window. Nothing
here is a secret; ``backups/`` survives ``imctl destroy`` like ``snapshots/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.state import write_atomic
from cli.statecheck import FileCheck

BACKUPS_DIR = "backups"
CHAIN_FILE = "chain.json"
BASE_DONE_SUFFIX = ".json"
# The names pg_receivewal gives what it writes into a chain's wal/.
SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
HISTORY_RE = re.compile(r"^[0-9A-F]{8}\.history$")
PARTIAL_SUFFIX = ".partial"
CHAIN_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
BASE_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")


def stamp(at: datetime | None = None) -> str:
    return f"{(at or datetime.now(UTC)):%Y%m%dT%H%M%SZ}"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ChainInfo:
    id: str
    created_at: str
    system_identifier: str
    timeline: int
    reason: str  # what started it: the first deploy, a restore, a failover
    incarnation: str  # archiving.INCARNATION's content in the data directory


@dataclass(frozen=True)
class BaseInfo:
    id: str
    started_at: str
    finished_at: str  # the earliest time a restore from it can stop at (end of backup)
    start_lsn: str
    end_lsn: str
    timeline: int
    size_bytes: int
    seconds: float


def _load(path: Path, cls: type[Any], fix: str) -> Any:
    check = FileCheck(path, fix)
    doc = check.obj(check.load())
    names = list(cls.__dataclass_fields__)
    check.keys(doc, "", names, names)
    return cls(**doc)


class Chain:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.id = root.name
        self.wal_dir = root / "wal"
        self.base_dir = root / "base"

    def info(self) -> ChainInfo:
        info: ChainInfo = _load(
            self.root / CHAIN_FILE,
            ChainInfo,
            f"the chain {self.root} was not written by imctl; move it out of {self.root.parent}",
        )
        return info

    def write_info(self, info: ChainInfo) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / CHAIN_FILE, json.dumps(asdict(info), indent=2) + "\n")

    def bases(self) -> list[BaseInfo]:
        """Complete base backups, oldest first (a directory without its <id>.json is one being
        taken, or an interrupted one)."""
        found = []
        if self.base_dir.is_dir():
            for d in sorted(self.base_dir.iterdir()):
                if BASE_ID_RE.match(d.name) and self.base_done(d.name).is_file():
                    found.append(self.base(d.name))
        return found

    def base(self, base_id: str) -> BaseInfo:
        info: BaseInfo = _load(
            self.base_done(base_id),
            BaseInfo,
            f"delete {self.base_dir / base_id} and {self.base_done(base_id)}: it is not a base"
            " backup imctl finished",
        )
        return info

    def base_path(self, base_id: str) -> Path:
        return self.base_dir / base_id

    def base_done(self, base_id: str) -> Path:
        return self.base_dir / (base_id + BASE_DONE_SUFFIX)


class BackupRoot:
    def __init__(self, stack_dir: Path) -> None:
        self.root = stack_dir / BACKUPS_DIR
        self.chains_dir = self.root / "chains"
        self.archiver_pid = self.root / "archiver.pid"
        self.archiver_log = self.root / "archiver.log"
        self.shipper_pid = self.root / "shipper.pid"
        self.shipper_log = self.root / "shipper.log"

    def chains(self) -> list[Chain]:
        """Oldest first; the last is the one being archived into."""
        if not self.chains_dir.is_dir():
            return []
        return [
            Chain(d)
            for d in sorted(self.chains_dir.iterdir())
            if CHAIN_ID_RE.match(d.name) and (d / CHAIN_FILE).is_file()
        ]

    def current(self) -> Chain | None:
        chains = self.chains()
        return chains[-1] if chains else None

    def new_chain_dir(self, at: datetime | None = None) -> Chain:
        import secrets

        return Chain(self.chains_dir / f"{stamp(at)}-{secrets.token_hex(2)}")
