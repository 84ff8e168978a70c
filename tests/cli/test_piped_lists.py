"""`--no-headers` and pipes get the table's rows only: `imctl stack ls --no-headers | awk '{print
$1}'` (its own help example) must print stack names and nothing else. The notes under a list (why a
stack is destroyed, an incomplete snapshot) are for a person at a terminal; -o json has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_contract import invoke, make_env, one_document
from tests.cli.test_hints import recorded_stack

WIDE = {"USER": "tester", "COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "imctl-home"
    kept = home / "stacks" / "old"
    (kept / "snapshots" / "20261203T100000Z-ab12").mkdir(parents=True)
    (kept / "destroyed.json").write_text("{}")
    recorded_stack(home, "dev")
    (home / "stacks" / "dev" / "snapshots" / "20261203T100000Z-cd34").mkdir(parents=True)
    return home


@pytest.mark.parametrize(
    ("tty", "flags"), [(False, ["--no-headers"]), (True, ["--no-headers"]), (False, [])]
)
def test_stack_ls_rows_only_unless_a_terminal_shows_the_table(
    home: Path, tty: bool, flags: list[str]
) -> None:
    ran = invoke(make_env(home, environ=WIDE, tty=tty), ["stack", "ls", *flags])
    assert ran.code == 0, ran
    assert "snapshot(s) kept" not in ran.stdout, ran.stdout
    if not tty:  # a terminal gets a boxed table, --no-headers or not
        rows = [line.split()[0] for line in ran.stdout.splitlines()]
        assert rows == (["dev", "old"] if flags else ["STACK", "dev", "old"])


def test_stack_ls_on_a_terminal_says_why_and_json_always_does(home: Path) -> None:
    ran = invoke(make_env(home, environ=WIDE, tty=True), ["stack", "ls"])
    assert "old (local): 1 snapshot(s) kept" in ran.stdout
    doc = one_document(invoke(make_env(home), ["stack", "ls", "-o", "json"]).stdout)
    assert [s["why"] is not None for s in doc["stacks"]] == [False, True]


@pytest.mark.parametrize(
    ("tty", "flags"), [(False, ["--no-headers"]), (True, ["--no-headers"]), (False, [])]
)
def test_snapshot_list_rows_only_unless_a_terminal_shows_the_table(
    home: Path, tty: bool, flags: list[str]
) -> None:
    ran = invoke(make_env(home, environ=WIDE, tty=tty), ["snapshot", "list", *flags])
    assert ran.code == 0, ran
    assert "incomplete" not in ran.stdout, ran.stdout


def test_snapshot_list_on_a_terminal_names_the_incomplete(home: Path) -> None:
    ran = invoke(make_env(home, environ=WIDE, tty=True), ["snapshot", "list"])
    assert "incomplete: 20261203T100000Z-cd34" in ran.stdout
    doc = one_document(invoke(make_env(home), ["snapshot", "list", "-o", "json"]).stdout)
    assert doc["incomplete"] == ["20261203T100000Z-cd34"]
