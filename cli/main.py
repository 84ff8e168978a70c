"""The imctl command line: the Typer app and the console-script entry point.

``imctl --help`` pays for every import made here and in the command modules, so those import
only typer and the small cli modules at top level; rich, the target code and any cloud SDK are
imported inside the functions that need them (tests/cli/test_help_imports.py holds the line).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from typing import Annotated, Any, NoReturn, cast

import typer
from typer.core import TyperArgument, TyperGroup

from cli.commands import doctor, history, version
from cli.commands import help as help_command
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
from cli.suggest import did_you_mean, nearest

HELP = """\
Deploy and operate the bundled IM server on this machine, AWS, GCP or Alibaba Cloud.

\b
Examples:
  imctl deploy                     # this machine: PostgreSQL, NATS, 2 im-server nodes
  imctl deploy --cloud aws --region us-east-1 --standby-region us-west-2
  imctl status --check -o json     # CI: one JSON document, exit 10 when unhealthy

\b
CI pipelines:  -o json (one JSON document on stdout), stable exit codes, --yes;
               nothing prompts without a TTY or when CI is set
On-call:       imctl status | imctl failover --to-region REGION | imctl history

Common options work before or after the command (imctl deploy -s prod -o json).
Check prerequisites first: imctl doctor [--cloud aws|gcp|alicloud]. Help on a command:
imctl help COMMAND, or imctl COMMAND --help.
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


def _no_python_type(self: TyperArgument, ctx: Any) -> str | None:
    return None


# typer prints an argument's Python type after it ("ID <str>"); every argument has a metavar
# that says what to type, so the type adds only a Python word (tests/cli/test_help.py).
if hasattr(TyperArgument, "display_type_rich"):
    setattr(TyperArgument, "display_type_rich", _no_python_type)  # noqa: B010
_click_exceptions = sys.modules[_ClickUsageError.__module__]
_NoSuchOption: type[Exception] = _click_exceptions.NoSuchOption


def _wants_json(ctx: Context, argv: list[str], group_output: Any) -> bool:
    if ctx.output is OutputFormat.JSON:  # set by a command that got as far as its context
        return True
    # -o given before the command, or IMCTL_OUTPUT: the group parsed it, even when the command
    # name that follows turned out to be unknown (resolved before the group's callback runs)
    if str(group_output or "").lower() == "json":
        return True
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and argv[i + 1 : i + 2] in (["json"], ["JSON"]):
            return True
        if arg.lower() in ("-ojson", "--output=json"):
            return True
    return False


def _suggest_options(exc: Any) -> None:
    """click's "(Possible options: ...)" in a NoSuchOption becomes the nearest options, best
    first (cli/suggest.py), among those the command's help shows."""
    command = getattr(exc.ctx, "command", None)
    if command is None:
        return
    visible = [
        name
        for param in command.params
        if not getattr(param, "hidden", False)
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    ]
    exc.possibilities = None
    exc.message = f"No such option: {exc.option_name}." + did_you_mean(
        nearest(exc.option_name, visible)
    )


def _print_help(ctx: Any) -> None:
    typer.echo(ctx.get_help(), color=ctx.color)


class ImctlGroup(TyperGroup):
    """Keeps the contract for errors raised outside ``runner.run``.

    An ImctlError (a bad -s value, say) is reported as run would; a click usage error (bad
    flag or value, unknown command) under ``-o json`` also becomes one ``{"error": ...}``
    document on stdout. A mistyped option names the nearest valid ones. A bare group (``imctl``,
    ``imctl snapshot``) prints its help and exits 0: asking what there is is not an error. Under
    ``-o json`` (or IMCTL_OUTPUT=json) it is the usage error "Missing command." instead, as
    ``imctl -o json`` is: stdout carries one JSON document there, never help text.
    """

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        unknown = name and not name.startswith("-") and self.get_command(ctx, name) is None
        if unknown and not ctx.resilient_parsing:
            found = nearest(name, self.list_commands(ctx))
            ctx.fail(f"No such command {name!r}." + did_you_mean([repr(n) for n in found]))
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # before click's no_args_is_help, which prints the help as an error (stderr, exit 2)
        if not args and not ctx.resilient_parsing:
            output = _bare_output(ctx)
            if str(output or "").lower() == "json":
                _usage_error(ctx, _ClickUsageError("Missing command.", ctx), args, output)
            _print_help(ctx)
            ctx.exit(0)
        try:
            return super().parse_args(ctx, args)
        except _ClickUsageError as exc:  # imctl --stak x: the group's own options
            _usage_error(ctx, exc, args, None)

    def invoke(self, ctx: Any) -> Any:
        argv = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        try:
            return super().invoke(ctx)
        except ImctlError as err:
            current_context(cast(typer.Context, ctx)).out.error(err)
            raise typer.Exit(int(err.status)) from None
        except _ClickUsageError as exc:
            _usage_error(ctx, exc, argv, ctx.params.get("output"))


def _bare_output(ctx: Any) -> Any:
    """The -o a bare group runs under: ``imctl``'s own (typed before the group, or
    IMCTL_OUTPUT), which click has parsed for a nested group but not yet for ``imctl`` itself."""
    root = ctx.find_root()
    if root is not ctx:
        return root.params.get("output")
    return os.environ.get("IMCTL_OUTPUT")


def _usage_error(ctx: Any, exc: Any, argv: list[str], group_output: Any) -> NoReturn:
    """Re-raise a click usage error with the nearest options named; under ``-o json``, report
    it as one error document instead."""
    if isinstance(exc, _NoSuchOption):
        _suggest_options(exc)
    imctl_ctx = current_context(cast(typer.Context, ctx))
    if not _wants_json(imctl_ctx, argv, group_output):
        raise exc
    exc.show()  # the usual message, on stderr
    # the command (or group) the error is about: the group for an unknown command
    where = f"{exc.ctx.command_path} --help" if exc.ctx else "imctl --help"
    usage = UsageError(exc.format_message(), f"see `{where}`")
    dataclasses.replace(imctl_ctx, output=OutputFormat.JSON).out.error(usage)
    raise typer.Exit(int(usage.status)) from None


app = typer.Typer(
    name="imctl",
    cls=ImctlGroup,
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    # --install-completion / --show-completion; typer's completion code is imported for every
    # run anyway (typer.main imports it), so this adds two options, not import time.
    add_completion=True,
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
    "stack",
    "scale",
    "token",
    "logs",
    "snapshot",
    "backup",
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
        # The group class reaches the nested groups too: bare `imctl snapshot` is help, exit 0
        app.add_typer(sub, name=verb, cls=ImctlGroup)
    else:
        app.command(verb)(getattr(module, verb))


for _verb in _VERBS:
    _register(_verb)
app.command("history")(history.history)
app.command("doctor")(doctor.doctor)
app.command("version")(version.version)
app.command("help")(help_command.help_)


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
