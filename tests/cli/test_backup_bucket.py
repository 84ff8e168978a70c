"""The backup bucket and the shipper against a moto S3 server on loopback: a real HTTP endpoint,
as the shipper process meets in use (moto's in-process mock would not reach a subprocess).

The archive is built by hand in the layout the local target's continuous backup writes; file
contents are a few bytes, since nothing here reads them as WAL.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.errors import (
    ContentMismatch,
    CredentialsError,
    ExitStatus,
    PreconditionFailed,
    PrerequisiteMissing,
    ResourceFailure,
    UsageError,
)
from cli.targets.local.backups import bucket as bucket_module
from cli.targets.local.backups.bucket import Bucket, parse_url
from cli.targets.local.backups.shipper import STATE, STATUS, Shipper
from cli.targets.local.procs import free_port
from tests.cli.s3_fixtures import UNSET, aws_variables, moto_s3

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "imctl/dev"
SEG3 = "000000010000000000000003"
SEG4 = "000000010000000000000004"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture
def aws_env(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_variables(endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)


def _raw() -> Any:
    """A plain client, for what the test does behind the Bucket's back."""
    import boto3

    return boto3.session.Session().client("s3")


class RecordingBucket(Bucket):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.put: list[str] = []

    def put_file(self, path: Path, key: str, *, sha256: str | None = None) -> str:
        self.put.append(key)
        return super().put_file(path, key, sha256=sha256)


@pytest.fixture
def bucket(aws_env: None) -> RecordingBucket:
    name = f"imctl-{uuid.uuid4().hex[:12]}"  # moto's state outlives a test: one bucket each
    _raw().create_bucket(Bucket=name)
    return RecordingBucket(name)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _archive(root: Path) -> None:
    """One chain: a history file, two segments, a complete base backup, one still being written,
    and the files around them that are not shipped."""
    chain = root / "chains" / "c1"
    _write(chain / "chain.json", b'{"chain": "c1"}')
    _write(chain / "wal" / SEG3, b"segment 3")
    _write(chain / "wal" / "000000010000000000000002", b"segment 2")
    _write(chain / "wal" / "00000002.history", b"1\t0/3000000\tno recovery target\n")
    _write(chain / "wal" / f"{SEG3}.tmp", b"not a WAL name")
    for name in ("base.tar", "pg_wal.tar", "backup_manifest"):
        _write(chain / "base" / "b1" / name, name.encode())
    _write(chain / "base" / "b1.json", b"{}")
    _write(chain / "base" / "b2" / "base.tar", b"half written")
    _write(root / "pg_receivewal.pid", b"123")
    _write(root / "logs" / "shipper.log", b"log")


def _keys(bucket: Bucket) -> set[str]:
    return {k.removeprefix(PREFIX + "/") for k in bucket.list(PREFIX + "/")}


# --- URLs -------------------------------------------------------------------------------------


def test_parse_url_gives_bucket_and_prefix() -> None:
    assert parse_url("s3://my-backups") == ("my-backups", "")
    assert parse_url("s3://my-backups/") == ("my-backups", "")
    assert parse_url("s3://my.backups/imctl/dev/") == ("my.backups", "imctl/dev")


@pytest.mark.parametrize(
    "url",
    [
        "https://my-backups/imctl",
        "my-backups/imctl",
        "s3:/my-backups",
        "s3://",
        "s3://ab",
        "s3://My_Backups",
        "s3://-backups",
        "s3://my-backups/a//b",
        "s3://my-backups/a/../b",
        "s3://my-backups/a?versionId=1",
        "s3://AKIAEXAMPLE:hunter2@my-backups/imctl",
    ],
)
def test_parse_url_refuses_what_is_not_a_bucket_url(url: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_url(url)
    assert err.value.status is ExitStatus.USAGE
    assert "s3://BUCKET/PREFIX" in err.value.hint
    assert "hunter2" not in err.value.message + err.value.hint


# --- the bucket -------------------------------------------------------------------------------


def test_put_then_get_round_trips_with_its_sha256(bucket: Bucket, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    src = _write(tmp_path / "src" / "base.tar", data)
    digest = bucket.put_file(src, "p/base.tar")
    assert digest == hashlib.sha256(data).hexdigest()
    listed = bucket.list("p/", with_sha256=True)
    assert list(listed) == ["p/base.tar"]
    assert (listed["p/base.tar"].size, listed["p/base.tar"].sha256) == (len(data), digest)
    assert bucket.list("p/")["p/base.tar"].sha256 is None  # a plain listing has no metadata
    dest = tmp_path / "dest" / "base.tar"
    dest.parent.mkdir()
    assert bucket.get_file("p/base.tar", dest) == digest
    assert dest.read_bytes() == data
    assert bucket.head("p/nothing") is None


def test_a_replaced_object_is_refused_and_leaves_no_file(bucket: Bucket, tmp_path: Path) -> None:
    src = _write(tmp_path / "seg", b"the real segment")
    digest = bucket.put_file(src, "p/seg")
    _raw().put_object(Bucket=bucket.name, Key="p/seg", Body=b"ransomware",
                      Metadata={"sha256": digest})  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ContentMismatch, match=f"s3://{bucket.name}/p/seg is damaged") as err:
        bucket.get_file("p/seg", out / "seg")
    assert err.value.status is ExitStatus.PRECONDITION
    assert list(out.iterdir()) == []


def test_listing_and_deleting_go_past_one_page(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3's limits are 1000 keys a page and a delete call; 2 shows the same loops with 5 objects.
    monkeypatch.setattr(bucket_module, "LIST_PAGE", 2)
    monkeypatch.setattr(bucket_module, "DELETE_BATCH", 2)
    calls: list[str] = []
    bucket._client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    raw = _raw()
    keys = [f"many/{i}" for i in range(5)]
    for key in keys:
        raw.put_object(Bucket=bucket.name, Key=key, Body=b"")
    assert sorted(bucket.list("many/")) == keys
    assert calls == ["ListObjectsV2"] * 3
    calls.clear()
    bucket.delete(iter(keys))
    assert calls == ["DeleteObjects"] * 3
    assert bucket.list("many/") == {}


def test_a_missing_bucket_is_a_clear_error(aws_env: None) -> None:
    with pytest.raises(PreconditionFailed, match="'imctl-no-such-bucket' does not exist"):
        Bucket("imctl-no-such-bucket").check_access()


def test_no_credentials_is_a_credentials_error(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError, match="no AWS credentials") as err:
        Bucket("imctl-any").check_access()
    assert "AWS_ACCESS_KEY_ID" in err.value.hint


def test_an_unreachable_endpoint_is_a_resource_failure(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ResourceFailure, match="could not reach the bucket") as err:
        Bucket("imctl-any").check_access()
    assert "testing-secret" not in err.value.message + err.value.hint
    assert "AWS_ENDPOINT_URL" in err.value.hint


def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
    with pytest.raises(PrerequisiteMissing) as err:
        Bucket("imctl-any")
    assert "pip install 'imctl[backup]'" in err.value.hint


# --- the shipper ------------------------------------------------------------------------------


def test_a_pass_ships_complete_files_and_base_backups_last_file_last(
    bucket: RecordingBucket, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    _archive(root)
    report = Shipper(root, bucket, PREFIX).run_once()
    wal = "chains/c1/wal"
    base = "chains/c1/base/b1"
    expected = {
        "chains/c1/chain.json",
        f"{wal}/00000002.history",
        f"{wal}/000000010000000000000002",
        f"{wal}/{SEG3}",
        *(f"{base}/{n}" for n in ("base.tar", "pg_wal.tar", "backup_manifest")),
        f"{base}.json",
    }
    assert _keys(bucket) == expected
    assert set(report.uploaded) == expected and report.pending == 0
    base_puts = [k for k in bucket.put if "/base/b1" in k]
    assert len(base_puts) == 4 and base_puts[-1] == f"{PREFIX}/{base}.json"

    bucket.put.clear()
    assert Shipper(root, bucket, PREFIX).run_once().uploaded == []
    assert bucket.put == []

    _write(root / "chains" / "c1" / "base" / "b2.json", b"{}")
    report = Shipper(root, bucket, PREFIX).run_once()
    assert report.uploaded == ["chains/c1/base/b2/base.tar", "chains/c1/base/b2.json"]


def test_the_partial_segment_ships_when_it_changes_and_goes_when_complete(
    bucket: RecordingBucket, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    partial = _write(root / "chains" / "c1" / "wal" / f"{SEG4}.partial", b"first records")
    shipper = Shipper(root, bucket, PREFIX)
    key = f"{PREFIX}/chains/c1/wal/{SEG4}.partial"
    assert shipper.run_once().uploaded == [f"chains/c1/wal/{SEG4}.partial"]
    assert shipper.run_once().uploaded == []  # unchanged: not sent again
    partial.write_bytes(b"first records, more records")
    assert shipper.run_once().uploaded == [f"chains/c1/wal/{SEG4}.partial"]
    got = tmp_path / "got"
    bucket.get_file(key, got)
    assert got.read_bytes() == b"first records, more records"
    assert bucket.put == [key, key]
    assert list(root.glob(".shipper*")) == []  # the upload's copy is gone

    partial.rename(partial.with_name(SEG4))
    report = shipper.run_once()
    assert report.uploaded == [f"chains/c1/wal/{SEG4}"]
    assert report.deleted == [f"chains/c1/wal/{SEG4}.partial"]
    assert _keys(bucket) == {f"chains/c1/wal/{SEG4}"}


def test_a_file_pruned_during_a_pass_is_skipped(bucket: RecordingBucket, tmp_path: Path) -> None:
    root = tmp_path / "backups"
    wal = root / "chains" / "c1" / "wal"
    _write(wal / "000000010000000000000002", b"segment 2")
    _write(wal / SEG3, b"segment 3")

    class Pruning(RecordingBucket):
        def put_file(self, path: Path, key: str, *, sha256: str | None = None) -> str:
            (wal / SEG3).unlink(missing_ok=True)  # retention removes it after the scan
            return super().put_file(path, key, sha256=sha256)

    report = Shipper(root, Pruning(bucket.name), PREFIX).run_once()
    assert report.uploaded == ["chains/c1/wal/000000010000000000000002"]
    assert report.pending == 0


@pytest.mark.parametrize("state", [None, b"{not json", b'{"version": 1, "shipped": []}'])
def test_without_a_usable_state_file_the_bucket_is_listed_not_re_uploaded(
    bucket: RecordingBucket, tmp_path: Path, state: bytes | None
) -> None:
    root = tmp_path / "backups"
    _archive(root)
    _write(root / "chains" / "c1" / "wal" / f"{SEG4}.partial", b"some records")
    Shipper(root, bucket, PREFIX).run_once()
    if state is None:
        (root / STATE).unlink()
    else:
        (root / STATE).write_bytes(state)
    bucket.put.clear()
    report = Shipper(root, bucket, PREFIX).run_once()
    assert (report.uploaded, bucket.put) == ([], [])
    assert json.loads((root / STATE).read_text())["last"]["segment"] == SEG3


def test_the_status_file_says_what_was_shipped_and_what_is_pending(
    bucket: RecordingBucket, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    _archive(root)
    _write(root / "chains" / "c1" / "wal" / f"{SEG4}.partial", b"some records")
    shipper = Shipper(root, bucket, PREFIX)
    shipper.write_status("not yet")
    before = json.loads((root / STATUS).read_text())
    assert (before["ok"], before["error"], before["pending"]) == (False, "not yet", 8)
    shipper.run_once()
    shipper.write_status(None)
    after = json.loads((root / STATUS).read_text())
    assert (after["ok"], after["error"], after["pending"]) == (True, None, 0)
    assert after["last_shipped"] == {"segment": SEG3, "partial": f"{SEG4}.partial", "base": "b1"}
    assert after["time"].endswith("+00:00")


# --- the process ------------------------------------------------------------------------------


def _shipper_process(root: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.targets.local.backups.shipper",
         "--root", str(root), "--url", url, "--interval", "0.2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_the_process_ships_and_exits_0_on_sigterm(bucket: Bucket, tmp_path: Path) -> None:
    root = tmp_path / "backups"
    _write(root / "chains" / "c1" / "wal" / SEG3, b"segment 3")
    proc = _shipper_process(root, f"s3://{bucket.name}/{PREFIX}")
    try:
        deadline = time.monotonic() + 20
        while f"chains/c1/wal/{SEG3}" not in _keys(bucket):
            assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
            time.sleep(0.1)
        while not (root / STATUS).exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "shipped 1 file(s)" in out and "stopped" in out
    status = json.loads((root / STATUS).read_text())
    assert (status["ok"], status["last_shipped"]["segment"]) == (True, SEG3)


def test_the_process_exits_with_a_clear_error_when_the_bucket_is_missing(
    aws_env: None, tmp_path: Path
) -> None:
    root = tmp_path / "backups"
    _write(root / "chains" / "c1" / "wal" / SEG3, b"segment 3")
    proc = _shipper_process(root, "s3://imctl-no-such-bucket/x")
    try:
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ExitStatus.PRECONDITION, out
    assert "'imctl-no-such-bucket' does not exist" in out
    status = json.loads((root / STATUS).read_text())
    assert status["ok"] is False and "does not exist" in status["error"]
    assert status["pending"] == 1
