"""The recoverable window's checks and ``backup status``'s judgement
(cli/targets/cloud/recovery.py), offline: the same rules on every cloud, whatever its API said."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cli.errors import PreconditionFailed, UsageError
from cli.targets.cloud.recovery import (
    STALE_AFTER,
    RecoveryWindow,
    check_to_time,
    parse_utc,
    status_doc,
    utc_text,
)

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
WINDOW = RecoveryWindow(
    first=NOW - timedelta(days=7),
    last=NOW - timedelta(minutes=4),
    enabled=True,
    retention_days=7,
    where="the test's backups",
    last_base_backup=NOW - timedelta(hours=10),
    inspect="look at the test's backups",
)


def test_times_on_the_edges_of_the_window_are_accepted() -> None:
    for when in (WINDOW.first, WINDOW.last, None):
        check_to_time(WINDOW, when, NOW)


@pytest.mark.parametrize(
    ("when", "why"),
    [
        (NOW - timedelta(days=7, seconds=1), "is outside the recoverable window"),
        (NOW - timedelta(minutes=3), "is outside the recoverable window"),  # after the last
        (NOW + timedelta(seconds=1), "is in the future"),
    ],
)
def test_times_the_backups_cannot_reach_are_refused_with_the_window(
    when: datetime, why: str
) -> None:
    with pytest.raises(PreconditionFailed) as err:
        check_to_time(WINDOW, when, NOW)
    assert why in err.value.message
    assert f"{utc_text(WINDOW.first or NOW)} .. {utc_text(WINDOW.last or NOW)}" in (
        err.value.message
    )


def test_no_window_refuses_even_the_latest_and_a_naive_time_is_a_usage_error() -> None:
    off = replace(WINDOW, enabled=False)
    with pytest.raises(PreconditionFailed, match="no point-in-time restore is possible"):
        check_to_time(off, None, NOW)
    with pytest.raises(UsageError, match="time zone"):
        check_to_time(WINDOW, NOW.replace(tzinfo=None), NOW)


@pytest.mark.parametrize(
    ("window", "state", "codes"),
    [
        (WINDOW, "ok", []),
        (replace(WINDOW, last=NOW - STALE_AFTER), "ok", []),
        (
            replace(WINDOW, last=NOW - STALE_AFTER - timedelta(seconds=1)),
            "behind",
            ["archiving_behind"],
        ),
        (replace(WINDOW, last=None), "behind", ["archiving_behind"]),
        (replace(WINDOW, enabled=False, retention_days=0), "off", ["backups_off"]),
    ],
)
def test_status_judges_the_window(window: RecoveryWindow, state: str, codes: list[str]) -> None:
    doc = status_doc(window, NOW, "dev", "gcp")
    assert doc["archiving"]["state"] == state
    assert [p["code"] for p in doc["problems"]] == codes
    assert doc["healthy"] is (not codes)
    if codes == ["backups_off"]:
        assert doc["problems"][0]["next_command"].startswith("imctl deploy -s dev --cloud gcp")
    elif codes:
        assert doc["problems"][0]["next_command"] == window.inspect


def test_status_document_names_the_window_in_utc() -> None:
    doc = status_doc(WINDOW, NOW, "dev", "aws")
    assert doc["window"] == {"first": "2026-11-26T12:00:00Z", "last": "2026-12-03T11:56:00Z"}
    assert doc["last_base_backup"] == "2026-12-03T02:00:00Z"
    assert doc["archiving"]["last_age_s"] == 240.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T11:56:00Z", datetime(2026, 12, 3, 11, 56, tzinfo=UTC)),
        ("2026-12-03T11:56:00.123456789Z", datetime(2026, 12, 3, 11, 56, 0, 123456, tzinfo=UTC)),
        ("2026-12-03T19:56:00+08:00", datetime(2026, 12, 3, 11, 56, tzinfo=UTC)),
        (None, None),
    ],
)
def test_parse_utc(text: str | None, expected: datetime | None) -> None:
    assert parse_utc(text) == expected
