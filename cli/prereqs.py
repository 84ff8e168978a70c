"""What ``imctl doctor`` reports: checks of the prerequisites for a target, each with its fix,
and the ones every target shares (Python, a writable imctl home, disk space).

Read-only and offline: nothing is installed or contacted. The targets add their own checks
(cli/targets/local/prereqs.py, cli/targets/cloud/prereqs.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import ExitStatus

MIN_FREE_BYTES = 1 << 30
MIN_PYTHON = (3, 11)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


@dataclass
class DoctorResult:
    cloud: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.OK if self.ok else ExitStatus.PRECONDITION

    def to_json(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def check_python() -> Check:
    found = ".".join(map(str, sys.version_info[:3]))
    return Check(
        "python",
        sys.version_info[:2] >= MIN_PYTHON,
        f"Python {found} at {sys.executable}",
        f"use Python >= {'.'.join(map(str, MIN_PYTHON))} (e.g. python3.11 -m venv .venv)",
    )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_home_writable(home: Path) -> Check:
    fix = f"make {home} writable for this user, or point IMCTL_HOME at a writable directory"
    if home.is_dir():
        try:  # a real write: os.access is wrong for root, read-only mounts and ACLs
            with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check("imctl_home", False, f"{home} is not writable: {exc.strerror}", fix)
        return Check("imctl_home", True, f"{home} is writable", fix)
    parent = _existing_ancestor(home)
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check("imctl_home", True, f"{home} does not exist yet; {parent} is writable", fix)
    return Check("imctl_home", False, f"{home} cannot be created under {parent}", fix)


def check_disk(home: Path) -> Check:
    where = _existing_ancestor(home)
    free = shutil.disk_usage(where).free
    return Check(
        "disk_space",
        free >= MIN_FREE_BYTES,
        f"{free / (1 << 30):.1f} GiB free at {where} (need >= {MIN_FREE_BYTES >> 30} GiB)",
        "free some space there, or point IMCTL_HOME at a larger disk",
    )


def common_checks(home: Path) -> list[Check]:
    return [check_python(), check_home_writable(home), check_disk(home)]
