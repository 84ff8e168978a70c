"""Point-in-time restore and continuous backup on a stack with a standby region: the restore
makes a new timeline, so the standby is rebuilt from it; after a failover the archive follows
the new primary (a chain of its own) and a restore from it has what was sent since.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.targets.local.backups.layout import iso
from cli.targets.local.procs import free_port
from tests.cli.test_local_e2e import imctl_home
from tests.cli.test_pitr_e2e import commit_times, send
from tests.cli.test_snapshot_e2e import conv_state, ok_json, token

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    yield from imctl_home("imctl-pitr-sb-")


@pytest.fixture(scope="module")
def endpoint(home: Path) -> str:
    doc = ok_json(
        home, "deploy", "--region", "a", "--standby-region", "b", "--port", str(free_port())
    )
    url: str = doc["endpoint"]
    return url


async def test_restore_rebuilds_the_standby(home: Path, endpoint: str) -> None:
    tok = token(home, "sb-a")
    await send(endpoint, tok, "sb-b", 2)
    times = await commit_times(home_region(home), "d:sb-a:sb-b")
    await send(endpoint, tok, "sb-b", 2)
    doc = ok_json(home, "restore", "--to-time", iso(times[1]), "--yes")
    assert doc["standbys_rebuilt"] == ["b"]
    status = ok_json(home, "status", "--check")  # the standby streams the new timeline
    assert status["protected"], status["problems"]
    assert (await conv_state(home_region(home), "d:sb-a:sb-b"))[0] == [1, 2]


async def test_archiving_follows_a_failover(home: Path, endpoint: str) -> None:
    before = ok_json(home, "backup", "status")["chains"]
    ok_json(home, "failover", "--to-region", "b", "--yes")
    after = ok_json(home, "backup", "status", "--check")
    assert len(after["chains"]) == len(before) + 1
    assert after["chains"][-1]["reason"] == "failover"
    assert after["archiver"]["streaming"] and after["window"]["up_to_now"]
    tok = token(home, "sb-c")
    acked = await send(endpoint, tok, "sb-d", 3)
    doc = ok_json(home, "restore", "--to-time", "latest", "--yes")
    assert doc["chain"] == after["chains"][-1]["id"]
    assert doc["standbys_rebuilt"] == ["a"]
    seqs, _ = await conv_state(home_region(home, "b"), "d:sb-c:sb-d")
    assert seqs == acked


def home_region(home: Path, region: str = "a") -> Path:
    """conv_state and commit_times read the stack named dev in region "local" by default; a
    view of this home where the primary region is ``region``."""
    view = home / f".view-{region}"
    (view / "stacks" / "dev" / "regions").mkdir(parents=True, exist_ok=True)
    link = view / "stacks" / "dev" / "regions" / "local"
    if not link.exists():
        link.symlink_to(home / "stacks" / "dev" / "regions" / region)
    secrets = view / "stacks" / "dev" / "secrets.json"
    if not secrets.exists():
        secrets.symlink_to(home / "stacks" / "dev" / "secrets.json")
    return view
