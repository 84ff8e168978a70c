"""Shared by the cloud tests."""

from __future__ import annotations

import pytest

from cli.targets.cloud import content


@pytest.fixture(autouse=True)
def _short_content_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """How long snapshot create and restore keep asking /admin/digest: seconds, not the real
    15 s and 2 min, so a test of an endpoint that never answers does not wait for nothing."""
    monkeypatch.setattr(content, "SNAPSHOT_DIGEST_SECONDS", 0.3)
    monkeypatch.setattr(content, "CONTENT_SETTLE_SECONDS", 1.0)
