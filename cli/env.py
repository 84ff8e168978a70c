"""The outside world one imctl invocation reads: streams, TTYs, environment, home.

Injectable, so tests can run a whole command against StringIO streams and a temp home. Apart
from cli/context.py so that the output side can know it without knowing the Context.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_FALSY = {"", "0", "false", "no", "off"}


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream is not a terminal
        return False


@dataclass
class Env:
    """Everything the CLI reads from the outside world, injectable in tests."""

    stdout: TextIO
    stderr: TextIO
    stdin_isatty: bool
    stdout_isatty: bool
    environ: Mapping[str, str]
    home: Path
    # Where interactive confirmations read answers; only consulted when ``interactive``.
    stdin: TextIO = field(default_factory=lambda: sys.stdin)

    @classmethod
    def from_os(cls) -> Env:
        environ = dict(os.environ)
        raw_home = environ.get("IMCTL_HOME", "")
        home = Path(raw_home).expanduser() if raw_home else Path.home() / ".imctl"
        return cls(
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin_isatty=_isatty(sys.stdin),
            stdout_isatty=_isatty(sys.stdout),
            environ=environ,
            home=home,
            stdin=sys.stdin,
        )

    @property
    def ci(self) -> bool:
        return self.environ.get("CI", "").strip().lower() not in _FALSY

    @property
    def interactive(self) -> bool:
        return self.stdin_isatty and self.stdout_isatty and not self.ci

    @property
    def stderr_isatty(self) -> bool:
        return _isatty(self.stderr)

    @property
    def user(self) -> str:
        name = self.environ.get("USER") or self.environ.get("LOGNAME") or _login_name()
        sudo = self.environ.get("SUDO_USER")
        if sudo and sudo != name:
            # The journal is an audit trail: "root" alone would hide which operator it was.
            name = f"{sudo}(sudo:{name})"
        return f"{name}@{socket.gethostname()}"


def _login_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
