"""Region failover on the local target, with real processes and real streaming replication."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.locks import StackLock
from cli.state import StackFiles
from cli.targets.base import FAILOVER_KEYS, FAILOVER_PLAN_KEYS
from cli.targets.local.drill import kill_region
from cli.targets.local.procs import free_port
from cli.targets.local.target import LocalTarget
from im_server.client import Client
from tests.cli.test_local_e2e import imctl, imctl_home, ok_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-fo-")


@pytest.fixture(scope="module")
def pair(home: Path) -> dict[str, Any]:
    return ok_json(
        home, "deploy", "--region", "a", "--standby-region", "b", "--port", str(free_port())
    )


def _roles(home: Path, stack: str = "dev") -> dict[str, str]:
    return {r["name"]: r["role"] for r in ok_json(home, "status", "-s", stack)["regions"]}


def test_standby_streams_synchronously_and_serves_no_nodes(
    pair: dict[str, Any], home: Path
) -> None:
    st = ok_json(home, "status")
    assert st["healthy"] and st["protected"] and st["replication"] == "sync"
    a, b = st["regions"]
    assert (a["role"], b["role"]) == ("primary", "standby")
    assert a["replication"]["standbys"][0]["sync_state"] == "sync"
    assert b["replication"]["streaming"] is True and b["nodes"] == []
    assert b["database"]["role"] == "standby"


def test_unsafe_requests_are_refused(pair: dict[str, Any], home: Path) -> None:
    before = _roles(home)
    r = imctl(home, "failover", "--to-region", "a", "--yes", "-o", "json")
    assert r.returncode == 10 and "not a standby" in json.loads(r.stdout)["error"]["message"]
    assert imctl(home, "failover", "--to-region", "b", "-o", "json").returncode == 2  # no --yes
    dry = ok_json(home, "failover", "--to-region", "b", "--dry-run")
    assert dry["data_loss_bound"]["acked_messages"] == 0 and dry["steps"]
    assert set(dry) == set(FAILOVER_PLAN_KEYS), sorted(dry)
    with StackLock(home, "dev", "failover", "someone@else"):
        assert imctl(home, "failover", "--to-region", "b", "--yes").returncode == 11
    assert _roles(home) == before  # nothing moved


def test_planned_there_and_back_under_traffic_loses_nothing(
    pair: dict[str, Any], home: Path
) -> None:
    for dest in ("b", "a"):
        doc = ok_json(home, "drill", "failover", "--to-region", dest, "--yes")
        assert doc["mode"] == "planned" and doc["to_region"] == dest
        assert doc["acked"] > 50
        assert (doc["acked_missing"], doc["duplicates"], doc["seq_gaps"]) == (0, 0, 0), doc
        assert doc["rto_seconds"] is not None and doc["rto_seconds"] < 10
        st = ok_json(home, "status")
        assert _roles(home)[dest] == "primary" and st["protected"], st
    # The global endpoint did not move: clients need no new address.
    assert ok_json(home, "status")["endpoint"] == pair["endpoint"]


async def test_drill_traffic_is_reported_and_clean_removes_only_it(
    pair: dict[str, Any], home: Path
) -> None:
    # The planned drills above wrote as drill users; a real user writes too.
    tok = ok_json(home, "token", "--user", "carol")["token"]
    async with Client(pair["endpoint"], tok) as c:
        await c.send({"keep": True}, to="dave")
    assert imctl(home, "token", "--user", "imctl-drill.1a2b3c4d.s0").returncode == 2
    history = ok_json(home, "history")
    assert any(op["op"] == "drill-failover" for op in history["operations"]), history
    r = imctl(home, "drill", "clean", "-o", "json")  # no --yes, no TTY: asks, refuses
    assert r.returncode == 2
    gone = ok_json(home, "drill", "clean", "--yes")
    assert gone["conversations"] >= 8 and gone["messages"] > 50, gone  # 4 pairs x 2 drills
    assert ok_json(home, "drill", "clean", "--yes")["conversations"] == 0
    async with Client(pair["endpoint"], tok) as c:
        convs = await c.convs()
    assert [x["conv"] for x in convs] == ["d:carol:dave"]


def test_forced_failover_after_kill9_loses_no_acked_message_then_rebuild(
    pair: dict[str, Any], home: Path
) -> None:
    src = next(n for n, r in _roles(home).items() if r == "primary")
    dest = "b" if src == "a" else "a"
    doc = ok_json(home, "drill", "failover", "--to-region", dest, "--force", "--yes")
    assert doc["mode"] == "forced"
    assert doc["data_loss_bound"]["acked_messages"] == 0  # synchronous replication
    assert (doc["acked_missing"], doc["duplicates"], doc["seq_gaps"]) == (0, 0, 0), doc
    st = ok_json(home, "status")
    assert _roles(home) == {src: "fenced", dest: "primary"}
    # Nothing replicates the new primary: not healthy until the fenced region is rebuilt.
    assert not st["healthy"] and [p["code"] for p in st["problems"]] == ["writes_unprotected"]
    assert st["protected"] is False
    # A fenced region stays down, even through a deploy.
    ok_json(home, "deploy")
    assert _roles(home)[src] == "fenced"
    # Planned failover to a fenced region is refused.
    assert imctl(home, "failover", "--to-region", src, "--yes").returncode == 10
    ok_json(home, "standby", "rebuild", "--region", src, "--yes")
    st = ok_json(home, "status")
    assert st["protected"] is True and _roles(home)[src] == "standby"
    rebuilt = next(r for r in st["regions"] if r["name"] == src)
    assert rebuilt["replication"]["streaming"] is True


async def test_async_mode_reports_a_nonzero_bound_when_the_standby_was_behind(
    home: Path,
) -> None:
    port = free_port()
    ok_json(home, "deploy", "-s", "asy", "--region", "p", "--standby-region", "s",
            "--replication", "async", "--port", str(port))  # fmt: skip
    target = LocalTarget(StackFiles(home / "stacks" / "asy"))
    cfg = target.files.load_config()
    primary = next(r for r in target.regions(cfg) if r.cfg.name == "p")
    postmaster = psutil.Process(primary.pg().pid())
    sender = next(p for p in postmaster.children() if "walsender" in " ".join(p.cmdline()))
    # Freeze the primary's WAL sender: commits go on (async) but nothing reaches the standby.
    # (Freezing the standby's receiver is not enough: the socket buffers would hold the WAL.)
    os.kill(sender.pid, signal.SIGSTOP)
    try:
        tok = ok_json(home, "token", "-s", "asy", "--user", "w")["token"]
        async with Client(f"ws://127.0.0.1:{port}/ws", tok) as c:
            for i in range(200):
                await c.send({"i": i, "pad": "x" * 200}, to="sink")
        # Lose the primary region: the postmaster first, so no restarted sender can catch up.
        os.kill(postmaster.pid, signal.SIGKILL)
    finally:
        os.kill(sender.pid, signal.SIGKILL)
    await asyncio.to_thread(kill_region, target, cfg, "p")
    r = imctl(home, "failover", "-s", "asy", "--to-region", "s", "--force", "--yes", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == set(FAILOVER_KEYS), sorted(doc)  # the keys every target gives
    bound = doc["data_loss_bound"]
    # 200 commits of 200+ byte bodies never reached the standby: the bound must cover them.
    assert bound["wal_bytes"] and bound["wal_bytes"] > 200 * 200, bound
    assert bound["acked_messages"] is None  # unknown, and said so
