"""What an operation returns: a JSON document and the exit status it implies.

Domain code (the targets) returns these; the command layer (cli/runner.py) prints the document
and exits with the status. A result whose work is done but whose record is not (a cloud
failover whose roles could not be written to the stack config) carries PARTIAL here rather
than raising, so the document still says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cli.errors import ExitStatus


class Result(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    @property
    def exit_status(self) -> ExitStatus: ...


@dataclass
class DocResult:
    """A result that is a JSON document, with a fixed exit status by default."""

    doc: dict[str, Any]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return self.doc


@dataclass
class StatusResult:
    """``status``: healthy or not is in the document; ``--check`` makes unhealthy exit 10."""

    doc: dict[str, Any]
    check: bool

    def to_json(self) -> dict[str, Any]:
        return self.doc

    @property
    def exit_status(self) -> ExitStatus:
        if self.check and not self.doc.get("healthy"):
            return ExitStatus.PRECONDITION
        return ExitStatus.OK
