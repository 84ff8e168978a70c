"""Hints that work when pasted: every ``imctl <command>`` a hint names carries the ``-s`` and
``--cloud`` of the invocation, in errors, result documents and text, through the real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import journal
from cli.hints import needed, with_options
from cli.state import RegionConfig, StackConfig, StackFiles
from tests.cli.test_contract import invoke, make_env, one_document


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "imctl-home"


def recorded_stack(home: Path, name: str) -> None:
    """A stack as a forced failover leaves it (a fenced, b primary), with nothing running."""
    files = StackFiles(home / "stacks" / name)
    files.load_or_create_secrets()
    regions = [RegionConfig("a", 45123, 2, "fenced"), RegionConfig("b", 45124, 2)]
    files.save_config(StackConfig(name, "local", regions, global_port=45125))


def test_stack_not_found_names_the_stack(home: Path) -> None:
    recorded_stack(home, "dev")
    ran = invoke(make_env(home), ["status", "-s", "other"])
    assert ran.code == 6, ran
    assert "hint: create it with `imctl deploy -s other`" in ran.stderr
    assert "existing stacks: dev" in ran.stderr


def test_failover_hint_names_the_stack(home: Path) -> None:
    recorded_stack(home, "other")
    ran = invoke(make_env(home), ["failover", "-s", "other", "--to-region", "a", "-o", "json"])
    assert ran.code == 10, ran
    assert "`imctl status -s other`" in one_document(ran.stdout)["error"]["hint"]


def test_status_advice_names_the_stack_in_json_and_text(home: Path) -> None:
    recorded_stack(home, "other")
    ran = invoke(make_env(home), ["status", "-s", "other", "-o", "json"])
    nexts = [p["next_command"] for p in one_document(ran.stdout)["problems"]]
    assert "imctl standby rebuild --region a -s other" in nexts
    assert all("-s other" in n for n in nexts if n.startswith("imctl "))

    text = invoke(make_env(home), ["status", "-s", "other"]).stdout
    # The text render's own line, a literal in the command, is completed on its way out.
    assert "fenced: imctl standby rebuild --region a -s other" in text
    assert "imctl deploy -s other" in text


def test_snapshot_advice_names_the_stack(home: Path) -> None:
    recorded_stack(home, "other")
    ran = invoke(make_env(home), ["snapshot", "list", "-s", "other"])
    assert ran.code == 0, ran
    assert "take one: imctl snapshot create -s other)" in ran.stdout


def test_the_default_stack_is_named_when_imctl_stack_points_elsewhere(home: Path) -> None:
    # Pasted in the same shell, a bare "imctl snapshot create" would act on prod.
    recorded_stack(home, "dev")
    env = make_env(home, environ={"USER": "tester", "IMCTL_STACK": "prod"})
    ran = invoke(env, ["snapshot", "list", "-s", "dev"], os_env={"IMCTL_STACK": "prod"})
    assert ran.code == 0, ran
    assert "take one: imctl snapshot create -s dev)" in ran.stdout


def test_the_default_stack_and_local_add_nothing(home: Path) -> None:
    recorded_stack(home, "dev")
    ran = invoke(make_env(home), ["snapshot", "list"])
    assert "take one: imctl snapshot create)" in ran.stdout


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["standby", "rebuild", "--region", "b"], "`imctl deploy -s other --cloud aws`"),
        (["drill", "failover"], "`imctl failover -s other --dry-run --cloud aws`"),
    ],
)
def test_cloud_hints_name_the_stack_and_cloud(home: Path, args: list[str], wanted: str) -> None:
    ran = invoke(make_env(home), [*args, "-s", "other", "--cloud", "aws", "-o", "json"])
    assert wanted in one_document(ran.stdout)["error"]["hint"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # already there: left alone
        ("`imctl deploy -s other`", "`imctl deploy -s other --cloud aws`"),
        # another stack's command is about that stack: neither its stack nor its cloud is ours
        ("imctl deploy -s dev when both are up", None),
        ("`imctl history --stack=dev`", None),
        ("imctl failover --force -s x --cloud gcp (if a is lost)", None),
        # subcommands take the options after both words
        ("`imctl snapshot show ID`", "`imctl snapshot show -s other --cloud aws ID`"),
        # each mention on its own; prose after a command is not an option
        (
            "check `imctl status`, then `imctl history`",
            "check `imctl status -s other --cloud aws`, then `imctl history -s other --cloud aws`",
        ),
        # "imctl" as a name, not a command
        ("imctl needs Pulumi; imctl writes this file", None),
    ],
)
def test_with_options(text: str, expected: str | None) -> None:
    assert with_options(text, "other", "aws") == (expected or text)


def test_defaults_are_left_out_unless_the_environment_names_others() -> None:
    assert needed("dev", "local", {}) == (None, None)
    assert needed("other", "local", {}) == ("other", None)
    assert needed("dev", "local", {"IMCTL_STACK": "prod"}) == ("dev", None)
    assert needed("dev", "local", {"IMCTL_CLOUD": "aws"}) == (None, "local")


# --- only advice is completed: journal messages and other stacks' hints are left alone ----------


def test_history_leaves_journal_messages_as_they_were(home: Path) -> None:
    message = "`imctl standby rebuild` is not available on aws"
    journal.append(
        home,
        "prod",
        journal.Record(
            "standby rebuild", {}, "t0", "t1", 0.1, "error", 1, "x", message, "u@h", "prod", "aws"
        ),
    )
    ran = invoke(make_env(home), ["history", "-s", "prod"])
    assert ran.code == 0, ran
    assert message in ran.stdout
    assert "-s prod" not in ran.stdout


def _other_stacks(home: Path) -> None:
    kept = home / "stacks" / "old"
    (kept / "snapshots" / "20261203T100000Z-ab12").mkdir(parents=True)
    (kept / "destroyed.json").write_text("{}")
    journal.append(
        home,
        "other",
        journal.Record("deploy", {}, "t0", "t1", 0.1, "ok", 0, None, None, "u@h", "other", "aws"),
    )


def test_stack_ls_leaves_other_stacks_hints_alone(home: Path) -> None:
    _other_stacks(home)
    wide = {"USER": "tester", "COLUMNS": "200"}
    ran = invoke(make_env(home, environ=wide, tty=True), ["stack", "ls", "-s", "prod"])
    assert ran.code == 0, ran
    assert "known only from the journal (imctl history): its files" in ran.stdout
    assert "imctl snapshot list -s old; imctl restore ID -s old builds" in ran.stdout
    assert "-s prod" not in ran.stdout


def test_imctl_cloud_adds_no_cloud_to_another_stacks_command(home: Path) -> None:
    _other_stacks(home)
    environ = {"USER": "tester", "IMCTL_CLOUD": "aws", "COLUMNS": "200"}
    env = make_env(home, environ=environ, tty=True)
    ran = invoke(env, ["stack", "ls", "-s", "prod"], os_env={"IMCTL_CLOUD": "aws"})
    assert ran.code == 0, ran
    assert "--cloud" not in ran.stdout
    # a hint about another stack is about that stack, whatever the invocation names
    text = "see `imctl snapshot list -s old`"
    assert with_options(text, "prod", "aws") == text
    assert with_options(text, None, "aws") == text
    assert (
        with_options("`imctl status -s dev`", None, "local")
        == "`imctl status -s dev --cloud local`"
    )
