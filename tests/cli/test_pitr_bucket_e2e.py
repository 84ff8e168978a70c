"""Continuous backup to an S3-compatible bucket (a moto server on loopback stands in for S3):
deploy starts the shipper, status reports it, and when the local archive is deleted a restore
to the latest time reads the bucket alone and loses no acked message it had shipped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cli.targets.local.backups.shipping import INTERVAL
from cli.targets.local.procs import free_port
from tests.cli.s3_fixtures import UNSET, aws_variables, moto_s3
from tests.cli.test_local_e2e import imctl_home
from tests.cli.test_pitr_e2e import commit_times, send
from tests.cli.test_snapshot_e2e import conv_state, ok_json, run_json, token

pytestmark = pytest.mark.slow

BUCKET = "imctl-pitr"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server, and the AWS variables the imctl processes (and their shipper) inherit."""
    import boto3

    with moto_s3() as endpoint, pytest.MonkeyPatch.context() as env:
        for name in UNSET:
            env.delenv(name, raising=False)
        for name, value in aws_variables(endpoint, tmp_path_factory.mktemp("aws")).items():
            env.setenv(name, value)
        boto3.session.Session().client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def home(s3: str) -> Iterator[Path]:
    yield from imctl_home("imctl-pitr-s3-")


def wait_shipped(home: Path, after: float) -> None:
    """Until a whole shipper pass has started after ``after`` (passes are INTERVAL apart; the
    heartbeat says when the last one ended)."""
    deadline = time.monotonic() + 60
    while True:
        ship = ok_json(home, "backup", "status")["shipping"]
        age = ship.get("last_pass_age_s")
        passed = age is not None and time.time() - age > after + INTERVAL + 0.5
        if ship["running"] and ship["ok"] and passed:
            return
        assert time.monotonic() < deadline, ship
        time.sleep(0.5)


def test_a_bad_url_or_bucket_is_refused_before_anything_starts(home: Path) -> None:
    doc = run_json(home, 2, "deploy", "--backup-url", "http://x/y", "--port", str(free_port()))
    assert "s3://" in doc["error"]["message"] + doc["error"]["hint"]
    assert not (home / "stacks" / "dev" / "regions").exists()
    missing = "s3://imctl-no-such-bucket/x"
    doc = run_json(home, 10, "deploy", "--backup-url", missing, "--port", str(free_port()))
    assert "imctl-no-such-bucket" in doc["error"]["message"]
    assert not (home / "stacks" / "dev" / "config.json").exists()  # no config names that URL


async def test_restore_from_the_bucket_alone(home: Path) -> None:
    url = f"s3://{BUCKET}/stacks/dev"
    endpoint = ok_json(home, "deploy", "--backup-url", url, "--port", str(free_port()))["endpoint"]
    tok = token(home, "s3-a")
    acked = await send(endpoint, tok, "s3-b", 5)
    wait_shipped(home, time.time())
    assert ok_json(home, "backup", "status", "--check")["healthy"]
    shutil.rmtree(home / "stacks" / "dev" / "backups" / "chains")  # the local copy is lost
    doc = ok_json(home, "restore", "--to-time", "latest", "--yes")
    assert doc["fetched_from_bucket"] > 0
    conv = "d:s3-a:s3-b"
    seqs, _ = await conv_state(home, conv)
    assert seqs == acked
    assert datetime.fromisoformat(doc["recovered_to"]) == (await commit_times(home, conv))[-1]


async def test_a_destroyed_stacks_history_comes_back_from_the_bucket(home: Path) -> None:
    """destroy --delete-snapshots deletes the local backups, never the bucket's copy: a stack
    deployed again with the same URL restores a time of the old history from it."""
    url = f"s3://{BUCKET}/stacks/dev"
    endpoint = ok_json(home, "status")["endpoint"]
    acked = await send(endpoint, token(home, "s3-c"), "s3-d", 3)
    wait_shipped(home, time.time())
    # The old chain's window ends at its newest commit: the last of these.
    target = (await commit_times(home, "d:s3-c:s3-d"))[-1]
    ok_json(home, "destroy", "--yes", "--delete-snapshots")
    assert not (home / "stacks" / "dev").exists()
    ok_json(home, "deploy", "--backup-url", url, "--port", str(free_port()))
    doc = ok_json(home, "restore", "--to-time", target.isoformat(), "--yes")
    assert doc["fetched_from_bucket"] > 0
    assert (await conv_state(home, "d:s3-c:s3-d"))[0] == acked
