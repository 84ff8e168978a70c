"""What one imctl invocation knows: the outside world (Env) and the resolved common options.

Commands never read ``os.environ``, ``sys.stdout`` or ``~`` themselves; they go through
``Context.env`` so tests can run a whole command against StringIO streams and a temp home.
"""

from __future__ import annotations

import enum
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from cli.output import Output

_FALSY = {"", "0", "false", "no", "off"}


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


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


@dataclass
class Context:
    env: Env
    stack: str = "dev"
    cloud: str = "local"
    output: OutputFormat = OutputFormat.TEXT
    yes: bool = False
    verbose: bool = False
    no_color: bool = False
    _out: Output | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def json(self) -> bool:
        return self.output is OutputFormat.JSON

    @property
    def stack_dir(self) -> Path:
        return self.env.home / "stacks" / self.stack

    @property
    def out(self) -> Output:
        if self._out is None:
            from cli.output import Output

            self._out = Output(self)
        return self._out
