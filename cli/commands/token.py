"""imctl token: mint a user token signed with the stack's secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.options import Cloud, NoColor, Output, Stack, Verbose, YesAccepted, make_context
from cli.results import Result
from cli.runner import run
from cli.targets.choose import target_for


def _render_token(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(doc["token"], soft_wrap=True, highlight=False)


def token(
    tctx: typer.Context,
    user: Annotated[str, typer.Option(metavar="USER", help="User id (the token's sub).")],
    ttl: Annotated[
        int, typer.Option(metavar="SECONDS", help="Lifetime in seconds (at most 30 days).")
    ] = 3600,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: YesAccepted = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Print a JWT for USER, for the hello frame (text mode prints only the token).

    \b
    Examples:
      imctl token --user alice
      TOKEN=$(imctl token --user bob --ttl 86400)
    """
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> Result:
        return target_for(ctx).token(user, ttl)

    run(ctx, "token", {"user": user, "ttl": ttl}, body, _render_token, mutating=False)
