"""The per-stack operation lock: one mutating operation per stack at a time.

An ``flock`` on ``<home>/locks/<stack>.lock``:
- the kernel drops it when the holding process dies, however it dies (kill -9 included), so
  there is no stale lock to clean up and no "force unlock" command;
- the file lives outside the stack directory so ``destroy`` can delete that directory while
  holding the lock;
- lock files are never deleted: unlinking a lock file while another process waits on it lets
  two processes "hold" locks on two different inodes.

The holder writes who it is into the file, so a refused operation can say who holds the lock.
The lock is per open file, not per process: taking it twice in one process is refused too.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cli.errors import Locked


def lock_path(home: Path, stack: str) -> Path:
    return home / "locks" / f"{stack}.lock"


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _read_holder_fd(fd: int) -> dict[str, Any] | None:
    # The holder truncates and then writes, so a reader can catch it in between: retry briefly.
    for _ in range(5):
        raw = os.pread(fd, 4096, 0)
        try:
            holder = json.loads(raw)
        except ValueError:
            time.sleep(0.02)
            continue
        return holder if isinstance(holder, dict) else None
    return None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def read_holder(home: Path, stack: str) -> dict[str, Any] | None:
    """Who holds the stack lock now ({"op", "pid", "user", "since"}), or None; for display.

    Reads without touching the lock: probing it would make a concurrent acquirer fail with
    "locked". A holder killed with -9 leaves its record behind, hence the pid check.
    """
    try:
        fd = os.open(lock_path(home, stack), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        raw = os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    try:
        holder = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(holder, dict) or not _pid_alive(holder.get("pid")):
        return None
    return holder


def describe_holder(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another imctl process (it has not said who it is yet)"
    return (
        f"`imctl {holder.get('op', '?')}` (pid {holder.get('pid', '?')}, "
        f"{holder.get('user', '?')}, since {holder.get('since', '?')})"
    )


class StackLock:
    """Context manager; raises Locked (exit 11) at once if another operation holds the lock."""

    def __init__(self, home: Path, stack: str, op: str, user: str) -> None:
        self.path = lock_path(home, stack)
        self.stack = stack
        self.op = op
        self.user = user
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError("StackLock is not reentrant")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder_fd(fd)
            os.close(fd)
            raise Locked(
                f"stack {self.stack!r} is locked by {describe_holder(holder)}",
                "wait for that operation to finish and re-run; if its process is gone the lock "
                "is already free (the kernel releases it when the holder exits)",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        holder = {"op": self.op, "pid": os.getpid(), "user": self.user, "since": utc_now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a free lock names no holder
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> StackLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
