"""Detached processes on this machine: ports, spawning, pid files, liveness and stopping.

A pid file records the PID *and* its kernel start time (psutil ``create_time``). PIDs are
recycled (pid_max is often 32768), so a bare PID can point at an unrelated process after a
crash; every check and every signal here first compares the start time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

from cli.deadline import poll
from cli.errors import OperationTimeout, ResourceFailure
from cli.statecheck import FileCheck

# psutil derives create_time from clock ticks (10 ms); a JSON round trip keeps the float, but
# allow one tick of slack in case the boot time it adds is recomputed differently.
_CREATE_TIME_SLACK = 0.011
_POLL = 0.05

# Popen objects of children we started, kept so that they can be reaped (no zombies while we
# live) and so that Popen.__del__ does not warn about a still-running child.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidInfo:
    pid: int
    create_time: float
    argv: list[str]


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports; all sockets stay bound until every port is picked, so the
    kernel cannot hand out the same port twice (it can when asked one at a time)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR as the servers themselves set it, so a port in TIME_WAIT counts as free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_port(host: str, port: int, timeout: float) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def nothing_listens(_listening: bool) -> bool:
        raise OperationTimeout(f"nothing is listening on {host}:{port} after {timeout:.1f}s")

    poll(
        listening,
        done=bool,
        state=lambda up: "listening" if up else "not listening",
        what=f"{host}:{port}",
        limit=timeout,
        interval=_POLL,
        timed_out=nothing_listens,
    )


def spawn_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None,
    cwd: Path | None = None,
    user: tuple[int, int] | None = None,
) -> int:
    """Start ``argv`` in its own session (it survives us and our terminal's signals), output
    appended to ``log_file``; write ``pid_file``; return the PID. ``user``: (uid, gid) to run
    as (PostgreSQL's tools refuse root)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    creds: dict[str, Any] = {}
    if user is not None:
        creds = {"user": user[0], "group": user[1], "extra_groups": []}
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            **creds,
        )
    _children[proc.pid] = proc
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        # Died at once (bad flags); the caller sees that through is_alive and the log.
        create_time = 0.0
    info = PidInfo(pid=proc.pid, create_time=create_time, argv=list(argv))
    write_pid_file(pid_file, info)
    return proc.pid


def write_pid_file(pid_file: Path, info: PidInfo) -> None:
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    payload = {"pid": info.pid, "create_time": info.create_time, "argv": info.argv}
    tmp.write_text(json.dumps(payload) + "\n")
    os.replace(tmp, pid_file)  # readers never see a half-written file


def read_pid_file(pid_file: Path) -> PidInfo | None:
    """The process a pid file names; None when there is no pid file. A pid file with content
    imctl never writes is an error, not "not running": treating it as absent would start a
    second copy next to a process that may well be alive."""
    check = FileCheck(
        pid_file,
        f"remove {pid_file}: `imctl status` and `imctl deploy` find the stack's processes"
        " without it",
    )
    try:
        text = pid_file.read_text()
    except FileNotFoundError:  # also when a stop removed it while we looked
        return None
    except (OSError, UnicodeDecodeError) as exc:
        check.fail("", f"cannot be read ({exc})")
    doc = check.obj(check.parse(text))
    check.keys(doc, "", ["pid", "create_time"], ["pid", "create_time", "argv"])
    argv = doc.get("argv", [])
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        check.fail("argv", "must be a list of strings (the command line)")
    return PidInfo(
        pid=check.int_in(doc["pid"], "pid", 1, 2**31 - 1, "a process id"),
        create_time=check.number_in(doc["create_time"], "create_time", 0, 2**40),
        argv=argv,
    )


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]


def _process(info: PidInfo) -> psutil.Process | None:
    """The live process ``info`` names, or None (gone, zombie, or the PID was reused)."""
    _reap(info.pid)
    try:
        proc = psutil.Process(info.pid)
        if abs(proc.create_time() - info.create_time) > _CREATE_TIME_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None
    return proc


def is_alive(info: PidInfo) -> bool:
    return _process(info) is not None


def wait_dead(info: PidInfo, timeout: float) -> bool:
    """True once the process is gone (zombies count as gone), False on timeout."""
    alive = poll(
        lambda: is_alive(info),
        done=lambda alive: not alive,
        state=lambda alive: "alive" if alive else "gone",
        what=f"process {info.pid}",
        limit=timeout,
        interval=_POLL,
        timed_out=lambda alive: alive,
    )
    return not alive


def _signal(info: PidInfo, sig: int) -> bool:
    proc = _process(info)
    if proc is None:
        return False
    try:
        proc.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


def terminate(info: PidInfo, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL.

    Returns True if the process stopped on ``sig`` (or was not running), False if it had to be
    killed. Raises ResourceFailure if it survives even SIGKILL (stuck in the kernel)."""
    if not _signal(info, sig) or wait_dead(info, timeout):
        return True
    kill9(info)
    return False


def kill9(info: PidInfo, wait: float = 5.0) -> bool:
    """SIGKILL the recorded process (only if its start time matches); wait until it is gone.
    Returns whether a signal was sent."""
    sent = _signal(info, signal.SIGKILL)
    if sent and not wait_dead(info, wait):
        raise ResourceFailure(f"process {info.pid} survived SIGKILL for {wait:.0f}s")
    return sent


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return f"(no log at {path})"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else f"(log {path} is empty)"
