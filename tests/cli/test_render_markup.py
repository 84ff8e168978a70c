"""Warnings in text output read as words: the colour tag is markup, the warning's own text is
not (a "[b]" in a message is shown as typed)."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from rich.console import Console

from cli.commands import failover, restore, snapshot

WARNING = "replica lag [unknown] for region b"

_Render = Callable[[Any, Mapping[str, Any]], None]


def _failover_doc() -> dict[str, Any]:
    return {
        "mode": "forced", "cloud": "aws", "from_region": "a", "to_region": "b",
        "rto_seconds": 1.0, "promote_seconds": 0.5, "data_loss_bound": {"acked_messages": 0},
        "fenced": True, "rejoined": False,
        "endpoint": "wss://x", "warnings": [WARNING], "next_steps": [], "dry_run": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("render", "doc"),
    [
        (failover._render, _failover_doc()),
        (restore._render_cloud_restore, {"warnings": [WARNING]}),
        (snapshot._render_create, {"id": "snap-1", "status": "available", "warnings": [WARNING]}),
    ],
)
def test_warnings_print_as_text_not_markup(render: _Render, doc: dict[str, Any]) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    try:
        render(console, doc)
    except KeyError:
        pytest.fail("the document under test lacks a key the renderer needs")
    text = out.getvalue()
    assert f"warning {WARNING}" in text
    assert "[yellow]" not in text
