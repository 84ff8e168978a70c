"""Cloud `imctl scale` records its new sizes in the stack config (the next deploy keeps them)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cli import engine
from cli.errors import ExitStatus, UsageError
from cli.targets.cloud.records import write_back


def _ctx(tmp_path: Path) -> Any:
    return SimpleNamespace(
        stack="prod", cloud="aws", env=SimpleNamespace(home=tmp_path, environ={})
    )


def test_node_and_hpa_changes_are_written_with_the_bounds_the_cloud_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[dict[str, str]] = []

    def fake_set(stack: str, cloud: str, values: dict[str, str], **kw: Any) -> dict[str, str]:
        assert (stack, cloud) == ("prod", "aws")
        written.append(dict(values))
        return dict(values)

    monkeypatch.setattr(engine, "set_config", fake_set)
    doc: dict[str, Any] = {"nodegroup": {"after": {"minSize": 2, "maxSize": 9, "desiredSize": 9}}}
    assert write_back(_ctx(tmp_path), doc, 9, 4, 20) is ExitStatus.OK
    assert written == [
        {"nodeDesired": "9", "nodeMin": "2", "nodeMax": "9", "hpaMin": "4", "hpaMax": "20"}
    ]
    assert doc["config_written"] == written[0]


def test_a_failed_write_back_is_a_partial_success_with_the_command_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*a: Any, **kw: Any) -> dict[str, str]:
        raise UsageError("nodeDesired (9) must lie within nodeMin..nodeMax")

    monkeypatch.setattr(engine, "set_config", refuse)
    doc: dict[str, Any] = {}
    assert write_back(_ctx(tmp_path), doc, 9, None, None) is ExitStatus.PARTIAL
    assert doc["config_written"] is False and "nodeDesired=9" in doc["hint"]


def test_replicas_alone_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "set_config", lambda *a, **k: pytest.fail("must not write"))
    doc: dict[str, Any] = {}
    assert write_back(_ctx(tmp_path), doc, None, None, None) is ExitStatus.OK
