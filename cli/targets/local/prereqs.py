"""``imctl doctor`` on the local target: PostgreSQL and NATS binaries, the system user
PostgreSQL runs as under root, and the stack's ports."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from cli.errors import ImctlError
from cli.prereqs import Check
from cli.state import DEFAULT_PORT
from cli.targets.local import nats, postgres, procs
from cli.targets.local.postgres import PG_SYSTEM_USER


def check_postgres() -> Check:
    try:
        path = postgres.pg_bin("pg_ctl")
    except ImctlError as err:
        return Check("postgresql", False, err.message, err.hint)
    return Check("postgresql", True, f"PostgreSQL binaries at {path.parent}", "")


def check_nats() -> Check:
    try:
        path = nats.find_nats_server()
    except ImctlError as err:
        return Check("nats_server", False, err.message, err.hint)
    return Check("nats_server", True, f"nats-server at {path}", "")


def check_pg_user(is_root: bool, which: Callable[[str], str | None] = shutil.which) -> Check | None:
    if not is_root:
        return None
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        pass
    else:
        return Check("pg_system_user", True, f"system user {PG_SYSTEM_USER} exists", "")
    found = which("useradd")
    return Check(
        "pg_system_user",
        found is not None,
        f"running as root: PostgreSQL will run as {PG_SYSTEM_USER}, created with {found}"
        if found
        else f"running as root and useradd is missing: cannot create user {PG_SYSTEM_USER}",
        f"install useradd (apt-get install passwd), create {PG_SYSTEM_USER} yourself, "
        "or run imctl as a non-root user",
    )


def _stack_ports(stack_dir: Path) -> set[int]:
    """Ports this stack's config claims; best effort, any unreadable config counts as none."""
    try:
        doc = json.loads((stack_dir / "config.json").read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict):
        return set()
    regions = doc.get("regions")
    items = regions.values() if isinstance(regions, dict) else regions or []
    ports = {r.get("port") for r in items if isinstance(r, dict)} | {doc.get("global_port")}
    return {p for p in ports if isinstance(p, int)}


def port_in_use(port: int) -> bool:
    # 0.0.0.0 conflicts with a listener on any local address, loopback included.
    return not procs.port_is_free("0.0.0.0", port)


def check_ports(stack: str, stack_dir: Path) -> list[Check]:
    mine = _stack_ports(stack_dir)
    ports = sorted(mine) or [DEFAULT_PORT]
    checks = []
    for port in ports:
        name = f"port_{port}"
        fix = (
            f"stop what listens there (find it: ss -ltnp 'sport = :{port}') or deploy the "
            f"stack on another port (imctl deploy --port N)"
        )
        if not port_in_use(port):
            checks.append(Check(name, True, f"port {port} is free", fix))
        elif port in mine:
            checks.append(Check(name, True, f"port {port} in use by stack {stack!r}", fix))
        else:
            checks.append(Check(name, False, f"port {port} is in use by another program", fix))
    return checks


def local_checks(stack: str, stack_dir: Path) -> list[Check]:
    checks = [check_postgres(), check_nats()]
    pg_user = check_pg_user(os.geteuid() == 0)
    if pg_user is not None:
        checks.append(pg_user)
    return checks + check_ports(stack, stack_dir)
