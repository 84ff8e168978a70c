"""The live Rich display of Pulumi engine events (cli/output.py) and which display a command gets.

The display is driven with the ``ProgressEvent``s cli/engine/events.py makes, into a rich
Console forced into terminal mode on a StringIO, and judged by what a person would see: the lines
that stay on screen, the done/total count, the summary.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console

from cli import progress_view
from cli.context import Context, OutputFormat
from cli.env import Env
from cli.errors import ImctlError
from cli.output import RichEngineProgress
from cli.progress import ProgressEvent

DB = "aws:rds/instance:Instance"
VPC = "aws:ec2/vpc:Vpc"
ROLE = "aws:iam/role:Role"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Broken(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError("the terminal went away")


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:dev::imctl::{type_}::{name}"


def _event(kind: str, seq: int, done: int, total: int, **kw: Any) -> ProgressEvent:
    return ProgressEvent(
        kind=kind, stack="dev", operation="up", sequence=seq, done=done, total=total, **kw
    )


def _resource(kind: str, seq: int, done: int, op: str, type_: str, name: str) -> ProgressEvent:
    return _event(kind, seq, done, 5, op=op, urn=_urn(type_, name), type=type_, name=name)


def _run() -> list[ProgressEvent]:
    """A ``pulumi up`` of 5 steps: one created, one unchanged, the database failed, a warning."""
    return [
        _event("start", 1, 0, 5),
        _resource("resource_started", 2, 0, "create", VPC, "us-east-1-vpc"),
        _resource("resource_done", 3, 1, "create", VPC, "us-east-1-vpc"),
        _resource("resource_done", 4, 2, "same", ROLE, "us-east-1-node-role"),
        _resource("resource_started", 5, 2, "create", DB, "us-east-1-db-postgres"),
        _resource("resource_failed", 6, 3, "create", DB, "us-east-1-db-postgres"),
        _event("diagnostic", 7, 3, 5, severity="warning", message="engine version [old]"),
        _event("summary", 8, 3, 5, changes={"create": 1, "same": 1}, duration_seconds=42.0),
    ]


def _console(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=True, width=120, _environ={"TERM": "xterm"})


def _screen(raw: str) -> list[str]:
    """The lines left on screen: each newline-terminated line as last redrawn, without ANSI."""
    return [_ANSI.sub("", chunk.rsplit("\r", 1)[-1]).strip() for chunk in raw.split("\n")[:-1]]


def _drive(events: list[ProgressEvent], *, verbose: bool = False) -> tuple[str, list[str]]:
    buf = io.StringIO()
    display = RichEngineProgress(_console(buf), verbose=verbose)
    for e in events:
        display.event(e)
    display.close()
    raw = buf.getvalue()
    return _ANSI.sub("", raw), _screen(raw)


def test_changes_failures_warnings_and_summary_stay_on_screen() -> None:
    text, screen = _drive(_run())

    assert f"[1/5] created: {VPC} us-east-1-vpc" in screen
    assert f"[3/5] FAILED: {DB} us-east-1-db-postgres" in screen
    assert "warning: engine version [old]" in screen  # rich markup in a message stays literal
    assert screen[-1] == "pulumi up finished in 42s: 1 created, 1 unchanged"
    assert not any("us-east-1-node-role" in line for line in screen)  # unchanged: bar only
    # the bar: what runs, how far, what failed
    assert "pulumi up dev" in text
    assert "1/5" in text and "3/5" in text and "1 failed" in text
    assert f"creating {DB} us-east-1-db-postgres" in text


def test_verbose_also_keeps_unchanged_resources() -> None:
    _, screen = _drive(_run(), verbose=True)
    assert f"[2/5] unchanged: {ROLE} us-east-1-node-role" in screen


def test_total_grows_as_steps_are_announced_and_parallel_steps_are_counted() -> None:
    text, _ = _drive(
        [
            _event("start", 1, 0, 0),
            _event("resource_started", 2, 0, 1, op="create", urn=_urn(VPC, "vpc"), type=VPC,
                   name="vpc"),
            _event("resource_started", 3, 0, 2, op="update", urn=_urn(ROLE, "r"), type=ROLE,
                   name="r"),
        ]
    )  # fmt: skip
    assert "0/?" in text  # nothing announced yet: no made-up total
    assert "0/1" in text and "0/2" in text
    assert f"updating {ROLE} r (+1 more)" in text


def test_close_without_summary_leaves_the_last_state_and_is_idempotent() -> None:
    buf = io.StringIO()
    display = RichEngineProgress(_console(buf))
    for e in _run()[:-2]:  # the engine failed before its summary
        display.event(e)
    display.close()
    display.close()
    display.event(_event("diagnostic", 9, 3, 5, severity="error", message="late"))  # after close
    screen = _screen(buf.getvalue())
    bar = next(line for line in screen if "pulumi up dev" in line)
    assert "3/5" in bar and "1 failed" in bar
    assert screen[-1] == "error: late"
    assert buf.getvalue().count("\x1b[?25h") >= 1  # the cursor is shown again


def test_a_malformed_event_or_a_broken_terminal_never_raises() -> None:
    display = RichEngineProgress(_console(io.StringIO()))
    display.event(cast(ProgressEvent, None))
    display.event(cast(ProgressEvent, object()))
    display.event(_event("resource_done", 1, cast(int, "x"), cast(int, None), op="create"))
    display.close()

    broken = RichEngineProgress(_console(_Broken()))
    for e in _run():
        broken.event(e)
    broken.close()
    broken.close()


# --- which display a command gets -----------------------------------------------------------


def _ctx(tmp_path: Path, *, tty: bool, environ: dict[str, str] | None = None, **kw: Any) -> Context:
    stderr = _TTY() if tty else io.StringIO()
    env = Env(io.StringIO(), stderr, tty, tty, environ or {"TERM": "xterm"}, tmp_path)
    return Context(env=env, **kw)


def test_progress_for_json_lines_with_output_json_even_on_a_tty(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tty=True, output=OutputFormat.JSON)
    assert isinstance(progress_view.progress_for(ctx), progress_view.JsonLinesProgress)


@pytest.mark.parametrize(
    ("tty", "environ"),
    [(False, {"TERM": "xterm"}), (True, {"TERM": "xterm", "CI": "1"}), (True, {"TERM": "dumb"})],
)
def test_progress_for_plain_lines_without_a_live_terminal(
    tmp_path: Path, tty: bool, environ: dict[str, str]
) -> None:
    ctx = _ctx(tmp_path, tty=tty, environ=environ)
    progress = progress_view.progress_for(ctx)
    assert isinstance(progress, progress_view.LineProgress)
    progress.event(_run()[2])
    ctx.out.end_engine_progress()  # nothing live: a no-op
    assert isinstance(ctx.env.stderr, io.StringIO)
    assert f"[1/5] created: {VPC} us-east-1-vpc" in ctx.env.stderr.getvalue()


def test_progress_for_rich_on_a_tty_and_the_error_lands_below_the_bar(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tty=True)
    progress = progress_view.progress_for(ctx)
    assert isinstance(progress, RichEngineProgress)
    for e in _run()[:3]:
        progress.event(e)
    # The command forgot end_engine_progress: printing the error still ends the bar first.
    ctx.out.error(ImctlError("pulumi up failed"))
    ctx.out.end_engine_progress()
    assert isinstance(ctx.env.stderr, io.StringIO)
    screen = _screen(ctx.env.stderr.getvalue())
    assert f"[1/5] created: {VPC} us-east-1-vpc" in screen
    assert screen[-1] == "error: pulumi up failed"
