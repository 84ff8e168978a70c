"""`imctl --help` stays cheap: it must not import cloud SDKs, the server, or (for speed) rich.

Each check runs in a fresh interpreter, since this test process has imported everything already.
The wall time is measured and reported by hand (see the lead's notes), not asserted: it depends
on the machine's load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cli.main import app

HEAVY = (
    "pulumi",
    "pulumi_aws",
    "pulumi_gcp",
    "pulumi_alicloud",
    "pulumi_kubernetes",
    "boto3",
    "botocore",
    "google",
    "googleapiclient",
    "alibabacloud",
    "asyncpg",
    "nats",
    "aiohttp",
    "im_server.server",
    "psutil",  # not a cloud SDK, but ~20 ms: only the commands that manage processes need it
)


def _modules_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    script = "\n".join(
        [
            "import contextlib, io, json, sys",
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):",
            body,
            "print(json.dumps(sorted(sys.modules)))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_help_imports_nothing_heavy() -> None:
    modules = _modules_after(
        """
        from cli.main import app
        app(["--help"], standalone_mode=False)
        """
    )
    assert "cli.main" in modules
    assert _heavy(modules) == []
    # typer's rich help alone cost ~0.15 s; help is plain click formatting on purpose
    assert [m for m in modules if m == "rich" or m.startswith("rich.")] == []


@pytest.mark.parametrize("command", sorted(get_command(app).commands))  # type: ignore[attr-defined]
def test_every_command_help_is_cheap_and_works(command: str) -> None:
    modules = _modules_after(
        f"""
        from cli.main import app
        app([{command!r}, "--help"], standalone_mode=False)
        """
    )
    assert _heavy(modules) == []
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    # -o json on every command but `help` (the help text is its only output)
    assert command == "help" or "--output" in result.output


def test_json_run_never_imports_rich(tmp_path: Path) -> None:
    from cli import journal

    journal.append(
        tmp_path,
        "dev",
        journal.Record("deploy", {}, "t0", "t1", 0.1, "ok", 0, None, None, "u@h", "dev", "local"),
    )
    env = {"IMCTL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    modules = _modules_after(
        """
        from cli.main import app
        app(["history", "-o", "json"], standalone_mode=False)
        """,
        env=env,
    )
    assert "cli.commands.history" in modules
    assert [m for m in modules if m == "rich" or m.startswith("rich.")] == []


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "imctl"
    exe = str(script) if script.exists() else shutil.which("imctl")
    if exe is None:
        pytest.skip("the imctl console script is not installed (pip install -e .)")
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: imctl" in done.stdout and "history" in done.stdout and "doctor" in done.stdout
    assert "Exit codes:" in done.stdout
