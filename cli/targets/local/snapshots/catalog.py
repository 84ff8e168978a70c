"""A stack's snapshots on disk: the directory layout, reading a manifest and checking the files
against it, and listing, showing, deleting and pruning snapshots."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cli.errors import (
    ImctlError,
    PreconditionFailed,
    SnapshotCorrupt,
    SnapshotNotFound,
    UsageError,
)
from cli.snapshots import (
    SNAPSHOT_ID_RE,
    DeleteResult,
    FileCheck,
    ListResult,
    ShowResult,
    SnapshotInfo,
    manifest_digest,
)
from cli.state import StackConfig, StackFiles, file_sha256
from cli.targets.local.postgres import PgInstance
from cli.targets.local.runtime import Region
from cli.targets.local.snapshots.pg_client import discard

MANIFEST = "manifest.json"
DUMP = "db.dump"
STAGING = "restoring"  # pg/<STAGING>: the cluster a restore fills before the switch
PREVIOUS_PREFIX = "data.before-restore-"
_COPY_CHUNK = 1 << 20


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


class Catalog:
    """The snapshots of one stack, and the stack's regions they are taken from."""

    def __init__(self, files: StackFiles) -> None:
        self.files = files
        self.root = files.dir / "snapshots"

    # --- stack ---------------------------------------------------------------------------

    def regions(self) -> tuple[StackConfig, list[Region]]:
        from cli.targets.local.target import LocalTarget

        cfg = self.files.load_config()
        return cfg, LocalTarget(self.files).regions(cfg)

    def primary(self) -> tuple[StackConfig, Region]:
        cfg, regions = self.regions()
        return cfg, next(r for r in regions if r.cfg.role == "primary")

    @staticmethod
    def running_pg(region: Region) -> PgInstance:
        pg = region.pg()
        if not pg.is_running():
            raise PreconditionFailed(
                f"PostgreSQL of region {region.cfg.name!r} is not running",
                "start the stack with `imctl deploy`, then try again",
            )
        return pg

    # --- reading snapshots ---------------------------------------------------------------

    def dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir())

    def info(self, path: Path, manifest: dict[str, Any]) -> SnapshotInfo:
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

    def not_found(self, snapshot_id: str) -> SnapshotNotFound:
        ids = [p.name for p in self.dirs() if (p / MANIFEST).exists()]
        known = f"snapshots: {', '.join(ids[-5:])}" if ids else "this stack has no snapshots"
        return SnapshotNotFound(
            f"snapshot {snapshot_id!r} not found in stack {self.files.name!r}",
            f"`imctl snapshot list -s {self.files.name}` shows them; {known}",
        )

    def load(self, snapshot_id: str) -> tuple[Path, dict[str, Any]]:
        if not SNAPSHOT_ID_RE.fullmatch(snapshot_id):
            raise self.not_found(snapshot_id)
        path = self.root / snapshot_id
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            if path.is_dir():
                raise SnapshotNotFound(
                    f"snapshot {snapshot_id!r} is incomplete (it has no manifest: it never "
                    "finished)",
                    "`imctl snapshot prune` removes it",
                )
            raise self.not_found(snapshot_id)
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

    def check_files(
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
            if file_sha256(f) != digest:
                checks.append(FileCheck(name, False, actual_size, size, "sha256 differs"))
                problems.append(f"{name}: sha256 differs from the manifest (corrupted)")
                continue
            checks.append(FileCheck(name, True, actual_size, size))
        if not checks and not problems:
            problems.append("the manifest lists no files")
        return checks, problems

    def clean_incomplete(self) -> list[str]:
        # Only called under the stack lock: no other create can be writing one right now.
        removed = []
        for p in self.dirs():
            if not (p / MANIFEST).exists():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    # --- list / show / delete / prune ----------------------------------------------------

    def _complete(self) -> tuple[list[SnapshotInfo], list[str], list[str]]:
        infos, incomplete, unreadable = [], [], []
        for p in self.dirs():
            if not (p / MANIFEST).exists():
                incomplete.append(p.name)
                continue
            try:
                _path, manifest = self.load(p.name)
                infos.append(self.info(p, manifest))
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
        previous = [{"path": str(p), "size_bytes": dir_size(p)} for p in self._previous_data()]
        return ListResult(
            snapshots=infos,
            incomplete=incomplete + [f"{i} (unreadable manifest)" for i in unreadable],
            previous_data=previous,
        )

    def show(self, snapshot_id: str) -> ShowResult:
        path, manifest = self.load(snapshot_id)
        return ShowResult(self.info(path, manifest), manifest)

    def totals(self) -> tuple[int, int]:
        """(snapshots, bytes on disk): what a destroy keeps or deletes, counting unfinished
        ones too, since they are deleted or kept with the rest."""
        dirs = self.dirs()
        return len(dirs), sum(dir_size(p) for p in dirs)

    def describe(self, snapshot_id: str) -> str:
        """One snapshot in one line, for a confirmation."""
        path = self.root / snapshot_id
        try:
            _path, m = self.load(snapshot_id)
            what = f"taken {m['created_at']}, {m['messages']} messages"
        except (ImctlError, KeyError, TypeError):
            what = "incomplete or unreadable"
        return f"snapshot {snapshot_id} ({what}, {mb(dir_size(path))})"

    def delete_plan(self, snapshot_id: str) -> builtins.list[str]:
        if not SNAPSHOT_ID_RE.fullmatch(snapshot_id) or not (self.root / snapshot_id).is_dir():
            raise self.not_found(snapshot_id)
        return [f"delete {self.describe(snapshot_id)}"]

    def delete(self, snapshot_id: str) -> DeleteResult:
        self.delete_plan(snapshot_id)  # checks the id: nothing outside snapshots/ is touched
        path = self.root / snapshot_id
        size = dir_size(path)
        shutil.rmtree(path)
        return DeleteResult(deleted=[snapshot_id], freed_bytes=size)

    def _prune_targets(
        self, keep: int, previous_data: bool
    ) -> tuple[builtins.list[SnapshotInfo], builtins.list[SnapshotInfo], builtins.list[Path]]:
        """(kept, doomed, previous data directories doomed), newest first."""
        if keep < 1:
            raise UsageError(
                f"--keep must be at least 1, got {keep}",
                "to remove the last snapshots use `imctl snapshot delete ID`",
            )
        infos, _incomplete, _unreadable = self._complete()
        newest_first = sorted(infos, key=lambda s: (s.created_at, s.id), reverse=True)
        data = self._previous_data() if previous_data else []
        return newest_first[:keep], newest_first[keep:], data

    def prune_plan(self, keep: int, previous_data: bool) -> builtins.list[str]:
        """What prune would delete, one line each; empty when nothing would go."""
        kept, doomed, data = self._prune_targets(keep, previous_data)
        lines = [f"delete {self.describe(s.id)}" for s in doomed]
        lines += [
            f"delete {self.describe(p.name)}" for p in self.dirs() if not (p / MANIFEST).exists()
        ]
        lines += [f"delete {p}, the data a restore replaced ({mb(dir_size(p))})" for p in data]
        if previous_data:
            lines += [f"delete {s}, a restore's unfinished cluster" for s in self._staging_dirs()]
        if lines and kept:
            lines.append(f"keep {', '.join(s.id for s in kept)}")
        return lines

    def prune(self, keep: int, previous_data: bool) -> DeleteResult:
        kept, doomed, data = self._prune_targets(keep, previous_data)
        freed = 0
        deleted = []
        for s in doomed:
            path = self.root / s.id
            freed += dir_size(path)
            shutil.rmtree(path)
            deleted.append(s.id)
        for name in self.clean_incomplete():
            deleted.append(f"{name} (incomplete)")
        dropped_data = []
        for p in data:
            freed += dir_size(p)
            shutil.rmtree(p)
            dropped_data.append(str(p))
        if previous_data:
            dropped_data += self._clean_staging()
        return DeleteResult(
            deleted=deleted,
            kept=[s.id for s in kept],
            previous_data_deleted=dropped_data,
            freed_bytes=freed,
        )

    def _staging_dirs(self) -> builtins.list[Path]:
        if not self.files.exists():
            return []
        _cfg, regions = self.regions()
        found = [r.pg().data_dir.with_name(STAGING) for r in regions]
        return [p for p in found if p.exists()]

    def _clean_staging(self) -> builtins.list[str]:
        """A restore killed with -9 leaves its new cluster (maybe running) in pg/restoring.
        Only called under the stack lock, so no restore is using it."""
        if not self.files.exists():
            return []
        _cfg, regions = self.regions()
        removed = []
        for region in regions:
            live = region.pg()
            staging = live.data_dir.with_name(STAGING)
            if staging.exists():
                discard(PgInstance(data_dir=staging, port=live.port, log_file=live.log_file))
                removed.append(str(staging))
        return removed
