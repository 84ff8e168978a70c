"""The stack's side of the backup bucket: the shipper process (started and watched by deploy,
like the archiver), what its heartbeat says for status, retention in the bucket, and fetching
the archive back from the bucket when the local copy is gone.

The shipper inherits the AWS_* variables of the shell that ran ``imctl deploy`` (credentials,
region, endpoint); nothing of them is written to disk or to argv.
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

from cli.errors import ResourceFailure
from cli.progress import Note
from cli.state import parse_utc
from cli.targets.local import procs
from cli.targets.local.backups.layout import PARTIAL_SUFFIX, BackupRoot
from cli.targets.local.backups.shipper import STATUS
from cli.targets.local.health import backup_problem

INTERVAL = 5.0
# Status calls shipping stalled when the last pass is older than this (passes back off up to
# 300 s after errors, which the heartbeat reports anyway).
STALE_AFTER = 60.0


class ShipperProcess:
    def __init__(self, backups: BackupRoot, url: str) -> None:
        self.backups = backups
        self.url = url
        self.pid_file = backups.shipper_pid
        self.log_file = backups.shipper_log

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "cli.targets.local.backups.shipper",
            "--root", str(self.backups.root), "--url", self.url, "--interval", f"{INTERVAL:g}",
        ]  # fmt: skip

    def info(self) -> procs.PidInfo | None:
        return procs.read_pid_file(self.pid_file)

    def alive(self) -> bool:
        info = self.info()
        return info is not None and procs.is_alive(info)

    def ensure(self, note: Note) -> list[str]:
        info = self.info()
        if info is not None and procs.is_alive(info) and info.argv == self.argv():
            return []
        restarted = self.stop()
        from cli.targets.local.backups.bucket import Bucket, parse_url

        name, _prefix = parse_url(self.url)
        Bucket(name).check_access()  # no bucket, no credentials: said now, not in a log
        (self.backups.root / STATUS).unlink(missing_ok=True)  # a stale heartbeat says nothing
        procs.spawn_detached(
            self.argv(),
            log_file=self.log_file,
            pid_file=self.pid_file,
            env=None,  # ours, AWS_* included
            cwd=self.backups.root,
        )
        msg = f"{'restarted' if restarted else 'started'} the backup shipper to {self.url}"
        note(msg)
        return [msg]

    def stop(self) -> bool:
        info = self.info()
        running = info is not None and procs.is_alive(info)
        if info is not None:
            procs.terminate(info, timeout=30)  # it finishes the file it is uploading
        self.pid_file.unlink(missing_ok=True)
        return running

    def heartbeat(self) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.backups.root / STATUS).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def view(self) -> dict[str, Any]:
        beat = self.heartbeat() or {}
        age = None
        if isinstance(beat.get("time"), str):
            with contextlib.suppress(ValueError):
                age = round((datetime.now(UTC) - parse_utc(beat["time"])).total_seconds(), 1)
        return {
            "url": self.url,
            "running": self.alive(),
            "last_pass_age_s": age,
            "ok": beat.get("ok"),
            "error": beat.get("error"),
            "pending": beat.get("pending"),
            "last_shipped": beat.get("last_shipped"),
        }


def problems(view: dict[str, Any], stack: str) -> list[dict[str, Any]]:
    s = f"-s {stack}"
    where = view["url"]
    if not view["running"]:
        why = f": {view['error']}" if view.get("error") else ""
        return [backup_problem("shipping_stopped", f"the shipper to {where} is not running{why}",
                         f"imctl deploy {s}   (with the AWS_* variables set)")]  # fmt: skip
    if view.get("error"):
        return [backup_problem("shipping_failed", f"shipping to {where} fails: {view['error']}",
                         f"imctl logs --node shipper {s}")]  # fmt: skip
    age = view.get("last_pass_age_s")
    if age is not None and age > STALE_AFTER:
        return [backup_problem("shipping_failed", f"the shipper's last pass was {age:.0f}s ago",
                         f"imctl logs --node shipper {s}")]  # fmt: skip
    return []


def fetch_from_bucket(backups: BackupRoot, url: str, note: Note) -> int:
    """Download the archive (every chain) from the bucket into ``backups``, each file checked
    against its sha256: the restore then reads it as it reads a local archive. Returns the
    number of files fetched."""
    from cli.targets.local.backups.bucket import Bucket, parse_url

    name, prefix = parse_url(url)
    bucket = Bucket(name)
    base = f"{prefix}/chains/" if prefix else "chains/"
    listed = bucket.list(base)
    if not listed:
        raise ResourceFailure(
            f"the bucket {url} holds no backup chains", "check --backup-url and AWS_* variables"
        )
    fetched = 0
    note(f"fetching {len(listed)} file(s) of the archive from {url}")
    for key in sorted(listed):
        rel = key[len(prefix) + 1 :] if prefix else key
        dest = backups.root / rel
        if dest.exists() or (
            dest.name.endswith(PARTIAL_SUFFIX)
            and dest.with_name(dest.name[: -len(PARTIAL_SUFFIX)]).exists()
        ):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        bucket.get_file(key, dest)  # its errors name the s3:// key
        fetched += 1
    return fetched


def prune_bucket(url: str, removed: list[str], note: Note) -> list[str]:
    """Remove from the bucket what retention removed locally (paths relative to backups/,
    a trailing / for a whole directory)."""
    from cli.targets.local.backups.bucket import Bucket, parse_url

    if not removed:
        return []
    name, prefix = parse_url(url)
    bucket = Bucket(name)
    keys: list[str] = []
    for rel in removed:
        key = f"{prefix}/{rel}" if prefix else rel
        if rel.endswith("/"):
            keys += list(bucket.list(key))
        else:
            keys.append(key)
    bucket.delete(keys)
    msg = f"removed {len(keys)} object(s) from {url} (retention)"
    note(msg)
    return [msg]
