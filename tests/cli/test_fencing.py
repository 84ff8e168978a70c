"""A forced failover while the old primary still runs: fencing must stop every process of it
(also one whose pid file is gone) before the standby is promoted, and nothing of it may come
back as a second primary, not even through ``deploy``. Real processes, the real command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from cli.targets.local.procs import free_port
from im_server.client import Client
from tests.cli.test_local_e2e import alive, imctl, imctl_home, ok_json

pytestmark = pytest.mark.slow


@pytest.fixture
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-fence-")


def processes_in(directory: Path) -> list[int]:
    """Processes whose command line or working directory is inside ``directory`` (checked
    independently of imctl's own process discovery)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        where = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        if str(directory) in where and p.info["pid"] is not None:
            found.append(p.info["pid"])
    return alive(found)


async def test_forced_failover_fences_a_primary_that_is_still_running(home: Path) -> None:
    s = ("-s", "fence")
    doc = ok_json(
        home, "deploy", *s, "--region", "a", "--standby-region", "b",
        "--replicas", "2", "--port", str(free_port()),
    )  # fmt: skip
    a = next(r for r in doc["regions"] if r["name"] == "a")
    a_dir = home / "stacks" / "fence" / "regions" / "a"
    pids = [n["pid"] for n in a["nodes"]] + [a["bus"]["pid"], a["database"]["pid"]]
    assert len(alive(pids)) == 4
    # One node of the old primary runs without its pid file: fencing must find it anyway.
    (a_dir / "nodes" / "n2.pid").unlink()

    r = imctl(home, "failover", *s, "--to-region", "b", "--force", "--yes", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert alive(pids) == [], "the old primary's processes outlived the fencing"
    assert processes_in(a_dir) == []

    # Nothing of a comes back: not through a deploy, and not as a primary.
    ok_json(home, "deploy", *s)
    st = ok_json(home, "status", *s)
    roles = {x["name"]: x["role"] for x in st["regions"]}
    assert roles == {"a": "fenced", "b": "primary"}
    # Serving, but nothing replicates b until a is rebuilt: that is the one problem.
    assert [(p["code"], p["region"]) for p in st["problems"]] == [("writes_unprotected", "a")]
    fenced = next(x for x in st["regions"] if x["name"] == "a")
    assert fenced["database"]["running"] is False and fenced["bus"]["running"] is False
    assert fenced["nodes"] == [] and fenced["orphans"] == []
    assert processes_in(a_dir) == []

    # Clients on the global endpoint reach the new primary only.
    tok = ok_json(home, "token", *s, "--user", "after")["token"]
    async with Client(st["endpoint"], tok) as c:
        ack = await c.send({"after": "failover"}, to="peer")
        assert ack.seq >= 1 and c.node is not None and c.node.startswith("b-"), c.node
