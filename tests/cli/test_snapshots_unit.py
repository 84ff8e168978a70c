"""The target-neutral half of verified restore: digest comparison, torn detection, the manifest's
self-checksum and the deadline. No processes; the end-to-end file runs the real thing."""

from __future__ import annotations

import time

import pytest

from cli.deadline import Deadline, poll
from cli.errors import OperationTimeout
from cli.snapshots import (
    ContentDigest,
    ConvDigest,
    diff_content,
    manifest_digest,
    torn_conversations,
)


def _digest(**convs: ConvDigest) -> ContentDigest:
    return ContentDigest(conversations=dict(convs), members=4, members_md5="m" * 32)


def test_identical_content_has_no_differences_and_round_trips_through_json() -> None:
    d = _digest(a=ConvDigest(3, 3, 3, "x" * 32), b=ConvDigest(0, 0, 0, "y" * 32))
    assert diff_content(d, d) == []
    again = ContentDigest.from_json(d.to_json())
    assert again == d and again.messages == 3
    assert d.to_json()["messages"] == 3 and d.to_json()["conversation_count"] == 2


def test_every_kind_of_difference_is_named() -> None:
    expected = _digest(a=ConvDigest(3, 3, 3, "x" * 32), b=ConvDigest(1, 1, 1, "y" * 32))
    body_changed = _digest(a=ConvDigest(3, 3, 3, "z" * 32), b=ConvDigest(1, 1, 1, "y" * 32))
    (msg,) = diff_content(expected, body_changed)
    assert "'a'" in msg and "md5" in msg

    missing = _digest(a=ConvDigest(3, 3, 3, "x" * 32))
    assert any("missing" in p for p in diff_content(expected, missing))
    assert any("not in the snapshot" in p for p in diff_content(missing, expected))

    members = ContentDigest(expected.conversations, members=3, members_md5="n" * 32)
    assert any("memberships" in p for p in diff_content(expected, members))


def test_long_difference_lists_are_capped() -> None:
    expected = _digest(**{f"c{i}": ConvDigest(1, 1, 1, "x" * 32) for i in range(50)})
    actual = _digest(**{f"c{i}": ConvDigest(1, 1, 1, "z" * 32) for i in range(50)})
    problems = diff_content(expected, actual)
    assert len(problems) == 11 and "40 more" in problems[-1]


def test_torn_conversations_are_the_ones_whose_seqs_are_not_1_to_last_seq() -> None:
    d = _digest(
        ok=ConvDigest(5, 5, 5, "x" * 32),
        gap=ConvDigest(4, 5, 5, "x" * 32),  # a seq is missing
        ahead=ConvDigest(5, 5, 6, "x" * 32),  # last_seq counted a message the dump lacks
        empty=ConvDigest(0, 0, 0, "x" * 32),
    )
    torn = torn_conversations(d)
    assert len(torn) == 2 and any("'gap'" in t for t in torn) and any("'ahead'" in t for t in torn)


def test_manifest_digest_ignores_its_own_field_and_sees_any_edit() -> None:
    m = {"id": "x", "files": [{"name": "db.dump", "size": 1, "sha256": "a"}]}
    m["manifest_sha256"] = manifest_digest(m)
    assert manifest_digest(m) == m["manifest_sha256"]
    edited = {**m, "files": [{"name": "db.dump", "size": 2, "sha256": "a"}]}
    assert manifest_digest(edited) != m["manifest_sha256"]


def test_deadline() -> None:
    unlimited = Deadline(None)
    assert unlimited.remaining() > 3600 and not unlimited.expired()
    unlimited.check("anything")
    short = Deadline(0.01)
    time.sleep(0.02)  # the thing under test is the passage of time itself
    assert short.expired() and short.remaining() == 0.0
    with pytest.raises(OperationTimeout, match=r"timed out \(0.01s\) before the switch"):
        short.check("before the switch")


def test_a_wait_outside_an_operation_ends_on_its_own_answer() -> None:
    # The local process waits (a port, a process exiting) have no --timeout, only their limit,
    # and each keeps the error (or the False) it gave before it was a poll.
    reads = iter(range(1000))
    left = poll(
        lambda: next(reads),
        done=lambda n: n < 0,
        state=str,
        what="counting",
        limit=0.05,
        interval=0.01,
        timed_out=lambda n: -n,
    )
    assert left < 0
    with pytest.raises(OperationTimeout, match="counting: still 0 after 0s; the outcome is"):
        poll(lambda: 0, done=bool, state=str, what="counting", limit=0.0, interval=0.01)
