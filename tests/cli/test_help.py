"""Help that teaches, through the real command: every command's --help has examples and says
what a value looks like (no TEXT/INTEGER), shows only the common options that mean something
for it; `imctl help COMMAND`, bare `imctl`, unknown commands and mistyped options; completion.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from cli.errors import ExitStatus
from cli.main import app
from cli.suggest import nearest
from tests.cli.test_contract import invoke, make_env, one_document

# click's names for a value's Python type, and typer's ("ID <str>"): a metavar says what to
# type instead
BARE_TYPES = re.compile(
    r"\b(TEXT|INTEGER|FLOAT|BOOLEAN|PATH|FILENAME|UUID|DATETIME)\b|RANGE\]?"
    r"|<(str|int|float|bool|Path)>"
)


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _paths(sub, (*prefix, name))
    return found


COMMANDS = _paths(get_command(app))


def _help(home: Path, *words: str) -> str:
    ran = invoke(make_env(home), [*words, "--help"])
    assert ran.code == 0, ran
    return ran.click_output


def test_the_walk_sees_nested_commands() -> None:
    assert ("snapshot", "create") in COMMANDS and ("stack", "ls") in COMMANDS
    assert ("help",) in COMMANDS and () in COMMANDS


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "imctl")
def test_every_help_has_examples_and_no_bare_types(tmp_path: Path, words: tuple[str, ...]) -> None:
    text = _help(tmp_path, *words)
    assert "Examples:" in text
    examples = text.split("Examples:", 1)[1].split("\n\n", 1)[0].splitlines()
    shown = [line for line in examples if line.strip().startswith("imctl")]
    assert 1 <= len(shown) <= 3, examples
    path = " ".join(("imctl", *words))
    # its own use first; a follow-up command may come after it
    assert shown[0].strip().startswith(path), (path, shown)
    assert BARE_TYPES.findall(text) == []


@pytest.mark.parametrize(
    ("words", "shown", "hidden"),
    [
        (("deploy",), ["--yes", "--cloud", "--stack"], []),
        (("status",), ["--cloud", "--stack"], ["--yes"]),  # never asks
        (("logs",), ["--stack"], ["--cloud", "--yes"]),  # local only
        (("standby", "rebuild"), ["--yes"], ["--cloud"]),
        (("drill", "clean"), ["--yes"], ["--cloud"]),
        (("history",), ["--stack"], ["--cloud", "--yes"]),
        (("version",), ["--output"], ["--stack", "--cloud", "--yes", "--verbose"]),
        (("stack", "ls"), ["--output"], ["--stack", "--cloud", "--yes"]),
        (("failover",), ["--yes", "--cloud"], []),
    ],
)
def test_only_the_common_options_that_mean_something_are_shown(
    tmp_path: Path, words: tuple[str, ...], shown: list[str], hidden: list[str]
) -> None:
    text = _help(tmp_path, *words).split("Options:", 1)[1]
    for option in shown:
        assert re.search(rf"{option}\b", text), option
    for option in hidden:
        assert not re.search(rf"{option}\b", text), option


def test_a_hidden_common_option_is_still_accepted(tmp_path: Path) -> None:
    # scripts pass the same common options to every command; hiding is not refusing
    ran = invoke(make_env(tmp_path), ["version", "--yes", "-s", "prod", "-o", "json"])
    assert ran.code == 0, ran
    assert one_document(ran.stdout)["imctl"]
    ran = invoke(make_env(tmp_path), ["logs", "--cloud", "aws", "-o", "json"])
    assert ran.code == ExitStatus.USAGE  # still the target's own explanation
    assert one_document(ran.stdout)["error"]["message"]


def test_typed_values_read_as_what_to_type(tmp_path: Path) -> None:
    deploy = _help(tmp_path, "deploy")
    for shown in ("--replication sync|async", "--set KEY=VALUE", "--replicas N", "--port PORT"):
        assert shown in deploy
    assert "--to-region NAME" in _help(tmp_path, "failover")


# --- imctl help, bare imctl --------------------------------------------------------------------


@pytest.mark.parametrize("words", [["deploy"], ["snapshot", "create"], ["stack"]])
def test_help_command_prints_that_commands_help(tmp_path: Path, words: list[str]) -> None:
    ran = invoke(make_env(tmp_path), ["help", *words])
    assert ran.code == 0, ran
    assert ran.click_output == _help(tmp_path, *words)
    assert f"Usage: imctl {' '.join(words)}" in ran.click_output


def test_help_alone_and_bare_imctl_print_the_top_help_and_exit_0(tmp_path: Path) -> None:
    top = _help(tmp_path)
    for args in ([], ["help"]):
        ran = invoke(make_env(tmp_path), args)
        assert ran.code == 0, ran
        assert ran.click_output == top
    ran = invoke(make_env(tmp_path), ["snapshot"])  # a bare group too
    assert ran.code == 0 and ran.click_output == _help(tmp_path, "snapshot")


@pytest.mark.parametrize(
    ("args", "os_env"),
    [
        (["-o", "json"], {}),
        (["-o", "json", "snapshot"], {}),
        (["--output=json", "stack"], {}),
        (["-o", "json", "drill"], {}),
        (["snapshot"], {"IMCTL_OUTPUT": "json"}),
        ([], {"IMCTL_OUTPUT": "json"}),
    ],
)
def test_a_bare_group_under_json_is_a_missing_command_error(
    tmp_path: Path, args: list[str], os_env: dict[str, str]
) -> None:
    """Under -o json stdout is one JSON document, help text included: a bare group is what bare
    `imctl -o json` is, a usage error (exit 2) with the usage on stderr."""
    ran = invoke(make_env(tmp_path), args, os_env=os_env)
    assert ran.code == ExitStatus.USAGE, ran
    error = one_document(ran.stdout)["error"]
    assert error["code"] == "usage" and error["message"] == "Missing command."
    assert "Usage: imctl" in ran.click_output  # click writes its usage to stderr


def test_help_of_an_unknown_command_suggests(tmp_path: Path) -> None:
    ran = invoke(make_env(tmp_path), ["help", "snapshot", "creat", "-o", "json"])
    # `help` has no -o: the option is an error of its own; without it, the suggestion
    assert ran.code == ExitStatus.USAGE
    ran = invoke(make_env(tmp_path), ["help", "snapshot", "creat"])
    assert ran.code == ExitStatus.USAGE
    assert "imctl snapshot has no command 'creat'" in ran.stderr
    assert "Did you mean 'create'?" in ran.stderr


def test_bare_imctl_console_script_exits_0() -> None:
    script = Path(sys.executable).parent / "imctl"
    exe = str(script) if script.exists() else shutil.which("imctl")
    if exe is None:
        pytest.skip("the imctl console script is not installed (pip install -e .)")
    done = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: imctl") and done.stderr == ""


# --- unknown commands and options --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "os_env", "where"),
    [
        (["-o", "json", "nosuch"], {}, "imctl --help"),
        (["nosuch", "-o", "json"], {}, "imctl --help"),
        (["snapshot", "nosuch"], {"IMCTL_OUTPUT": "json"}, "imctl snapshot --help"),
    ],
)
def test_unknown_command_in_json_mode_is_one_error_document(
    tmp_path: Path, args: list[str], os_env: dict[str, str], where: str
) -> None:
    ran = invoke(make_env(tmp_path), args, os_env)
    assert ran.code == ExitStatus.USAGE
    err = one_document(ran.stdout)["error"]
    assert err["code"] == "usage" and "No such command 'nosuch'" in err["message"]
    assert where in err["hint"]


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        (["failover", "--to", "b"], "Did you mean --to-region?"),
        (["deploy", "--standby", "b"], "Did you mean --standby-region?"),
        (["deploy", "--replica", "3"], "Did you mean --replicas or --replication?"),
        (["--stak", "x", "status"], "Did you mean --stack?"),
        (["sna"], "No such command 'sna'. Did you mean 'snapshot'?"),
        (["snapshot", "ls"], "Did you mean 'list'?"),
    ],
)
def test_a_mistyped_option_or_command_names_the_nearest(
    tmp_path: Path, args: list[str], meant: str
) -> None:
    ran = invoke(make_env(tmp_path), args)
    assert ran.code == ExitStatus.USAGE
    assert meant in ran.click_output
    ran = invoke(make_env(tmp_path), [*args, "-o", "json"])
    assert meant in one_document(ran.stdout)["error"]["message"]


def test_nearest_prefers_a_prefix_and_falls_back_to_spelling() -> None:
    options = ["--to-region", "--timeout", "--force", "--dry-run"]
    assert nearest("--to", options) == ["--to-region"]  # difflib alone: --timeout only
    assert nearest("--froce", options) == ["--force"]
    assert nearest("--x", options) == []
    assert nearest("s", ["snapshot", "status", "scale"]) == []  # one letter means nothing yet


# --- shell completion --------------------------------------------------------------------------


def _console_script() -> str:
    script = Path(sys.executable).parent / "imctl"
    exe = str(script) if script.exists() else shutil.which("imctl")
    if exe is None:
        pytest.skip("the imctl console script is not installed (pip install -e .)")
    return exe


def _complete(words: str, cword: int) -> list[str]:
    env = {
        **os.environ,
        "_IMCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    done = subprocess.run([_console_script()], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_offers_commands_subcommands_and_options() -> None:
    assert _complete("imctl sna", 1) == ["snapshot"]
    assert "status" in _complete("imctl st", 1) and "stack" in _complete("imctl st", 1)
    assert "create" in _complete("imctl snapshot ", 2)
    assert "--to-region" in _complete("imctl failover --to", 2)


def test_show_completion_prints_a_bash_script() -> None:
    done = subprocess.run(
        [_console_script(), "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "complete -o default -F" in done.stdout and "_IMCTL_COMPLETE" in done.stdout
