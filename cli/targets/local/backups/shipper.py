"""The shipper: copies the local target's backup archive to a bucket as it grows, so that a
restore can read from the bucket alone when this machine's disk is lost.

What is shipped, relative to ``root`` (normally ``<stack_dir>/backups``), and when::

    chains/<chain>/chain.json                 once
    chains/<chain>/wal/<24 hex>               once: a complete segment never changes
    chains/<chain>/wal/<8 hex>.history        once
    chains/<chain>/base/<base>/...            once, when the base backup is complete (its
    chains/<chain>/base/<base>.json           marker <base>.json exists beside it); the marker is
                                              uploaded last, so a listed marker means the whole
                                              base backup is there
    chains/<chain>/wal/<24 hex>.partial       whenever its content changed since the last upload,
                                              from a copy (pg_receivewal keeps writing it); deleted
                                              from the bucket once the full segment is shipped

What was uploaded is kept in ``shipper.json`` in ``root`` so a restart does not upload it all
again; when that file is missing, damaged or about another bucket, the bucket is listed once
instead (it is the truth). After every pass the loop writes ``shipper.status.json``, which a
status command reads without talking to the process.

Run as ``python -m cli.targets.local.backups.shipper --root DIR --url s3://BUCKET/PREFIX``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from cli.errors import ImctlError, ResourceFailure
from cli.state import file_sha256, now_iso, write_atomic
from cli.targets.local.backups.bucket import Bucket, parse_url
from cli.targets.local.backups.layout import (
    BASE_DONE_SUFFIX,
    CHAIN_FILE,
    HISTORY_RE,
    PARTIAL_SUFFIX,
    SEGMENT_RE,
)

STATE = "shipper.json"
STATUS = "shipper.status.json"
# The copy of the segment being written that is uploaded: hashing and uploading the live file
# could send content other than the hash describes.
PARTIAL_COPY = ".shipper-partial.tmp"
STATE_VERSION = 1
DEFAULT_INTERVAL = 10.0
MAX_BACKOFF = 300.0

_PARTIAL = re.compile(r"^([0-9A-F]{24})" + re.escape(PARTIAL_SUFFIX) + "$")
# What the bucket may hold under the prefix, as paths relative to root.
_WAL_REL = re.compile(r"^chains/[^/]+/wal/([^/]+)$")
_BASE_REL = re.compile(r"^chains/[^/]+/base/([^/]+)/(.+)$")
_BASE_DONE_REL = re.compile(r"^chains/[^/]+/base/([^/]+)\.json$")
_CHAIN_REL = re.compile(r"^chains/[^/]+/chain\.json$")


@dataclass
class ShipReport:
    uploaded: list[str] = field(default_factory=list)  # paths relative to root, in upload order
    deleted: list[str] = field(default_factory=list)  # stale .partial objects removed
    bytes: int = 0
    pending: int = 0  # complete files left unshipped (a stop request ended the pass early)

    def summary(self) -> str:
        parts = []
        if self.uploaded:
            first, last = self.uploaded[0], self.uploaded[-1]
            span = first if first == last else f"{first} … {last}"
            parts.append(
                f"shipped {len(self.uploaded)} file(s), {self.bytes / 2**20:.1f} MiB: {span}"
            )
        if self.deleted:
            parts.append(f"deleted {len(self.deleted)} stale partial(s): {self.deleted[-1]}")
        if self.pending:
            parts.append(f"{self.pending} left for the next pass")
        return "; ".join(parts)


def _no_stop() -> bool:
    return False


def _no_log(text: str) -> None:
    pass


class Shipper:
    def __init__(
        self,
        root: Path,
        bucket: Bucket,
        prefix: str,
        *,
        should_stop: Callable[[], bool] = _no_stop,
        log: Callable[[str], None] = _no_log,
    ) -> None:
        self.root = root
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._should_stop = should_stop
        self._log = log
        # Path relative to root -> sha256 of what the bucket holds ("" when known from a listing
        # only: immutable files need no hash to be skipped).
        self._shipped: dict[str, str] | None = None
        self._last: dict[str, str | None] = {"segment": None, "partial": None, "base": None}
        # The .partial's size and mtime at its last copy: unchanged means not read again.
        self._partial_stat: dict[str, tuple[int, int]] = {}
        self._pending: int | None = None  # what the last pass left (None: no pass yet)

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # --- one pass --------------------------------------------------------------------------

    def run_once(self) -> ShipReport:
        shipped = self._load()
        report = ShipReport()
        try:
            self._pass(shipped, report)
        finally:
            # Saved once a pass, not per file: a pass cut short by a crash ships its files
            # again next time, which is harmless (same key, same content).
            self._save()
            self._pending = report.pending
        return report

    def _pass(self, shipped: dict[str, str], report: ShipReport) -> None:
        plan = list(self._complete_unshipped(shipped))
        report.pending = len(plan)
        for rel in plan:
            if self._should_stop():
                return
            report.pending -= 1
            try:
                size = (self.root / rel).stat().st_size
                digest = self.bucket.put_file(self.root / rel, self.key(rel))
            except FileNotFoundError:
                continue  # pruned locally since the scan: nothing left to ship
            self._record(rel, digest)
            report.uploaded.append(rel)
            report.bytes += size
        for path in self._partials():
            if self._should_stop():
                return
            shipped_bytes = self._ship_partial(path, shipped)
            if shipped_bytes is not None:
                report.uploaded.append(self._rel(path))
                report.bytes += shipped_bytes
        stale = [rel for rel in shipped if _stale_partial(rel, shipped)]
        if stale:
            self.bucket.delete(self.key(rel) for rel in stale)
            for rel in stale:
                del shipped[rel]
            report.deleted.extend(stale)

    def _complete_unshipped(self, shipped: dict[str, str]) -> Iterator[str]:
        """The immutable files not yet in the bucket, in upload order: per chain its chain.json,
        history files, segments, then each complete base backup with its marker last."""
        for chain in _subdirs(self.root / "chains"):
            candidates: list[Path] = []
            if (chain / CHAIN_FILE).is_file():
                candidates.append(chain / CHAIN_FILE)
            wal = _files(chain / "wal")
            candidates += [p for p in wal if HISTORY_RE.match(p.name)]
            candidates += [p for p in wal if SEGMENT_RE.match(p.name)]
            for base in _subdirs(chain / "base"):
                done = base.with_name(base.name + BASE_DONE_SUFFIX)
                if not done.is_file() or self._rel(done) in shipped:
                    # Being written (shipped once complete), or shipped: the marker goes last.
                    continue
                members = sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
                candidates += [*members, done]
            for path in candidates:
                rel = self._rel(path)
                if rel not in shipped:
                    yield rel

    def _partials(self) -> Iterator[Path]:
        for chain in _subdirs(self.root / "chains"):
            for path in _files(chain / "wal"):
                m = _PARTIAL.match(path.name)
                # Both names at once: the rename is done, the full segment is what counts.
                if m and not (path.parent / m.group(1)).exists():
                    yield path

    def _ship_partial(self, path: Path, shipped: dict[str, str]) -> int | None:
        """Upload the segment being written if it changed since its last upload; the bytes sent,
        or None when nothing was (unchanged, or renamed to its full name meanwhile)."""
        rel = self._rel(path)
        copy = self.root / PARTIAL_COPY
        try:
            seen = path.stat()
            stamp = (seen.st_size, seen.st_mtime_ns)
            if rel in shipped and self._partial_stat.get(rel) == stamp:
                return None  # not written to since its last upload: no need to read it
            shutil.copyfile(path, copy)
        except FileNotFoundError:
            return None  # completed meanwhile: the next pass ships the full segment
        self._partial_stat[rel] = stamp
        try:
            digest = file_sha256(copy)
            if shipped.get(rel) == digest:
                return None
            self.bucket.put_file(copy, self.key(rel), sha256=digest)
            self._record(rel, digest)
            return copy.stat().st_size
        finally:
            copy.unlink(missing_ok=True)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # --- what was shipped ------------------------------------------------------------------

    def _record(self, rel: str, digest: str) -> None:
        assert self._shipped is not None
        self._shipped[rel] = digest
        _note_last(self._last, rel)

    def _save(self) -> None:
        doc = {
            "version": STATE_VERSION,
            "bucket": self.bucket.name,
            "prefix": self.prefix,
            "shipped": self._shipped,
            "last": self._last,
        }
        write_atomic(self.root / STATE, json.dumps(doc, separators=(",", ":")) + "\n")

    def _load(self) -> dict[str, str]:
        if self._shipped is not None:
            return self._shipped
        doc = self._read_state()
        if doc is not None:
            self._shipped = doc["shipped"]
            self._last.update(doc["last"])
            return self._shipped
        listed = self.bucket.list(self.key("chains/"))
        skip = len(self.key(""))
        shipped: dict[str, str] = {}
        for key in sorted(listed):
            rel = key[skip:]
            if _shippable_rel(rel):
                shipped[rel] = ""
        for rel in shipped:
            if _PARTIAL.match(rel.rpartition("/")[2]):
                info = self.bucket.head(self.key(rel))
                shipped[rel] = (info.sha256 or "") if info else ""
            _note_last(self._last, rel)
        self._shipped = shipped
        self._save()
        self._log(f"listed the bucket: {len(shipped)} file(s) already shipped")
        return shipped

    def _read_state(self) -> dict[str, Any] | None:
        path = self.root / STATE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._log(f"{path} is unreadable ({exc}); listing the bucket instead")
            return None
        if not (
            isinstance(doc, dict)
            and doc.get("version") == STATE_VERSION
            and isinstance(doc.get("shipped"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in doc["shipped"].items())
            and isinstance(doc.get("last"), dict)
            and set(doc["last"]) <= {"segment", "partial", "base"}
        ):
            self._log(f"{path} is damaged; listing the bucket instead")
            return None
        if (doc.get("bucket"), doc.get("prefix")) != (self.bucket.name, self.prefix):
            return None  # about another bucket or prefix: says nothing about this one
        return doc

    # --- the heartbeat ---------------------------------------------------------------------

    def pending(self) -> int:
        """Complete files not known to be in the bucket (all of them before the first listing)."""
        return sum(1 for _ in self._complete_unshipped(self._shipped or {}))

    def write_status(self, error: str | None) -> None:
        doc = {
            "time": now_iso(),
            "ok": error is None,
            "error": error,
            "last_shipped": dict(self._last),
            "pending": self._pending if self._pending is not None else self.pending(),
        }
        write_atomic(self.root / STATUS, json.dumps(doc, indent=1) + "\n")


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def _files(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_file())
    except FileNotFoundError:
        return []


def _shippable_rel(rel: str) -> bool:
    if _CHAIN_REL.match(rel) or _BASE_REL.match(rel) or _BASE_DONE_REL.match(rel):
        return True
    m = _WAL_REL.match(rel)
    name = m.group(1) if m else ""
    return bool(SEGMENT_RE.match(name) or HISTORY_RE.match(name) or _PARTIAL.match(name))


def _stale_partial(rel: str, shipped: dict[str, str]) -> bool:
    return rel.endswith(".partial") and rel.removesuffix(".partial") in shipped


def _note_last(last: dict[str, str | None], rel: str) -> None:
    name = rel.rpartition("/")[2]
    base = _BASE_DONE_REL.match(rel)
    if SEGMENT_RE.match(name) and _WAL_REL.match(rel):
        last["segment"] = max(filter(None, (last["segment"], name)))
    elif _PARTIAL.match(name):
        last["partial"] = max(filter(None, (last["partial"], name)))
    elif base:
        last["base"] = max(filter(None, (last["base"], base.group(1))))


# --- the process -------------------------------------------------------------------------------


def _log(text: str) -> None:
    print(f"{now_iso()} {text}", flush=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ImctlError):
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return f"{type(exc).__name__}: {exc}"


def _sleep(seconds: float, stopping: Callable[[], bool]) -> None:
    """Sleep in short steps, so SIGTERM ends the wait within a fraction of a second."""
    until = time.monotonic() + seconds
    while not stopping() and (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.targets.local.backups.shipper",
        description="Copy the local target's backup archive to an S3-compatible bucket. "
        "Credentials, region and endpoint come from the AWS_* environment variables.",
    )
    parser.add_argument("--root", type=Path, required=True, help="the backups directory")
    parser.add_argument("--url", required=True, help="s3://BUCKET[/PREFIX]")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help="seconds between passes (default %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be more than 0 seconds")

    stop_requested = False

    def stopping() -> bool:
        return stop_requested

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        name, prefix = parse_url(args.url)
        bucket = Bucket(name)
    except ImctlError as exc:
        _log(f"error: {_describe(exc)}")
        return int(exc.status)
    shipper = Shipper(args.root, bucket, prefix, should_stop=stopping, log=_log)
    _log(f"shipping {args.root} to {bucket.key_url(shipper.key(''))} every {args.interval:g} s")
    failures = 0
    verified = False  # a pass has worked: later errors are retried whatever they are
    while not stopping():
        error: str | None = None
        try:
            if not verified:
                bucket.check_access()
            report = shipper.run_once()
            verified = True
            if report.uploaded or report.deleted:
                _log(report.summary())
        except Exception as exc:
            error = _describe(exc)
            _log(f"error: {error}")
            if (
                not verified
                and isinstance(exc, ImctlError)
                and not isinstance(exc, ResourceFailure)
            ):
                # No bucket, no credentials: nothing changes by itself, and retrying would only
                # fill the log. The status file says why the shipper is not running.
                _write_status(shipper, error)
                return int(exc.status)
        _write_status(shipper, error)
        failures = failures + 1 if error else 0
        wait = min(args.interval * 2**failures, MAX_BACKOFF) if failures else args.interval
        _sleep(wait, stopping)
    _log("stopped")
    return 0


def _write_status(shipper: Shipper, error: str | None) -> None:
    try:
        shipper.write_status(error)
    except OSError as exc:
        _log(f"error: could not write {STATUS}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
