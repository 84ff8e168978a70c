"""Continuous backup to an S3-compatible bucket (a moto server on loopback stands in for S3):
deploy starts the shipper, status reports it, and when the local archive is deleted a restore
to the latest time reads the bucket alone and loses no acked message it had shipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cli.targets.local.procs import free_port
from tests.cli.test_pitr_e2e import send
from tests.cli.test_snapshot_e2e import conv_state, imctl, ok_json, run_json, token

pytestmark = pytest.mark.slow

BUCKET = "imctl-pitr"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = dict(os.environ)
    scratch = tempfile.mkdtemp(prefix="imctl-aws-")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing-secret", AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=f"{scratch}/none", AWS_SHARED_CREDENTIALS_FILE=f"{scratch}/none",
        AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    boto3.session.Session().client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def home(s3: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="imctl-pitr-s3-"))
    root.chmod(0o711)
    yield root
    if (root / "stacks" / "dev").exists():
        imctl(root, "destroy", "--yes", "--delete-snapshots")
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_bad_url_or_bucket_is_refused_before_anything_starts(home: Path) -> None:
    doc = run_json(home, 2, "deploy", "--backup-url", "http://x/y", "--port", str(free_port()))
    assert "s3://" in doc["error"]["message"] + doc["error"]["hint"]
    assert not (home / "stacks" / "dev" / "regions").exists()


async def test_restore_from_the_bucket_alone(home: Path) -> None:
    url = f"s3://{BUCKET}/stacks/dev"
    endpoint = ok_json(home, "deploy", "--backup-url", url, "--port", str(free_port()))["endpoint"]
    tok = token(home, "s3-a")
    acked = await send(endpoint, tok, "s3-b", 5)
    sent_at = time.time()
    # A whole shipper pass after the last ack (passes are 5 s apart).
    deadline = time.monotonic() + 60
    while True:
        ship = ok_json(home, "backup", "status")["shipping"]
        beat = ship.get("last_pass_age_s")
        if (
            ship["running"]
            and ship["ok"]
            and beat is not None
            and time.time() - beat > sent_at + 5.5
        ):
            break
        assert time.monotonic() < deadline, ship
        time.sleep(0.5)
    assert ok_json(home, "backup", "status", "--check")["healthy"]
    shutil.rmtree(home / "stacks" / "dev" / "backups" / "chains")  # the local copy is lost
    doc = ok_json(home, "restore", "--to-time", "latest", "--yes")
    assert doc["fetched_from_bucket"] > 0
    seqs, _ = await conv_state(home, "d:s3-a:s3-b")
    assert seqs == acked
    assert datetime.fromisoformat(doc["recovered_to"]).timestamp() <= time.time()
