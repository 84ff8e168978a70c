"""Which other imctl stack under the same home holds a port: its endpoints (config.json), its
PostgreSQL and NATS (ports.json) and its nodes' health ports (their pid files' argv).

Used only to say who holds a port a deploy found taken, so every file is read leniently: another
stack's damaged file is that stack's problem (its own commands say so), and must not turn "port
in use" into a different error here. A stack whose files name the port is blamed only when the
process listening on it is one of that stack's (its command line or working directory is in the
stack's directory): a stopped stack, or one whose port another program took after a reboot,
must not be named, since the advice would be to stop it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _ports(stack_dir: Path) -> Iterator[tuple[int, str]]:
    """Every (port, what it is) a stack's files name."""
    cfg = _json(stack_dir / "config.json")
    if isinstance(cfg, dict):
        if isinstance(cfg.get("global_port"), int):
            yield cfg["global_port"], "its global endpoint"
        for r in cfg.get("regions") or []:
            if isinstance(r, dict) and isinstance(r.get("port"), int):
                yield r["port"], f"the endpoint of its region {r.get('name')}"
    for region in sorted((stack_dir / "regions").glob("*")):
        ports = _json(region / "ports.json")
        if isinstance(ports, dict):
            names = {"pg": "PostgreSQL", "nats": "NATS", "nats_monitor": "NATS monitoring"}
            for key, what in names.items():
                if isinstance(ports.get(key), int):
                    yield ports[key], f"{what} of its region {region.name}"
        for pid_file in sorted((region / "nodes").glob("*.pid")):
            argv = _json(pid_file)
            argv = argv.get("argv") if isinstance(argv, dict) else None
            if isinstance(argv, list) and "--health-port" in argv:
                with contextlib.suppress(IndexError, ValueError):
                    port = int(argv[argv.index("--health-port") + 1])
                    yield port, f"the health port of its node {region.name}/{pid_file.stem}"


def _listeners(port: int) -> list[psutil.Process]:
    """The processes listening on ``port`` that this user may look at."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return []
    pids = {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    found = []
    for pid in sorted(p for p in pids if p is not None):
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def _in_stack(proc: psutil.Process, stack_dir: Path) -> bool:
    """Whether ``proc`` is one of the stack's: PostgreSQL (-D), NATS (-c) and the nodes (their
    working directory) all name a path inside the stack's directory."""
    root = str(stack_dir.resolve()) + os.sep
    try:
        paths = [proc.cwd(), *proc.cmdline()]
    except psutil.Error:
        return False
    return any(p.startswith(root) for p in paths)


def owner(stacks_dir: Path, port: int, exclude: str) -> tuple[str, str] | None:
    """(stack, what) for the stack other than ``exclude`` whose files name ``port`` and whose
    process listens on it; None when no such stack is seen (or the listener cannot be)."""
    try:
        stacks = sorted(p for p in stacks_dir.iterdir() if p.is_dir() and p.name != exclude)
    except OSError:
        return None
    named = [(d, what) for d in stacks for held, what in _ports(d) if held == port]
    if not named:
        return None
    listeners = _listeners(port)
    for stack_dir, what in named:
        if any(_in_stack(proc, stack_dir) for proc in listeners):
            return stack_dir.name, what
    return None
