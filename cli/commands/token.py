"""imctl token: mint a user token signed with the stack's secret."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import UsageError
from cli.options import Cloud, NoColor, Output, Stack, Verbose, Yes, make_context
from cli.results import DocResult
from cli.runner import run
from cli.state import StackFiles


def _render_token(console: Any, doc: Mapping[str, Any]) -> None:
    console.print(doc["token"], soft_wrap=True, highlight=False)


def token(
    tctx: typer.Context,
    user: Annotated[str, typer.Option(help="User id (the token's sub).")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (at most 30 days).")] = 3600,
    stack: Stack = None,
    cloud: Cloud = None,
    output: Output = None,
    yes: Yes = False,
    verbose: Verbose = False,
    no_color: NoColor = False,
) -> None:
    """Print a JWT for USER, for the hello frame (text mode prints only the token)."""
    ctx = make_context(tctx, stack, cloud, output, yes, verbose, no_color)

    def body() -> DocResult:
        from im_server import auth

        # The nodes refuse tokens that live longer than IM_MAX_TOKEN_TTL (default this).
        if not 1 <= ttl <= auth.MAX_TOKEN_TTL:
            raise UsageError(f"--ttl must be 1 to {auth.MAX_TOKEN_TTL} seconds, got {ttl}")
        from cli.targets.local.drill_users import is_drill_user

        if is_drill_user(user):
            raise UsageError(
                f"user ids starting with {user.split('.')[0]}. are reserved for drills",
                "`imctl drill clean` deletes their conversations; pick another id",
            )
        files = StackFiles(ctx.stack_dir)
        files.load_config()
        try:
            tok = auth.mint(files.load_secrets().jwt_secret, user, ttl)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        return DocResult({"user": user, "token": tok, "expires_at": int(time.time()) + ttl})

    run(ctx, "token", {"user": user, "ttl": ttl}, body, _render_token, mutating=False)
