"""Losing the synchronous standby, under each policy, through the real command: never a silent
stall. kill -9 of the standby's PostgreSQL once gave 47 s of zero acks while /readyz, status and
status --check all said healthy."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from cli.state import StackFiles
from cli.targets.local import procs
from cli.targets.local.nodes import http_json
from cli.targets.local.procs import free_port
from cli.targets.local.runtime import Region
from cli.targets.local.target import LocalTarget
from im_server.client import Client
from tests.cli.test_local_e2e import imctl, imctl_home, ok_json
from tests.im_server.test_write_stall import frozen

pytestmark = pytest.mark.slow

# The send timeout the nodes run with (IM_SEND_TIMEOUT_SECONDS default) and its check period.
SEND_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-sync-")


def _region(home: Path, stack: str, name: str) -> Region:
    target = LocalTarget(StackFiles(home / "stacks" / stack))
    cfg = target.files.load_config()
    return next(r for r in target.regions(cfg) if r.cfg.name == name)


def _codes(doc: dict[str, Any]) -> list[str]:
    return [p["code"] for p in doc["problems"]]


def _within(seconds: float, what: str, probe: Any) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(0.2)


def _node_readyz(region: Region) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for n in region.node_ids():
        st = region.node_status(n)
        out.append(http_json(f"http://127.0.0.1:{st.health_port}/readyz"))
    return out


async def _raw_send(url: str, token: str, cid: str, within: float) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(orjson.dumps({"type": "hello", "v": 1, "token": token}).decode())
        assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
        await ws.send_str(
            orjson.dumps({"type": "send", "cid": cid, "to": "bob", "body": {"c": cid}}).decode()
        )
        deadline = time.monotonic() + within
        while True:
            f = orjson.loads((await ws.receive(timeout=deadline - time.monotonic())).data)
            if f.get("cid") == cid:
                return dict(f)


async def _count(dsn: str, cid: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM messages WHERE cid = $1", cid))
    finally:
        await conn.close()


def test_wait_policy_says_writes_are_blocked_and_answers_sends(home: Path) -> None:
    doc = ok_json(home, "deploy", "-s", "w", "--region", "a", "--standby-region", "b",
                  "--port", str(free_port()))  # fmt: skip
    st = ok_json(home, "status", "-s", "w")
    assert st["healthy"] and st["sync_policy"] == "wait" and st["problems"] == [], st
    tok = ok_json(home, "token", "-s", "w", "--user", "alice")["token"]
    _region(home, "w", "b").pg().kill9()
    t0 = time.monotonic()
    st = _within(5, "status says writes are blocked",
                 lambda: (d := ok_json(home, "status", "-s", "w")) and
                 "writes_blocked" in _codes(d) and d)  # fmt: skip
    blocked = next(p for p in st["problems"] if p["code"] == "writes_blocked")
    assert blocked["region"] == "a" and blocked["next_command"].startswith("imctl deploy -s w")
    assert "writes_unprotected" in _codes(st) and not st["healthy"]
    r = imctl(home, "status", "-s", "w", "--check", "-o", "json")
    assert r.returncode == 10
    primary = _region(home, "w", "a")
    _within(5 - (time.monotonic() - t0) + 2, "every node's /readyz says writes blocked",
            lambda: all(code == 503 and body.get("writes") == "blocked"
                        for code, body in _node_readyz(primary)))  # fmt: skip
    # A send is answered within the send timeout: the commit waits for the standby, so its
    # outcome is unknown (and it is not visible yet).
    t1 = time.monotonic()
    f = asyncio.run(_raw_send(doc["endpoint"], tok, "w1", SEND_TIMEOUT + 5))
    assert f["type"] == "error" and f["code"] == "outcome_unknown" and f["retryable"], f
    assert time.monotonic() - t1 <= SEND_TIMEOUT + 1.5
    assert asyncio.run(_count(primary.dsn(), "w1")) == 0
    # deploy brings the standby back: the waiting commit finishes, the resend is a duplicate.
    ok_json(home, "deploy", "-s", "w")
    f = asyncio.run(_raw_send(doc["endpoint"], tok, "w1", 15))
    assert f["type"] == "ack" and f["duplicate"] is True, f
    assert asyncio.run(_count(primary.dsn(), "w1")) == 1
    _within(5, "healthy again", lambda: ok_json(home, "status", "-s", "w")["healthy"])
    # A frozen primary database is reported within 5 s (status itself does not hang on it).
    with frozen(primary.pg()):
        t2 = time.monotonic()
        st = ok_json(home, "status", "-s", "w")
        # A liveness bound: it used to hang for 60 s; a loaded 2-core machine needs ~6 s.
        assert time.monotonic() - t2 < 15
        assert _codes(st)[0] == "database_unreachable", st["problems"]
        assert "--force" in st["problems"][0]["next_command"]  # the way out if a is lost
    # No node ready is a problem of its own.
    for n in primary.node_ids():
        info = procs.read_pid_file(primary.nodes_dir / f"{n}.pid")
        assert info is not None
        procs.kill9(info)
    st = ok_json(home, "status", "-s", "w")
    assert "no_node_ready" in _codes(st) and not st["healthy"]
    imctl(home, "destroy", "-s", "w", "--yes")


def test_degrade_policy_keeps_writing_unprotected_then_restores_sync(home: Path) -> None:
    doc = ok_json(home, "deploy", "-s", "d", "--region", "a", "--standby-region", "b",
                  "--port", str(free_port()))  # fmt: skip
    tok = ok_json(home, "token", "-s", "d", "--user", "alice")["token"]
    # A hung standby (frozen, not dead: its walsender still looks "streaming" for a while)
    # under the default policy: writes block, and the way out is to switch the policy.
    standby = _region(home, "d", "b").pg()
    with frozen(standby):
        # Nothing waits until something commits: one send gets stuck (answered outcome_unknown
        # after the send timeout, in the background).
        stuck = threading.Thread(
            target=lambda: asyncio.run(_raw_send(doc["endpoint"], tok, "d1", SEND_TIMEOUT + 5))
        )
        stuck.start()
        _within(8, "status says writes are blocked",
                lambda: "writes_blocked" in _codes(ok_json(home, "status", "-s", "d")))  # fmt: skip
        stuck.join(SEND_TIMEOUT + 10)
        switched = ok_json(home, "deploy", "-s", "d", "--sync-policy", "degrade",
                           "--sync-degrade-after", "1")  # fmt: skip
        assert (
            any("durability settings changed" in a for a in switched["actions"])
            or switched["changed"]
        ), switched

        async def send_one() -> float:
            t = time.monotonic()
            async with Client(doc["endpoint"], tok) as c:
                await c.send({"after": "loss"}, to="bob", timeout=SEND_TIMEOUT)
            return time.monotonic() - t

        # Acked: the commit waited about the degrade bound (plus a probe period), not forever.
        assert asyncio.run(send_one()) < 8
        st = _within(5, "status says writes are unprotected",
                     lambda: (d := ok_json(home, "status", "-s", "d")) and
                     "writes_unprotected" in _codes(d) and d)  # fmt: skip
        assert "writes_blocked" not in _codes(st) and not st["protected"]
        assert imctl(home, "status", "-s", "d", "--check").returncode == 10
        primary = _region(home, "d", "a")
        for code, body in _node_readyz(primary):
            assert code == 200 and body["writes"] == "unprotected", body

    # The standby is back: the nodes name it again once it has caught up.
    def synced() -> bool:
        d = ok_json(home, "status", "-s", "d")
        a = next(r for r in d["regions"] if r["name"] == "a")
        rows = a["replication"]["standbys"] if a["replication"] else []
        return bool(d["healthy"] and rows and rows[0]["sync_state"] == "sync")

    _within(15, "sync replication restored", synced)
    imctl(home, "destroy", "-s", "d", "--yes")


def test_sync_policy_is_refused_for_clouds_and_kept_in_the_config(home: Path) -> None:
    r = imctl(home, "deploy", "--cloud", "aws", "--sync-policy", "degrade", "--yes", "-o", "json")
    err = json.loads(r.stdout)["error"]
    assert r.returncode == 2
    assert err["message"] == "--sync-policy is not an option of the aws target"
    assert "it is for local" in err["hint"]
