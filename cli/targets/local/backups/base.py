"""Base backups: ``pg_basebackup`` in tar format with the WAL it needs (``-X stream``), its
manifest checked by ``pg_verifybackup`` before it counts, and unpacked again for a restore.

Tar, not a plain copy of the data directory: three files ship to a bucket as three objects, not
thousands. ``pg_verifybackup -n`` checks every file in the tars against the manifest's
checksums (it cannot parse WAL inside a tar; the WAL is checked by ``pg_waldump`` over the
archive instead, wal.py).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from cli.deadline import Deadline
from cli.errors import ImctlError, PreconditionFailed
from cli.state import write_atomic
from cli.targets.local.backups.layout import BaseInfo, Chain, iso, stamp
from cli.targets.local.postgres import PgInstance

BASE_TAR = "base.tar"
WAL_TAR = "pg_wal.tar"
MANIFEST = "backup_manifest"


def take(pg: PgInstance, password: str, chain: Chain, deadline: Deadline) -> BaseInfo:
    """A new base backup of the running primary into ``chain``; verified before <id>.json,
    which marks it complete, is written. A failure leaves no half backup behind."""
    started = datetime.now(UTC)
    base_id = stamp(started)
    target = chain.base_path(base_id)
    if chain.base_done(base_id).exists():  # two within one second: the first one stands
        return chain.base(base_id)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    pg.chown(target)
    t0 = time.monotonic()
    try:
        pg.run(
            "pg_basebackup",
            [
                "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-D", str(target),
                "-Ft", "-X", "stream", "--checkpoint=fast", "--no-password",
            ],
            timeout=max(1.0, deadline.remaining()),
            env={"PGPASSWORD": password},
        )  # fmt: skip
        verify(pg, target)
        manifest = json.loads((target / MANIFEST).read_text())
        ranges = manifest["WAL-Ranges"]
        info = BaseInfo(
            id=base_id,
            started_at=iso(started),
            # pg_basebackup returns after the backup's end record is written: any time from
            # here on is after the point where a restore from it becomes consistent.
            finished_at=iso(datetime.now(UTC)),
            start_lsn=ranges[0]["Start-LSN"],
            end_lsn=ranges[-1]["End-LSN"],
            timeline=int(ranges[-1]["Timeline"]),
            size_bytes=sum(p.stat().st_size for p in target.iterdir()),
            seconds=round(time.monotonic() - t0, 3),
        )
        write_atomic(chain.base_done(base_id), json.dumps(asdict(info), indent=2) + "\n")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return info


def verify(pg: PgInstance, path: Path) -> None:
    done = pg.run("pg_verifybackup", ["-n", "-q", str(path)], check=False, timeout=600)
    if done.returncode != 0:
        raise PreconditionFailed(
            f"base backup {path} fails pg_verifybackup: "
            + (done.stderr.strip() or done.stdout.strip())[-1500:],
            "it is damaged; restore from another base backup (`imctl backup status` lists"
            " them), or take a new one with `imctl backup base`",
            code="backup_corrupt",
        )


def unpack(path: Path, data_dir: Path, pg: PgInstance) -> None:
    """base.tar into ``data_dir`` and pg_wal.tar into its pg_wal, owned by the PostgreSQL
    user, mode 0700 (PostgreSQL refuses a group- or world-readable data directory)."""
    data_dir.mkdir(parents=True)
    for tar_name, into in ((BASE_TAR, data_dir), (WAL_TAR, data_dir / "pg_wal")):
        into.mkdir(exist_ok=True)
        try:
            with tarfile.open(path / tar_name) as tar:
                tar.extractall(into, filter="tar")
        except (OSError, tarfile.TarError) as exc:
            raise PreconditionFailed(
                f"cannot unpack {path / tar_name}: {exc}",
                "the base backup is damaged; use another one",
                code="backup_corrupt",
            ) from exc
    pg.chown_tree(data_dir)
    data_dir.chmod(0o700)


def remove(chain: Chain, base_id: str) -> None:
    path = chain.base_path(base_id)
    # The marker first: a removal cut short leaves an incomplete backup, never a "complete"
    # one missing files.
    try:
        chain.base_done(base_id).unlink(missing_ok=True)
    except OSError as exc:
        raise ImctlError(f"cannot remove base backup {path}: {exc}") from exc
    shutil.rmtree(path, ignore_errors=True)
