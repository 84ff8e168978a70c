"""What a CI log sees of a real local deploy: with ``-o json`` every stderr line is a progress
event (the shape cloud deploys emit) and stdout is one document; in text mode without a
terminal, one plain line per step with its time, and a step that runs long says so again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.targets.local.procs import free_port
from tests.cli.test_local_e2e import imctl_home

pytestmark = pytest.mark.slow


def imctl(home: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMCTL_HOME": str(home), "CI": "1", **environ}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-progress-")


def test_json_deploy_reports_every_phase_as_json_lines(home: Path) -> None:
    r = imctl(home, "deploy", "--port", str(free_port()), "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one document
    assert doc["created"] is True

    events: list[dict[str, Any]] = [json.loads(line) for line in r.stderr.splitlines()]
    assert events, "a deploy must not be silent"
    for e in events:
        assert {"event", "stack", "operation", "sequence", "done", "total"} <= e.keys()
        assert e["stack"] == "dev" and e["operation"] == "deploy"
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    started = [e["name"] for e in events if e["event"] == "step_started"]
    done = [e["name"] for e in events if e["event"] == "step_done"]
    phases = [
        "checking ports and processes",
        "region local: PostgreSQL and NATS",
        "continuous backup (async): WAL archiver and base backup",
        "region local: migrations and im-server nodes",
    ]
    assert started == phases and done == phases
    assert all(e["duration_seconds"] >= 0 for e in events if e["event"] == "step_done")
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert "initialized PostgreSQL" in notes
    assert any(n.startswith("started im-server") for n in notes)
    assert events[-1]["done"] == events[-1]["total"] == 4


def test_text_scale_without_a_terminal_prints_step_lines_and_heartbeats(home: Path) -> None:
    # A heartbeat every 0.2 s: waiting for a node to be ready takes longer than that.
    r = imctl(home, "scale", "--replicas", "3", IMCTL_PROGRESS_INTERVAL="0.2")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    step = "region local: 2 -> 3 im-server node(s)"
    assert lines[0] == f"{step} ..."
    assert any(line.startswith(f"{step} ... still running (") for line in lines)
    assert lines[-1].startswith(f"{step} ... done (") and lines[-1].endswith("s)")
    assert "\x1b[" not in r.stderr
    assert r.stdout.strip()  # the result on stdout, the progress kept off it
    assert step not in r.stdout


def test_text_destroy_without_a_terminal_prints_one_line_per_step(home: Path) -> None:
    r = imctl(home, "destroy", "--yes", IMCTL_PROGRESS_INTERVAL="0")
    assert r.returncode == 0, r.stderr
    finished = [line for line in r.stderr.splitlines() if " ... done (" in line]
    assert [line.split(" ... ")[0] for line in finished] == [
        "region local: stopping nodes, NATS and PostgreSQL",
        f"deleting {home / 'stacks' / 'dev'}, all but snapshots/ and backups/",
    ]
