"""The local processes' logs: the im-server nodes by default; NATS, PostgreSQL, the WAL archiver
and the backup shipper by name."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError
from cli.targets.base import LogsRequest
from cli.targets.local import procs

if TYPE_CHECKING:
    from cli.targets.local.target import LocalTarget

FOLLOW_INTERVAL = 0.25


def sources(target: LocalTarget, req: LogsRequest) -> list[tuple[str, str, Path]]:
    """(region, name, path) of each log asked for."""
    cfg = target.files.load_config()
    found = []
    for r in target.regions(cfg):
        if req.region and r.cfg.name != req.region:
            continue
        named = {n: r.node_log(n) for n in r.node_ids()}
        named["nats"] = r.nats().log_file
        named["postgres"] = r.pg().log_file
        for name, path in named.items():
            if req.node is None and name in ("nats", "postgres"):
                continue  # the im-server nodes unless asked
            if req.node is None or req.node == name:
                found.append((r.cfg.name, name, path))
    if req.node in ("archiver", "shipper") and not req.region:
        from cli.targets.local.backups.layout import BackupRoot

        backups = BackupRoot(target.files.dir)
        path = backups.archiver_log if req.node == "archiver" else backups.shipper_log
        found.append(("backup", req.node, path))
    if req.node is not None and not found:
        raise UsageError(
            f"no log for {req.node!r}",
            "see `imctl status` for node ids; also nats, postgres, archiver, shipper",
        )
    return found


def _tail(path: Path, lines: int) -> list[str]:
    if not lines or not path.exists():
        return []
    return procs.log_tail(path, lines).splitlines()


def recent(target: LocalTarget, req: LogsRequest) -> dict[str, Any]:
    if req.lines < 0:
        raise UsageError("--lines must be 0 or more")
    return {
        "stack": target.stack,
        "logs": [
            {"region": r, "node": n, "path": str(p), "lines": _tail(p, req.lines)}
            for r, n, p in sources(target, req)
        ],
    }


def follow(target: LocalTarget, req: LogsRequest, write: Callable[[str], None]) -> None:
    """The last lines, then every new line as it is written; ends with Ctrl-C (exit 130), like
    tail -f."""
    srcs = sources(target, req)
    offsets = {p: (p.stat().st_size if p.exists() else 0) for _, _, p in srcs}
    for entry in recent(target, req)["logs"]:
        for line in entry["lines"]:
            write(f"{entry['region']}/{entry['node']} {line}\n")
    while True:
        for r, n, p in srcs:
            if not p.exists():
                continue
            with p.open("rb") as fh:
                fh.seek(offsets[p])
                chunk = fh.read()
                offsets[p] = fh.tell()
            for line in chunk.decode(errors="replace").splitlines():
                write(f"{r}/{n} {line}\n")
        time.sleep(FOLLOW_INTERVAL)
