"""What a person sees: real commands in a pseudo-terminal, their bytes played through a terminal
emulator (pyte), and the final screen judged. Spinners must be gone and replaced by their
finished step lines, nothing half-drawn left behind, no escape code shown as text, tables drawn
with their box, a success line at the end, and the cursor visible again."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyte
import pytest

from cli.targets.local.procs import free_port
from tests.cli.test_local_e2e import imctl_home

pytestmark = pytest.mark.slow

COLUMNS, ROWS = 120, 200  # tall enough that nothing scrolls off
# Visible remains of a escape sequence the emulator did not take as one ("[0m", "[?25l").
_RAW_ESCAPE = re.compile(r"\x1b|\[\??[0-9;]*[A-Za-z]")
_SPINNER = re.compile("[\u2800-\u28ff]")  # rich's "dots" spinner frames are braille cells


@dataclass
class Screen:
    code: int
    lines: list[str]
    cursor_hidden: bool

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def in_terminal(home: Path, *args: str, timeout: float = 120) -> Screen:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR", "COLUMNS", "LINES")}
    env.update(IMCTL_HOME=str(home), TERM="xterm-256color")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            stream.feed(chunk)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    code = proc.wait(timeout=10)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return Screen(code, lines, bool(screen.cursor.hidden))


def assert_clean(screen: Screen, steps: list[str]) -> None:
    """Every step finished on its own ✓ line, and nothing else of it is left on screen."""
    assert screen.code == 0, screen.text
    assert not screen.cursor_hidden, "the spinner hid the cursor and left it hidden"
    for line in screen.lines:
        assert not _RAW_ESCAPE.search(line), line
        assert not _SPINNER.search(line), f"a spinner frame was left behind: {line!r}"
    for step in steps:
        mentions = [line for line in screen.lines if step in line]
        assert len(mentions) == 1, (step, screen.text)
        assert re.fullmatch(rf"✓ {re.escape(step)} \(\d+\.\ds\)", mentions[0]), mentions[0]


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-terminal-")


def test_what_a_person_sees(home: Path) -> None:
    deploy = in_terminal(
        home, "deploy", "--region", "a", "--standby-region", "b", "--port", str(free_port())
    )
    assert_clean(
        deploy,
        [
            "checking ports and processes",
            "region a: PostgreSQL and NATS",
            "region b: PostgreSQL standby (pg_basebackup when new) and NATS",
            "region a: migrations and im-server nodes",
            "region b: synchronous replication",
        ],
    )
    assert "✓ stack dev deployed" in deploy.lines
    assert deploy.lines[-1].startswith("connect   imctl token --user alice")

    status = in_terminal(home, "status")
    assert_clean(status, [])
    assert status.lines[0].startswith("stack dev (local)") and "healthy" in status.lines[0]
    table = status.text
    assert "┃ node ┃" in table and "└──" in table  # the nodes table with its box
    assert re.search(r"│ n1 +│ \d+ +│ yes +│ yes +│", table), table

    snapshot = in_terminal(home, "snapshot", "create", "--note", "terminal")
    assert_clean(
        snapshot,
        [
            "dumping region a (pg_dump -Fc from an exported snapshot)",
            "checksumming and writing the manifest",
        ],
    )
    assert re.match(r"✓ snapshot \S+: 0 messages in 0 conversations", snapshot.lines[-2])

    drill = in_terminal(home, "drill", "failover", "--to-region", "b", "--yes")
    assert_clean(
        drill,
        [
            "drill: planned failover a -> b under load",
            "draining a's im-server nodes",
            "waiting for b to replay up to the last write",
            "promoting b",
            "starting b's NATS and im-server nodes",
            "rejoining a as the standby of b",
        ],
    )
    assert "planned failover drill a -> b" in drill.text
    assert re.search(r"│ acked but missing afterwards +│ +0 │", drill.text), drill.text
    assert drill.lines[-1].startswith("└")  # the table is the last thing, drawn whole
