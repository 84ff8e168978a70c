"""A step that runs long says so again (the heartbeat), in JSON lines and in plain lines, and
stops saying so when it ends; a failed step is told as failed."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

from cli.context import Context, OutputFormat
from cli.progress import ProgressEvent
from cli.step_progress import StepEvents, heartbeat_interval
from tests.cli.test_contract import invoke, make_env, one_document
from tests.cli.test_hints import recorded_stack


def _stderr(ctx: Context) -> str:
    assert isinstance(ctx.env.stderr, io.StringIO)
    return ctx.env.stderr.getvalue()


def test_json_heartbeat_then_done(tmp_path: Path) -> None:
    env = make_env(tmp_path, environ={"IMCTL_PROGRESS_INTERVAL": "0.05"})
    ctx = Context(env=env, stack="prod", output=OutputFormat.JSON)
    ctx.out.operation = "deploy"
    with ctx.out.step("waiting for PostgreSQL"):
        time.sleep(0.3)
    time.sleep(0.15)  # nothing more once the step has ended
    events = [json.loads(line) for line in _stderr(ctx).splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "step_started" and kinds[-1] == "step_done"
    running = [e for e in events if e["event"] == "step_running"]
    assert len(running) >= 2 and kinds.count("step_running") == len(kinds) - 2
    assert all(e["name"] == "waiting for PostgreSQL" for e in events)
    assert all(e["stack"] == "prod" and e["operation"] == "deploy" for e in events)
    assert [e["duration_seconds"] for e in running] == sorted(
        e["duration_seconds"] for e in running
    )


def test_json_failed_step(tmp_path: Path) -> None:
    ctx = Context(env=make_env(tmp_path), output=OutputFormat.JSON)
    with pytest.raises(RuntimeError), ctx.out.step("migrating"):
        raise RuntimeError("boom")
    last = json.loads(_stderr(ctx).splitlines()[-1])
    assert last["event"] == "step_failed" and last["done"] == last["total"] == 1


def test_plain_heartbeat_lines_and_a_standalone_final_line(tmp_path: Path) -> None:
    env = make_env(tmp_path, environ={"IMCTL_PROGRESS_INTERVAL": "0.05"})
    ctx = Context(env=env)
    with ctx.out.step("copying the primary (pg_basebackup)"):
        time.sleep(0.2)
    lines = _stderr(ctx).splitlines()
    assert lines[0] == "copying the primary (pg_basebackup) ..."
    assert lines[1].startswith("copying the primary (pg_basebackup) ... still running (")
    assert lines[-1].startswith("copying the primary (pg_basebackup) ... done (")


def test_no_heartbeat_when_turned_off(tmp_path: Path) -> None:
    env = make_env(tmp_path, environ={"IMCTL_PROGRESS_INTERVAL": "0"})
    ctx = Context(env=env)
    with ctx.out.step("quick"):
        time.sleep(0.1)
    assert _stderr(ctx).startswith("quick ... done (")


def test_events_reach_the_sink_in_sequence_order() -> None:
    """A heartbeat emitted while the main thread's event is on its way to the sink must not
    overtake it: JSON lines on stderr are in ``sequence`` order."""
    seen: list[int] = []

    class Sink:
        events: StepEvents

        def event(self, event: ProgressEvent) -> None:
            if event.sequence == 1:  # the heartbeat fires while this event is being written
                other = threading.Thread(target=self.events.running, args=("step", 15.0))
                other.start()
                other.join(timeout=0.3)
                self.other = other
            seen.append(event.sequence)

    sink = Sink()
    sink.events = StepEvents(sink, "dev", "deploy")
    sink.events.started("step")
    sink.other.join()
    assert seen == [1, 2]


@pytest.mark.parametrize("raw", ["inf", "1e12", "-1", "nan", "soon", "0.001"])
def test_a_bad_interval_is_a_usage_error_naming_the_variable(tmp_path: Path, raw: str) -> None:
    env = make_env(tmp_path, environ={"USER": "tester", "IMCTL_PROGRESS_INTERVAL": raw})
    ran = invoke(env, ["history", "-o", "json"])
    assert ran.code == 2, ran
    error = one_document(ran.stdout)["error"]
    assert "IMCTL_PROGRESS_INTERVAL" in error["message"] and raw in error["message"]
    assert "3600" in error["hint"]


@pytest.mark.parametrize(("raw", "seconds"), [("", 15.0), ("0", 0.0), ("2.5", 2.5), ("3600", 3600)])
def test_good_intervals(raw: str, seconds: float) -> None:
    assert heartbeat_interval({"IMCTL_PROGRESS_INTERVAL": raw}) == seconds


def test_json_confirmation_details_are_one_event_among_the_json_lines(tmp_path: Path) -> None:
    """`-o json --yes` still tells what it confirmed, as one ``confirm`` event: every stderr line
    under -o json is JSON."""
    home = tmp_path / "home"
    recorded_stack(home, "dev")
    (home / "stacks" / "dev" / "snapshots" / "20261203T100000Z-cd34").mkdir(parents=True)
    ran = invoke(make_env(home), ["destroy", "-o", "json", "--yes"])
    assert ran.code == 0, ran
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    confirm = events[0]
    assert confirm["event"] == "confirm" and confirm["question"] == "Destroy stack 'dev'?"
    assert confirm["stack"] == "dev" and confirm["operation"] == "destroy"
    assert confirm["details"][0] == "region a: stop 0 im-server node(s), NATS and PostgreSQL"
    assert any("imctl snapshot list -s dev" in d for d in confirm["details"])
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
