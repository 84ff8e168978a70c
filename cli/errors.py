"""Exit codes and the one exception type every command raises to fail.

Exception tree::

    ImctlError                  carries an ExitStatus, a message and a hint
    ├── UsageError              exit 2: bad flags or values, confirmation needed without --yes
    ├── StackNotFound           exit 6
    ├── PreconditionFailed      exit 10: a health gate or safety check said no
    │   └── StateInvalid        a stack file (config, secrets, ports, pid) holds a bad value
    ├── Locked                  exit 11: another operation holds the stack lock
    ├── OperationTimeout        exit 9
    ├── ResourceFailure         exit 4: a process, database or cloud resource failed
    ├── PrerequisiteMissing     exit 10: a binary, package or credential is absent (hint: fix)
    └── Cancelled               exit 8: the user answered no
"""

from __future__ import annotations

import enum
from typing import Any


class ExitStatus(enum.IntEnum):
    """Process exit codes; part of the CLI contract, documented in the README."""

    OK = 0
    ERROR = 1
    USAGE = 2
    AUTH = 3
    RESOURCE_FAILURE = 4
    STACK_NOT_FOUND = 6
    CANCELLED = 8
    TIMEOUT = 9
    PRECONDITION = 10
    LOCKED = 11
    PARTIAL = 12
    INTERRUPTED = 130


class ImctlError(Exception):
    status: ExitStatus = ExitStatus.ERROR
    code: str = "error"

    def __init__(self, message: str, hint: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    # What was done before the failure (e.g. a failover promoted but DNS not rewritten), for
    # ``-o json`` callers; None: nothing worth reporting.
    details: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details is not None:
            doc["details"] = self.details
        return doc


class UsageError(ImctlError):
    status = ExitStatus.USAGE
    code = "usage"


class StackNotFound(ImctlError):
    status = ExitStatus.STACK_NOT_FOUND
    code = "stack_not_found"


class PreconditionFailed(ImctlError):
    status = ExitStatus.PRECONDITION
    code = "precondition_failed"


class StateInvalid(PreconditionFailed):
    """A file imctl keeps about a stack (config, secrets, ports, pid files) holds a value no
    imctl wrote: refused before anything acts on it."""

    code = "invalid_state"


class Locked(ImctlError):
    status = ExitStatus.LOCKED
    code = "locked"


class OperationTimeout(ImctlError):
    status = ExitStatus.TIMEOUT
    code = "timeout"


class ResourceFailure(ImctlError):
    status = ExitStatus.RESOURCE_FAILURE
    code = "resource_failure"


class PrerequisiteMissing(ImctlError):
    status = ExitStatus.PRECONDITION
    code = "prerequisite_missing"


class Cancelled(ImctlError):
    status = ExitStatus.CANCELLED
    code = "cancelled"
