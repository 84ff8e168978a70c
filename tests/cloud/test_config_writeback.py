"""Cloud operations done outside Pulumi are recorded in the stack config, so the next deploy
neither undoes a failover nor points the workload away from a restored database.

Against the stand-in ``pulumi`` CLI: the config it stores and the outputs it generates follow
the same ``failovers`` rule as the real program (tests/stacks/test_failover_roles.py).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cli import engine
from cli.errors import ExitStatus, UsageError
from cli.targets.cloud.records import if_promoted, record_restore, record_roles
from tests.cloud.fake_pulumi import FakePulumi

EAST, WEST = "us-east-1", "us-west-2"


@pytest.fixture
def fake(tmp_path: Path) -> FakePulumi:
    fake = FakePulumi.create(tmp_path)
    engine.deploy(
        "dev", "aws", {"region": EAST, "standbyRegion": WEST}, home=fake.home, env=fake.env
    )
    return fake


def _ctx(fake: FakePulumi) -> Any:
    return SimpleNamespace(
        stack="dev", cloud="aws", env=SimpleNamespace(home=fake.home, environ=fake.env)
    )


def _roles(fake: FakePulumi) -> tuple[str, str | None, dict[str, str], Any]:
    cloud = engine.outputs("dev", home=fake.home, env=fake.env).cloud("dev")
    roles = {name: r.role for name, r in cloud.regions.items()}
    return cloud.primary_region, cloud.standby_region, roles, cloud.extra.get("roles_note")


def test_failover_is_counted_and_ops_see_the_new_writer_before_any_deploy(
    fake: FakePulumi,
) -> None:
    doc: dict[str, Any] = {}
    assert record_roles(_ctx(fake), WEST, doc) is ExitStatus.OK
    details = doc["details"]
    assert details["config_written"] == {"failovers": "1"} and details["failovers"] == 1
    assert "imctl deploy -s dev" in doc["next_steps"][0]
    assert engine.config_values("dev", home=fake.home, env=fake.env)["failovers"] == "1"
    # The deployed outputs still say east; every command reads the config's roles instead.
    primary, standby, roles, note = _roles(fake)
    assert (primary, standby) == (WEST, EAST)
    assert roles == {WEST: "primary", EAST: "standby"}
    assert "1 failover(s)" in note and "imctl deploy" in note


def test_a_resumed_failover_is_not_counted_twice(fake: FakePulumi) -> None:
    record_roles(_ctx(fake), WEST, {})
    doc: dict[str, Any] = {}
    assert record_roles(_ctx(fake), WEST, doc) is ExitStatus.OK
    assert doc["details"]["failovers"] == 1 and doc["details"]["config_written"] == {}


def test_the_next_deploy_keeps_the_writer_and_failing_back_counts_again(fake: FakePulumi) -> None:
    record_roles(_ctx(fake), WEST, {})
    # A plain redeploy (no --region flags) keeps the count; the outputs now agree. It refreshes
    # first: the state still shows the promoted instance as a replica.
    doc = engine.deploy("dev", "aws", {}, home=fake.home, env=fake.env)
    assert doc["refreshed"] is True and fake.find("up")[-1]["argv"].count("--refresh") == 1
    assert engine.deploy("dev", "aws", {}, home=fake.home, env=fake.env)["refreshed"] is False
    primary, standby, _, note = _roles(fake)
    assert (primary, standby, note) == (WEST, EAST, None)
    record_roles(_ctx(fake), EAST, {})
    assert engine.config_values("dev", home=fake.home, env=fake.env)["failovers"] == "2"
    assert _roles(fake)[:2] == (EAST, WEST)


def test_a_failed_record_is_a_partial_success_with_the_fix(
    fake: FakePulumi, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*a: Any, **kw: Any) -> dict[str, str]:
        raise UsageError("the backend is read-only")

    monkeypatch.setattr(engine, "set_config", refuse)
    doc: dict[str, Any] = {}
    assert record_roles(_ctx(fake), WEST, doc) is ExitStatus.PARTIAL
    assert doc["details"]["config_written"] is False
    assert "failovers" in doc["details"]["hint"] and WEST in doc["details"]["hint"]


def test_a_restore_to_a_new_instance_is_recorded_and_in_place_clears_it(fake: FakePulumi) -> None:
    doc: dict[str, Any] = {}
    assert record_restore(_ctx(fake), "new", "imctl-db-r1", doc) is ExitStatus.OK
    assert doc["config_written"] == {"restoredInstance": "imctl-db-r1"}
    assert "refuse" in doc["next_steps"][0] and "restoredInstance=" in doc["next_steps"][0]
    config = engine.config_values("dev", home=fake.home, env=fake.env)
    assert config["restoredInstance"] == "imctl-db-r1"
    note = engine.outputs("dev", home=fake.home, env=fake.env).cloud("dev").extra["restore_note"]
    assert "imctl-db-r1" in note and "deploys refuse" in note
    # Other write-backs still work while it is set (scale, failover).
    assert record_roles(_ctx(fake), WEST, {}) is ExitStatus.OK
    doc = {}
    assert record_restore(_ctx(fake), "in-place", "imctl-us-east-1-db", doc) is ExitStatus.OK
    assert doc["config_written"] == {"restoredInstance": ""}
    assert "next_steps" not in doc


def test_a_failed_restore_record_says_how_to_keep_deploys_from_undoing_it(
    fake: FakePulumi, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*a: Any, **kw: Any) -> dict[str, str]:
        raise UsageError("the backend is read-only")

    monkeypatch.setattr(engine, "set_config", refuse)
    doc: dict[str, Any] = {}
    assert record_restore(_ctx(fake), "new", "imctl-db-r1", doc) is ExitStatus.PARTIAL
    assert doc["hint"].startswith("record it before any deploy: imctl deploy --set")
    assert "restoredInstance=imctl-db-r1" in doc["hint"]


def test_deploy_refuses_while_a_restore_is_recorded_and_runs_once_cleared(
    fake: FakePulumi,
) -> None:
    from cli.errors import ImctlError

    record_restore(_ctx(fake), "new", "imctl-db-r1", {})
    ups = len(fake.find("up"))
    with pytest.raises(ImctlError) as info:
        engine.deploy("dev", "aws", {}, home=fake.home, env=fake.env)
    assert info.value.status is ExitStatus.PRECONDITION
    assert "imctl-db-r1" in info.value.message and "restoredInstance=" in info.value.hint
    assert len(fake.find("up")) == ups  # refused before pulumi ran
    doc = engine.deploy("dev", "aws", {"restoredInstance": ""}, home=fake.home, env=fake.env)
    assert doc["config_changed"] == ["restoredInstance"]
    assert len(fake.find("up")) == ups + 1


def test_a_deploy_after_a_half_done_destroy_restores_the_databases_protection(
    fake: FakePulumi,
) -> None:
    engine.set_config("dev", "aws", {"teardown": "true"}, home=fake.home, env=fake.env)
    doc = engine.deploy("dev", "aws", {}, home=fake.home, env=fake.env)
    assert "teardown" in doc["config_changed"]
    assert engine.config_values("dev", home=fake.home, env=fake.env)["teardown"] == "false"


def test_a_failover_that_timed_out_names_the_count_to_record(fake: FakePulumi) -> None:
    assert if_promoted(_ctx(fake), WEST).endswith("imctl deploy --set failovers=1")
    record_roles(_ctx(fake), WEST, {})
    assert if_promoted(_ctx(fake), WEST) == f"the stack config already names {WEST} the writer"
