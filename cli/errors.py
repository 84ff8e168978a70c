"""Exit codes and the one exception type every command raises to fail.

Every ``ImctlError`` subclass lives here, so the exit code of a mistake is decided once and is
the same on every target (tests/cli/test_layering.py holds the table).

Exception tree::

    ImctlError                    exit 1: carries an ExitStatus, a message and a hint
    ├── InternalError             exit 1: an exception no command anticipated (a bug)
    ├── SnapshotNotFound          exit 1 (not 6: 6 means "no such stack")
    ├── DigestUnavailable         exit 1: no usable content digest (``transient``: ask again)
    ├── UsageError                exit 2: bad flags or values, confirmation needed without
    │                                     --yes, an outputs file for another cloud
    ├── CredentialsError          exit 3: cloud or Pulumi credentials absent or rejected
    ├── ResourceFailure           exit 4: a process, database or cloud resource failed
    ├── StackNotFound             exit 6
    ├── Cancelled                 exit 8: the user answered no
    ├── OperationTimeout          exit 9
    ├── PreconditionFailed        exit 10: a health gate or safety check said no
    │   ├── StateInvalid          exit 10: a stack file (config, secrets, ports, pid) is bad
    │   ├── SnapshotCorrupt       exit 10
    │   ├── SmokeTestFailed       exit 10
    │   └── ContentMismatch       exit 10: restored data differs from the snapshot's digest
    │       └── RestoredContentMismatch  exit 10: the same, on a cloud, with the check's result
    ├── PrerequisiteMissing       exit 10: a binary, package or credential is absent (hint: fix)
    ├── Locked                    exit 11: another operation holds the stack lock
    ├── Partial                   exit 12: the switch happened, a later step failed
    │   ├── ContentUnverified     exit 12: restored and in service, content not checked
    │   └── FailoverIncomplete    exit 12: the new primary serves, DNS (or later) failed
    └── Interrupted               exit 130: Ctrl-C
        └── InterruptedUnchanged  exit 130: Ctrl-C before anything changed (says nothing more)
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


class InternalError(ImctlError):
    """An exception no command anticipated: a bug, or an environment nobody planned for."""

    code = "internal_error"


class Interrupted(ImctlError):
    status = ExitStatus.INTERRUPTED
    code = "interrupted"


class InterruptedUnchanged(Interrupted):
    """Ctrl-C where nothing can be half done (a read-only command, a confirmation not yet
    answered): there is nothing to check or re-run, so text output adds nothing to the ^C.
    Its own code lets a script tell it from a mutating command's interruption."""

    code = "interrupted_unchanged"


class CredentialsError(ImctlError):
    status = ExitStatus.AUTH
    code = "credentials"


class Partial(ImctlError):
    """Exit 12: the switch happened (a database was promoted, a Secret repointed) but a later
    step failed; the message says what is done and the hint what is left."""

    status = ExitStatus.PARTIAL
    code = "partial"


class FailoverIncomplete(Partial):
    """The new primary serves, a later step (DNS) failed: exit 12, with the result so far."""

    def __init__(self, message: str, hint: str, result: dict[str, Any]) -> None:
        super().__init__(message, hint)
        self.result = result
        self.details = result


class ContentUnverified(Partial):
    """Exit 12: the restored database is in service, but its content could not be checked.
    ``restored`` names it: the caller records that the workload runs on it."""

    code = "content_unverified"

    def __init__(self, message: str, hint: str, *, restored: str) -> None:
        super().__init__(message, hint)
        self.restored = restored


# --- snapshots and verified restore ----------------------------------------------------------


class SnapshotNotFound(ImctlError):
    """Exit 1, not 6: 6 means "no such stack", and scripts must be able to tell them apart."""

    status = ExitStatus.ERROR
    code = "snapshot_not_found"


class SnapshotCorrupt(PreconditionFailed):
    code = "snapshot_corrupt"


class ContentMismatch(PreconditionFailed):
    code = "content_mismatch"


class RestoredContentMismatch(ContentMismatch):
    """Exit 10 (the local target's ``content_mismatch``): the restored data lacks what was
    committed before the snapshot or has gaps; the workload was pointed back at the previous
    database where there was one. ``result`` holds the check."""

    def __init__(self, message: str, hint: str, result: dict[str, Any]) -> None:
        super().__init__(message, hint)
        self.result = result
        self.details = result


class SmokeTestFailed(PreconditionFailed):
    code = "smoke_test_failed"


class DigestUnavailable(ImctlError):
    """No usable digest; ``transient``: asking again may help (unreachable, 5xx, a pod that is
    draining or still on another database)."""

    code = "digest_unavailable"

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
