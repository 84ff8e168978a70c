"""The content check every cloud restore shares (cli/targets/cloud/content.py): how a digest
is fetched, which answers count, and what the comparison guarantees. Each cloud's own tests
run it end to end (AWS against a real im-server on real PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from cli.errors import DigestUnavailable
from cli.targets.cloud.content import await_digest, check_restored, digest_of, fetch_digest
from cli.targets.local.procs import free_port
from im_server import auth
from im_server.config import database_identity
from tests.cloud.digest_fixtures import FakeImAdmin, RollingKube

NS = "imctl"
TOKEN = "the-admin-token-0123456789"
URL = "postgresql://im:pw@db-old.internal:5432/im?sslmode=require"
BEFORE = {
    "messages": 10,
    "conversations": 3,
    "max_seq": 6,
    "latest_ms": 1_700_000_000_000,
    "non_dense": 0,
    "at_ms": 1_700_000_000_500,
}


def test_the_identity_names_host_port_and_database_without_credentials() -> None:
    """What a restore compares with the pod's answer: imctl and im-server share the function."""
    expected = {
        URL: (urlsplit(URL).hostname, urlsplit(URL).port or 5432, "im"),
        "postgresql://u@HOST.Example:6543/some%20db": ("host.example", 6543, "some db"),
        "postgres://u:p@10.0.0.5/im": ("10.0.0.5", 5432, "im"),
        "postgresql://u:p@[fd00::5]:5433/im?sslmode=require": ("fd00::5", 5433, "im"),
    }
    for url, (host, port, name) in expected.items():
        assert database_identity(url) == {"host": host, "port": port, "name": name}, url
    assert auth.digest_token(TOKEN) != TOKEN  # the admin token itself never crosses the wire


def test_check_restored_is_a_lower_bound_plus_density() -> None:
    more = {**BEFORE, "messages": 12, "latest_ms": BEFORE["latest_ms"] + 5}
    ok = check_restored(BEFORE, more)
    assert ok["ok"] is True and ok["problems"] == [] and ok["before"] == BEFORE
    assert "committed before the snapshot was requested" in ok["basis"]

    lost = check_restored(BEFORE, {**BEFORE, "messages": 9, "latest_ms": 1})
    assert lost["ok"] is False
    assert lost["problems"] == [
        "messages: 9 restored, 10 before the snapshot",
        "the newest message's time (ms): 1 restored, 1700000000000 before the snapshot",
    ]
    gaps = check_restored(BEFORE, {**more, "non_dense": 2})
    assert gaps["problems"] == ["2 conversation(s) whose seqs are not exactly 1..last_seq"]

    # Without a recorded digest only density can be checked, and the result says so.
    partial = check_restored(None, {**BEFORE, "messages": 0})
    assert partial["ok"] is True and partial["before"] is None
    assert "density only" in partial["basis"]
    assert check_restored(None, {**BEFORE, "non_dense": 1})["ok"] is False


def test_a_half_recorded_digest_is_no_digest() -> None:
    assert digest_of({k: str(v) for k, v in BEFORE.items()}) == BEFORE
    assert digest_of({**BEFORE, "extra": "x"}) == BEFORE
    for broken in (
        {k: v for k, v in BEFORE.items() if k != "max_seq"},
        {**BEFORE, "messages": "many"},
        {**BEFORE, "messages": -1},
        ["messages"],
        None,
    ):
        assert digest_of(broken) is None, broken


Admin = tuple[RollingKube, FakeImAdmin]


@pytest.fixture
def admin() -> Iterator[Admin]:
    kube = RollingKube()
    kube.secrets[(NS, "im-server")] = {"database-url": URL, "admin-token": TOKEN}
    fake = FakeImAdmin(kube, NS, TOKEN)
    yield kube, fake
    fake.stop()


def test_fetch_digest_and_what_failures_are_worth_asking_again(admin: Admin) -> None:
    _kube, fake = admin
    doc = fetch_digest(fake.endpoint, TOKEN, 5)
    assert digest_of(doc) is not None and doc["database"]["host"] == "db-old.internal"
    assert fetch_digest(f"http://{fake.endpoint}/", TOKEN, 5)["messages"] == 10

    with pytest.raises(DigestUnavailable) as err:
        fetch_digest(fake.endpoint, "another-admin-token-000", 5)
    assert err.value.transient is False and "HTTP 401" in err.value.message
    fake.fail_with = 503
    with pytest.raises(DigestUnavailable) as err:
        fetch_digest(fake.endpoint, TOKEN, 5)
    assert err.value.transient is True and "HTTP 503" in err.value.message
    fake.fail_with = 404
    with pytest.raises(DigestUnavailable) as err:
        fetch_digest(fake.endpoint, TOKEN, 5)
    assert err.value.transient is False and "older than this imctl" in err.value.message
    with pytest.raises(DigestUnavailable) as err:
        fetch_digest(f"127.0.0.1:{free_port()}", TOKEN, 5)
    assert err.value.transient is True and "unreachable" in err.value.message


def test_only_an_answer_from_a_pod_on_the_restored_database_counts(admin: Admin) -> None:
    kube, fake = admin
    new_url = URL.replace("db-old", "db-restored")
    kube.secrets[(NS, "im-server")]["database-url"] = new_url
    said: list[str] = []
    # The roll lands a moment later: until then the answers come from the old database.
    timer = threading.Timer(0.3, kube.restart_deployment, (NS, "im-server"))
    timer.start()
    try:
        doc = await_digest(
            fake.endpoint,
            TOKEN,
            expect=database_identity(new_url),
            fresh_after=None,
            budget=10,
            interval=0.02,
            progress=said.append,
            what="restored content",
        )
    finally:
        timer.cancel()
    assert doc["database"]["host"] == "db-restored.internal"
    assert said == [
        "restored content: node im-server-pod-1 reads db-old.internal:5432/im, not"
        " db-restored.internal:5432/im; asking again"
    ]


def test_in_place_only_pods_started_after_the_roll_count(admin: Admin) -> None:
    _kube, fake = admin
    fake.started_at -= 60  # a pod that has been up a minute: from before the roll
    with pytest.raises(DigestUnavailable) as err:
        await_digest(
            fake.endpoint,
            TOKEN,
            expect=database_identity(URL),
            fresh_after=fake.started_at + 60,
            budget=0.2,
            interval=0.02,
            progress=lambda _: None,
            what="restored content",
        )
    assert "started before the roll" in err.value.message and err.value.transient


def test_a_lasting_failure_is_not_asked_again(admin: Admin) -> None:
    _kube, fake = admin
    with pytest.raises(DigestUnavailable):
        await_digest(
            fake.endpoint,
            "not-the-admin-token-00",
            expect=None,
            fresh_after=None,
            budget=30,
            interval=0.02,
            progress=lambda _: None,
            what="content digest",
        )
    assert fake.requests == 1
