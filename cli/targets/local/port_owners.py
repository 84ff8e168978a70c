"""Which other imctl stack under the same home holds a port: its endpoints (config.json), its
PostgreSQL and NATS (ports.json) and its nodes' health ports (their pid files' argv).

Used only to say who holds a port a deploy found taken, so every file is read leniently: another
stack's damaged file is that stack's problem (its own commands say so), and must not turn "port
in use" into a different error here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def owner(stacks_dir: Path, port: int, exclude: str) -> tuple[str, str] | None:
    """(stack, what) for the first stack other than ``exclude`` whose files name ``port``."""
    try:
        stacks = sorted(p for p in stacks_dir.iterdir() if p.is_dir() and p.name != exclude)
    except OSError:
        return None
    for stack_dir in stacks:
        for held, what in _ports(stack_dir):
            if held == port:
                return stack_dir.name, what
    return None
