"""What an operator reads, through the real command on a real local stack with a standby:
``status --check`` after the primary is lost and after a forced failover (exit 10, with the
command to run next), an idle standby's lag, tables that stay whole when piped, no Python values
(None, True, dict reprs) in any text output, and a quiet Ctrl-C where nothing can be half done.

One stack for the module, used in order: its deploy is most of the time these tests take."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from cli.state import StackFiles
from cli.targets.local.procs import free_port
from cli.targets.local.runtime import Region
from cli.targets.local.target import LocalTarget
from im_server.client import Client
from tests.cli.test_contract import invoke, make_env
from tests.cli.test_local_e2e import imctl, imctl_home, ok_json

pytestmark = pytest.mark.slow

STACK = "ux"  # not the default stack: every command status suggests must carry -s ux
# What a Python value looks like when it leaks into text: None/True/False, force=True, a list's
# or a dict's repr.
PY_VALUE = re.compile(r"\b(?:None|True|False)\b|\[['\"{]|\{['\"]|': ")
NOTE = "before the long weekend: " + "keep-this-whole " * 20 + "end-of-note"


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-ux-")


@pytest.fixture(scope="module")
def endpoint(home: Path) -> str:
    """Deployed in text mode, which is checked like every other text output."""
    out = _text(home, "deploy", "--region", "a", "--standby-region", "b",
                "--port", str(free_port()))  # fmt: skip
    found = re.search(r"^endpoint +(ws://\S+)$", out, re.MULTILINE)
    assert found, out
    return found.group(1)


def _text(home: Path, *args: str, code: int = 0) -> str:
    """A command's text output (piped, as in a script), checked for Python values. In a process
    of its own: what it starts must not be a child of the test."""
    r = imctl(home, *args, "-s", STACK)
    return _checked(args, r.returncode, code, r.stdout, r.stderr)


def _read(home: Path, *args: str, code: int = 0) -> str:
    """The same for a read-only command, run in this process (no interpreter start: faster)."""
    ran = invoke(make_env(home), [*args, "-s", STACK])
    return _checked(args, ran.code, code, ran.stdout, ran.stderr)


def _checked(args: tuple[str, ...], got: int, code: int, stdout: str, stderr: str) -> str:
    assert got == code, (args, got, stdout, stderr)
    for stream in (stdout, stderr):
        leak = PY_VALUE.search(stream)
        assert leak is None, f"{args}: {leak.group()!r} in:\n{stream}"
    return stdout


def _region(home: Path, name: str) -> Region:
    target = LocalTarget(StackFiles(home / "stacks" / STACK))
    cfg = target.files.load_config()
    return next(r for r in target.regions(cfg) if r.cfg.name == name)


def _standby_lag(home: Path) -> dict[str, Any]:
    st = ok_json(home, "status", "-s", STACK)
    rep: dict[str, Any] = next(r for r in st["regions"] if r["role"] == "standby")["replication"]
    return rep


def _words(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines]


class _CtrlC(io.StringIO):
    """A terminal whose user presses Ctrl-C at the prompt."""

    def readline(self, size: int | None = -1, /) -> NoReturn:
        raise KeyboardInterrupt


def test_idle_lag_whole_rows_and_words_not_python_values(endpoint: str, home: Path) -> None:
    async def one_message() -> None:
        token = ok_json(home, "token", "-s", STACK, "--user", "alice")["token"]
        async with Client(endpoint, token) as alice:
            await alice.send({"text": "then quiet"}, to="bob")

    asyncio.run(one_message())
    time.sleep(2)  # idle: the last replayed commit gets older, the standby is no further behind
    deadline = time.monotonic() + 10
    while (rep := _standby_lag(home))["lag_bytes"] != 0:  # a checkpoint's WAL may be in flight
        assert time.monotonic() < deadline, rep
        time.sleep(0.5)
    assert rep["lag_seconds"] == 0.0, rep
    status = _read(home, "status")
    assert "streaming from a, lag 0 bytes\n" in status, status
    lines = status.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["NODE", "PID"])
    assert [line.split()[0] for line in lines[header + 1 : header + 3]] == ["n1", "n2"], status

    # Tables piped: one whole line per row, a header line unless --no-headers.
    _text(home, "snapshot", "create", "--note", NOTE)
    listed = _read(home, "snapshot", "list").splitlines()
    assert listed[0].split() == ["ID", "CREATED", "STATUS", "MESSAGES", "SIZE", "NOTE"], listed
    assert len(listed) == 2 and listed[1].endswith(NOTE), listed
    snap_id = listed[1].split()[0]
    bare = _read(home, "snapshot", "list", "--no-headers").splitlines()
    assert _words(bare) == _words(listed[1:])  # the same rows (narrower without the header)
    _read(home, "snapshot", "show", snap_id)

    # Every other main command, as an operator would read it.
    dry = _read(home, "failover", "--to-region", "b", "--force", "--dry-run")
    assert "data-loss bound" in dry
    _read(home, "doctor")
    # A forced failover asked for on a terminal and answered with Ctrl-C: nothing happened, so
    # there is nothing to warn about.
    env = make_env(home, tty=True)
    env.stdin = _CtrlC()
    ran = invoke(env, ["failover", "--to-region", "b", "--force", "-s", STACK])
    assert ran.code == 130 and ran.stdout == "", ran
    assert "half" not in ran.stderr and "Traceback" not in ran.stderr and "error" not in ran.stderr
    assert _region(home, "a").cfg.role == "primary"

    history = _read(home, "history", "-n", "0").splitlines()
    assert history[0].split()[:2] == ["STARTED_UTC", "OP"]
    ops = ok_json(home, "history", "-s", STACK, "-n", "0")["operations"]
    assert len(history) == len(ops) + 1
    [row] = [line for line in history if " snapshot create " in line]
    assert row.endswith(f"note={NOTE}"), row  # whole, however wide
    [row] = [line for line in history if " failover " in line and " interrupted " in line]
    assert "   to_region=b force ; interrupted at the confirmation" in row, row  # not force=True
    assert _words(_read(home, "history", "-n", "0", "--no-headers").splitlines()) == _words(
        history[1:]
    )


def test_logs_follow_ends_quietly_on_ctrl_c(endpoint: str, home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "logs", "-f", "-s", STACK],
        env={**os.environ, "IMCTL_HOME": str(home), "CI": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # following: the recent lines are out
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "half" not in err and "Traceback" not in err and err.strip() == "", err


def test_lost_primary_then_forced_failover_fail_the_check_and_say_what_next(
    endpoint: str, home: Path
) -> None:
    _region(home, "a").pg().kill9()
    failover = "imctl failover --to-region b --force -s ux"
    out = _read(home, "status", "--check", code=10)
    r = imctl(home, "status", "--check", "-s", STACK, "-o", "json")
    assert r.returncode == 10
    st = json.loads(r.stdout)
    first = st["problems"][0]
    assert first["code"] == "database_unreachable" and failover in first["next_command"], first
    standby = next(p for p in st["problems"] if p["region"] == "b")
    # b holds the only copy: promoting it is the way out, rebuilding it from a is not.
    assert failover in standby["next_command"] and "rebuild" not in standby["next_command"]
    assert failover in out

    done = _text(home, "failover", "--to-region", "b", "--force", "--yes")
    assert "forced failover a -> b" in done and "a is fenced" in done, done
    assert "next: imctl standby rebuild --region a -s ux" in done, done
    out = _read(home, "status", "--check", code=10)
    assert "UNHEALTHY" in out and "region a is fenced" in out, out
    assert "imctl standby rebuild --region a -s ux" in out, out
    r = imctl(home, "status", "--check", "-s", STACK, "-o", "json")
    problems = json.loads(r.stdout)["problems"]
    assert r.returncode == 10 and [(p["code"], p["region"]) for p in problems] == [
        ("writes_unprotected", "a")
    ], problems
