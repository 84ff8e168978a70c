"""The stack lock against real processes (a second process, kill -9) and the journal on disk."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli import journal
from cli.context import Context, OutputFormat
from cli.env import Env
from cli.errors import ExitStatus, Locked, ResourceFailure
from cli.locks import StackLock, lock_path, read_holder
from cli.main import app
from cli.runner import run

HOLDER_SECONDS = 60  # upper bound; the test kills the holder long before


def make_env(home: Path) -> Env:
    return Env(io.StringIO(), io.StringIO(), False, False, {"USER": "tester"}, home)


def stdout_of(ctx: Context) -> str:
    assert isinstance(ctx.env.stdout, io.StringIO)
    return ctx.env.stdout.getvalue()


@dataclass
class Done:
    doc: dict[str, Any]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return self.doc


def run_code(ctx: Context, op: str, args: dict[str, Any], body: Any) -> int:
    with pytest.raises(typer.Exit) as info:
        run(ctx, op, args, body, lambda console, doc: None, mutating=True)
    return int(info.value.exit_code)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "stacks" / "dev").mkdir(parents=True)
    return home


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    line: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not line:
        raise AssertionError(f"holder process said nothing within {timeout}s")
    return line[0].strip()


@pytest.fixture
def holder(home: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding dev's lock as `deploy`; killed by PID at teardown."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from cli.locks import StackLock
        with StackLock(Path({str(home)!r}), "dev", "deploy", "alice@ops-host"):
            print("locked", flush=True)
            time.sleep({HOLDER_SECONDS})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert _read_line(proc, timeout=20) == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


# --- the lock ---------------------------------------------------------------------------------


def test_second_mutating_run_exits_11_naming_the_holder(
    home: Path, holder: subprocess.Popen[str]
) -> None:
    ran: list[str] = []

    def body() -> Done:
        ran.append("body")
        return Done({})

    ctx = Context(env=make_env(home), output=OutputFormat.JSON)
    code = run_code(ctx, "scale", {"replicas": 3}, body)
    assert code == ExitStatus.LOCKED
    assert ran == []  # the body never ran
    err = json.loads(stdout_of(ctx))["error"]
    assert err["code"] == "locked"
    assert "imctl deploy" in err["message"] and f"pid {holder.pid}" in err["message"]
    assert "alice@ops-host" in err["message"]
    # the refused attempt is in the audit trail too
    [record] = journal.read(home, "dev")
    assert (record.op, record.result, record.exit_code) == ("scale", "error", 11)
    assert record.error_code == "locked"


def test_lock_freed_when_the_holder_is_killed(home: Path, holder: subprocess.Popen[str]) -> None:
    assert read_holder(home, "dev") is not None
    with pytest.raises(Locked):
        StackLock(home, "dev", "destroy", "bob@h").acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    # the dead holder's record is still in the file, but nobody holds the lock
    assert read_holder(home, "dev") is None
    with StackLock(home, "dev", "destroy", "bob@h"):
        assert read_holder(home, "dev") == {
            "op": "destroy",
            "pid": os.getpid(),
            "user": "bob@h",
            "since": read_holder(home, "dev")["since"],  # type: ignore[index]
        }


def test_lock_is_exclusive_within_one_process_and_released_on_exit(home: Path) -> None:
    with StackLock(home, "dev", "deploy", "a@h"):
        with pytest.raises(Locked) as info:
            StackLock(home, "dev", "scale", "b@h").acquire()
        assert "imctl deploy" in info.value.message and f"pid {os.getpid()}" in info.value.message
        StackLock(home, "other", "scale", "b@h").acquire()  # other stacks are independent
    assert lock_path(home, "dev").read_text() == ""  # a free lock names nobody
    with StackLock(home, "dev", "scale", "b@h"):
        pass


def test_lock_lives_outside_the_stack_dir(home: Path) -> None:
    import shutil

    with StackLock(home, "dev", "destroy", "a@h"):
        shutil.rmtree(home / "stacks" / "dev")  # what destroy does while holding the lock
        with pytest.raises(Locked):
            StackLock(home, "dev", "deploy", "b@h").acquire()


# --- the journal ------------------------------------------------------------------------------


def test_mutating_run_appends_a_record(home: Path) -> None:
    ctx = Context(env=make_env(home), cloud="local")
    assert run_code(ctx, "scale", {"replicas": 3}, lambda: Done({"replicas": 3})) == 0
    [record] = journal.read(home, "dev")
    assert record.op == "scale" and record.args == {"replicas": 3}
    assert (record.result, record.exit_code, record.error_code) == ("ok", 0, None)
    assert record.user.startswith("tester@") and (record.stack, record.cloud) == ("dev", "local")
    started = datetime.fromisoformat(record.started_at)
    finished = datetime.fromisoformat(record.finished_at)
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert finished >= started and record.duration_s >= 0


def test_failed_and_interrupted_runs_are_recorded(home: Path) -> None:
    def fails() -> Done:
        raise ResourceFailure("pg_ctl start failed", "see the log")

    def interrupted() -> Done:
        raise KeyboardInterrupt

    ctx = Context(env=make_env(home))
    assert run_code(ctx, "deploy", {"replicas": 2}, fails) == 4
    mid_way = Context(env=make_env(home))
    assert run_code(mid_way, "scale", {}, interrupted) == 130
    assert isinstance(mid_way.env.stderr, io.StringIO)
    assert "may be half done" in mid_way.env.stderr.getvalue()  # a change may be half made
    failed, stopped = journal.read(home, "dev")
    assert (failed.result, failed.exit_code, failed.error_code) == ("error", 4, "resource_failure")
    assert failed.message == "pg_ctl start failed"
    assert (stopped.result, stopped.exit_code) == ("interrupted", 130)
    assert lock_path(home, "dev").read_text() == ""  # released on the way out


def test_ctrl_c_on_a_read_only_command_ends_quietly(home: Path) -> None:
    def follows() -> Done:
        raise KeyboardInterrupt

    for output, stdout in ((OutputFormat.TEXT, ""), (OutputFormat.JSON, '"interrupted_unchanged"')):
        ctx = Context(env=make_env(home), output=output)
        with pytest.raises(typer.Exit) as info:
            run(ctx, "logs", {}, follows, lambda console, doc: None, mutating=False)
        assert info.value.exit_code == 130
        assert isinstance(ctx.env.stdout, io.StringIO) and isinstance(ctx.env.stderr, io.StringIO)
        assert ctx.env.stderr.getvalue() == ""
        assert stdout in ctx.env.stdout.getvalue()  # -o json still gets its one document


def test_non_mutating_runs_are_not_journaled_and_take_no_lock(home: Path) -> None:
    with StackLock(home, "dev", "deploy", "a@h"):
        ctx = Context(env=make_env(home))
        with pytest.raises(typer.Exit) as info:
            run(ctx, "status", {}, lambda: Done({}), lambda c, d: None, mutating=False)
        assert info.value.exit_code == 0
    assert journal.read(home, "dev") == []


def _record(op: str) -> journal.Record:
    return journal.Record(op, {}, "t0", "t1", 0.1, "ok", 0, None, None, "u@h", "dev", "local")


def test_torn_last_line_is_skipped_and_not_glued_to(home: Path) -> None:
    journal.append(home, "dev", _record("deploy"))
    journal.append(home, "dev", _record("scale"))
    with journal.journal_path(home, "dev").open("a") as fh:
        fh.write('{"op": "destroy", "args": {"yes"')  # a crash mid-write
    assert [r.op for r in journal.read(home, "dev")] == ["deploy", "scale"]
    journal.append(home, "dev", _record("deploy"))
    assert [r.op for r in journal.read(home, "dev")] == ["deploy", "scale", "deploy"]
    assert [r.op for r in journal.read(home, "dev", limit=2)] == ["scale", "deploy"]


def test_concurrent_appends_keep_every_line_whole(home: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from cli import journal
        for i in range(40):
            journal.append(Path({str(home)!r}), "dev", journal.Record(
                "op" + sys.argv[1], {{"i": i, "pad": "x" * 300}}, "t0", "t1", 0.0, "ok", 0,
                None, None, "u@h", "dev", "local"))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in range(4)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lines = journal.journal_path(home, "dev").read_text().splitlines()
    assert len(lines) == 160
    assert all(json.loads(line)["args"]["pad"] == "x" * 300 for line in lines)


def test_history_shows_records_newest_last_even_after_destroy(home: Path) -> None:
    for op in ("deploy", "scale", "destroy"):
        assert run_code(Context(env=make_env(home)), op, {"op": op}, lambda: Done({})) == 0
    import shutil

    shutil.rmtree(home / "stacks" / "dev")  # destroyed: only the journal remains

    def history(*args: str) -> tuple[int, str]:
        env = make_env(home)
        result = CliRunner().invoke(app, ["history", *args], obj=env, env={"IMCTL_STACK": None})
        assert isinstance(env.stdout, io.StringIO)
        return result.exit_code, env.stdout.getvalue()

    code, out = history("-o", "json")
    assert code == 0
    ops = json.loads(out)["operations"]
    assert [o["op"] for o in ops] == ["deploy", "scale", "destroy"]
    assert all(o["user"].startswith("tester@") and o["result"] == "ok" for o in ops)
    assert {"op", "args", "started_at", "finished_at", "duration_s", "result", "exit_code"} <= set(
        ops[0]
    )

    code, out = history("--limit", "2", "-o", "json")
    assert [o["op"] for o in json.loads(out)["operations"]] == ["scale", "destroy"]

    code, out = history()
    assert code == 0
    assert out.index("deploy") < out.index("scale") < out.index("destroy")
    assert "tester@" in out
