"""The imctl command line: the Typer app and the console-script entry point.

``imctl --help`` pays for every import made here and in the command modules, so those import
only typer and the small cli modules at top level; rich, the target code and any cloud SDK are
imported inside the functions that need them (tests/cli/test_help_imports.py holds the line).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Annotated, Any, cast

import typer
from typer.core import TyperGroup

from cli.commands import doctor, history, version
from cli.context import Context, OutputFormat
from cli.errors import ExitStatus, ImctlError, UsageError
from cli.options import (
    Cloud,
    NoColor,
    Output,
    Stack,
    Verbose,
    Yes,
    current_context,
    set_fallbacks,
)

HELP = """\
Deploy and operate the bundled IM server on this machine, AWS, GCP or Alibaba Cloud.

\b
Operators:     imctl deploy --cloud aws --region us-east-1 --standby-region us-west-2
CI pipelines:  -o json (one JSON document on stdout), stable exit codes, --yes;
               nothing prompts without a TTY or when CI is set
On-call:       imctl status | imctl failover --to-region REGION | imctl history

Common options work before or after the command (imctl deploy -s prod -o json).
Check prerequisites first: imctl doctor [--cloud aws|gcp|alicloud].
"""

EPILOG = (
    "Exit codes: 0 ok, 1 error, 2 usage or confirmation needed, 3 credentials, "
    "4 resource failure, 6 stack not found, 8 cancelled, 9 timeout, "
    "10 precondition or health gate failed, 11 stack locked, 12 partial success, 130 Ctrl-C."
)


def _click_usage_error() -> type[Exception]:
    # typer >= 0.22 vendors click as typer._click, older ones use click: find it, don't import it
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


_ClickUsageError = _click_usage_error()


def _wants_json(ctx: Context, argv: list[str]) -> bool:
    if ctx.output is OutputFormat.JSON:  # given before the command, or IMCTL_OUTPUT
        return True
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and argv[i + 1 : i + 2] in (["json"], ["JSON"]):
            return True
        if arg.lower() in ("-ojson", "--output=json"):
            return True
    return False


class ImctlGroup(TyperGroup):
    """Keeps the contract for errors raised outside ``runner.run``.

    An ImctlError (a bad -s value, say) is reported as run would; a click usage error (bad
    flag or value) under ``-o json`` also becomes one ``{"error": ...}`` document on stdout.
    """

    def invoke(self, ctx: Any) -> Any:
        argv = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        try:
            return super().invoke(ctx)
        except ImctlError as err:
            current_context(cast(typer.Context, ctx)).out.error(err)
            raise typer.Exit(int(err.status)) from None
        except _ClickUsageError as exc:
            imctl_ctx = current_context(cast(typer.Context, ctx))
            if not _wants_json(imctl_ctx, argv):
                raise
            exc.show()  # type: ignore[attr-defined]  # the usual message, on stderr
            where = f"imctl {argv[0]} --help" if argv else "imctl --help"
            usage = UsageError(exc.format_message(), f"see `{where}`")  # type: ignore[attr-defined]
            dataclasses.replace(imctl_ctx, output=OutputFormat.JSON).out.error(usage)
            raise typer.Exit(int(usage.status)) from None


app = typer.Typer(
    name="imctl",
    cls=ImctlGroup,
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: typer's rich help imports rich, markdown-it and pygments, which doubled
    # `imctl --help` (~0.35 s -> ~0.18 s here); rich stays for command output.
    rich_markup_mode=None,
    # Our own errors never reach Python's excepthook; a bug should print a plain traceback,
    # not a rich one with local variables (which may hold secrets).
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"imctl {version.imctl_version()}")
        raise typer.Exit()


@app.callback()
def _common(
    tctx: typer.Context,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # Options given here, before the command, are the fallback for the command's own.
    set_fallbacks(tctx, stack, cloud, output, yes, verbose, no_color)


# The lead's verbs, in help order. A module that does not exist yet is skipped; a module that
# exists but fails to import is an error, not a silently missing command.
_VERBS = (
    "deploy",
    "plan",
    "status",
    "scale",
    "token",
    "logs",
    "snapshot",
    "restore",
    "failover",
    "standby",
    "drill",
    "destroy",
)


def _register(verb: str) -> None:
    module_name = f"cli.commands.{verb}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return
    sub = getattr(module, "app", None)
    if isinstance(sub, typer.Typer):
        app.add_typer(sub, name=verb)
    else:
        app.command(verb)(getattr(module, verb))


for _verb in _VERBS:
    _register(_verb)
app.command("history")(history.history)
app.command("doctor")(doctor.doctor)
app.command("version")(version.version)


def run() -> None:
    """Console-script entry point; always exits with an ExitStatus value."""
    try:
        # Standalone mode: click turns usage errors into exit 2, typer.Exit into its code and
        # Ctrl-C inside a command into 130.
        app()
    except KeyboardInterrupt:  # Ctrl-C outside click's handling (e.g. during imports)
        sys.exit(int(ExitStatus.INTERRUPTED))


if __name__ == "__main__":
    run()
