"""The common options, accepted both before and after the subcommand.

Every command declares the same six parameters with these aliases and passes them to
``make_context``. Precedence, highest first: given after the subcommand, given before it (the
app callback stores those as fallbacks), environment (IMCTL_STACK, IMCTL_CLOUD, IMCTL_OUTPUT),
built-in default. Both places read the environment, so "given" means typed on the command line,
which is why the parameter sources are checked rather than the values.

The command's parameters must be named ``stack``, ``cloud``, ``output``, ``yes``, ``verbose``,
``no_color`` (as in make_context) for the precedence to see where each value came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from cli.context import Context, OutputFormat
from cli.env import Env
from cli.errors import UsageError

STACK_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
CLOUDS = ("local", "aws", "gcp", "alicloud")
DEFAULT_STACK = "dev"
DEFAULT_CLOUD = "local"
_PANEL = "Common options"

# Each common option comes twice: shown, and accepted but left out of a command's help where it
# means nothing (a command that never asks has no use for --yes, a local-only one for --cloud).
# Accepting it still lets a script pass the same common options to every command.


def _stack_option(hidden: bool = False) -> Any:
    return typer.Option(
        "-s",
        "--stack",
        envvar="IMCTL_STACK",
        metavar="NAME",
        help=f"Stack to act on [default: {DEFAULT_STACK}].",
        show_default=False,
        rich_help_panel=_PANEL,
        hidden=hidden,
    )


def _cloud_option(hidden: bool = False) -> Any:
    return typer.Option(
        "--cloud",
        envvar="IMCTL_CLOUD",
        metavar="|".join(CLOUDS),
        help=f"Target: {', '.join(CLOUDS)} [default: {DEFAULT_CLOUD}].",
        show_default=False,
        rich_help_panel=_PANEL,
        hidden=hidden,
    )


def _yes_option(hidden: bool = False) -> Any:
    return typer.Option(
        "-y",
        "--yes",
        help="Answer yes to confirmations (needed without a TTY or in CI).",
        rich_help_panel=_PANEL,
        hidden=hidden,
    )


def _verbose_option(hidden: bool = False) -> Any:
    return typer.Option(
        "-v",
        "--verbose",
        help="More progress detail; tracebacks on errors.",
        rich_help_panel=_PANEL,
        hidden=hidden,
    )


Stack = Annotated[str | None, _stack_option()]
Cloud = Annotated[str | None, _cloud_option()]
Output = Annotated[
    OutputFormat | None,
    typer.Option(
        "-o",
        "--output",
        envvar="IMCTL_OUTPUT",
        case_sensitive=False,
        help="text for people; json: exactly one JSON document on stdout [default: text].",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
Yes = Annotated[bool, _yes_option()]
Verbose = Annotated[bool, _verbose_option()]
NoColor = Annotated[
    bool,
    typer.Option("--no-color", help="No colors (also: NO_COLOR=1).", rich_help_panel=_PANEL),
]
# Not a common option: only the commands that print a table take it.
NoHeaders = Annotated[
    bool,
    typer.Option("--no-headers", help="Print the table without its header line."),
]
# Accepted, not shown: see above.
StackAccepted = Annotated[str | None, _stack_option(hidden=True)]
CloudAccepted = Annotated[str | None, _cloud_option(hidden=True)]
YesAccepted = Annotated[bool, _yes_option(hidden=True)]
VerboseAccepted = Annotated[bool, _verbose_option(hidden=True)]

_NAMES = ("stack", "cloud", "output", "yes", "verbose", "no_color")


@dataclass
class _Invocation:
    """Lives in the root click context's ``obj`` for one invocation."""

    env: Env
    fallbacks: dict[str, Any] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)  # fallbacks typed on the command line
    context: Context | None = None


def _invocation(tctx: typer.Context) -> _Invocation:
    root = tctx.find_root()
    obj = root.obj
    if isinstance(obj, _Invocation):
        return obj
    # Tests inject an Env as ``obj`` (CliRunner().invoke(app, args, obj=env)).
    inv = _Invocation(env=obj if isinstance(obj, Env) else Env.from_os())
    root.obj = inv
    return inv


def _typed(tctx: typer.Context, name: str) -> bool:
    source = tctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def set_fallbacks(
    tctx: typer.Context,
    stack: str | None,
    cloud: str | None,
    output: OutputFormat | None,
    yes: bool,
    verbose: bool,
    no_color: bool,
) -> None:
    """Called by the app callback with the options given before the subcommand."""
    inv = _invocation(tctx)
    values = dict(zip(_NAMES, (stack, cloud, output, yes, verbose, no_color), strict=True))
    inv.fallbacks = values
    inv.explicit = {name for name in _NAMES if _typed(tctx, name)}


def make_context(
    tctx: typer.Context,
    stack: str | None,
    cloud: str | None,
    output: OutputFormat | None,
    yes: bool,
    verbose: bool,
    no_color: bool,
) -> Context:
    """Resolve the common options; raises UsageError (exit 2) for a bad stack or cloud name."""
    inv = _invocation(tctx)

    def pick(name: str, value: Any) -> Any:
        if _typed(tctx, name):
            return value
        if name in inv.explicit:
            return inv.fallbacks[name]
        return value if value is not None else inv.fallbacks.get(name)

    ctx = Context(
        env=inv.env,
        stack=pick("stack", stack) or DEFAULT_STACK,
        cloud=(pick("cloud", cloud) or DEFAULT_CLOUD).lower(),
        output=OutputFormat(pick("output", output) or OutputFormat.TEXT),
        yes=yes or bool(inv.fallbacks.get("yes")),
        verbose=verbose or bool(inv.fallbacks.get("verbose")),
        no_color=no_color or bool(inv.fallbacks.get("no_color")),
    )
    # Stored before validating, so the error below is rendered in the requested format.
    inv.context = ctx
    validate(ctx)
    return ctx


def validate(ctx: Context) -> None:
    if not STACK_RE.fullmatch(ctx.stack):
        raise UsageError(
            f"invalid stack name {ctx.stack!r}",
            "use 1-40 characters (a-z, 0-9, '-'), starting with a letter or digit",
            code="invalid_stack_name",
        )
    if ctx.cloud not in CLOUDS:
        raise UsageError(
            f"unknown cloud {ctx.cloud!r}",
            f"use --cloud {' | '.join(CLOUDS)}",
            code="invalid_cloud",
        )
    from cli.step_progress import heartbeat_interval

    # Here, not when the first step starts: a bad value must stop a command before it changes
    # anything, not half way through a deploy.
    heartbeat_interval(ctx.env.environ)


def current_context(tctx: typer.Context) -> Context:
    """The Context of this invocation, for reporting an error raised outside ``run``."""
    inv = _invocation(tctx)
    if inv.context is not None:
        return inv.context
    output = inv.fallbacks.get("output") or OutputFormat.TEXT
    return Context(
        env=inv.env,
        output=OutputFormat(output),
        verbose=bool(inv.fallbacks.get("verbose")),
        no_color=bool(inv.fallbacks.get("no_color")),
    )


# For command groups (snapshot, standby, drill): their own --help lists only subcommands.
GROUP_EPILOG = (
    "Every subcommand takes the common options after it (-s/--stack NAME, -o/--output json, ...);"
    " its own --help lists the ones that mean something for it."
)


def parse_sets(items: list[str]) -> dict[str, str]:
    """``--set key=value`` options (plan, cloud deploy) as a dict."""
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}", "e.g. --set hpaMax=20")
        overrides[key] = value
    return overrides


OutputsFile = Annotated[
    str | None,
    typer.Option(
        "--outputs",
        envvar="IMCTL_OUTPUTS_FILE",
        metavar="FILE",
        help="Clouds: read resource ids from this outputs JSON instead of the stack's outputs.",
    ),
]
