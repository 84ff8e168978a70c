"""imctl help [COMMAND ...]: the help of a command, or of imctl itself.

The same text as ``imctl COMMAND --help``, for those who reach for ``help`` first (as with git).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.errors import UsageError
from cli.suggest import did_you_mean, nearest


def _resolve(root: Any, words: list[str]) -> Any:
    """The click context of ``imctl WORDS``; UsageError naming the word that is no command."""
    ctx = root
    for i, word in enumerate(words):
        command = ctx.command
        sub = command.get_command(ctx, word) if hasattr(command, "get_command") else None
        if sub is None:
            where = " ".join(["imctl", *words[:i]])
            names = command.list_commands(ctx) if hasattr(command, "list_commands") else []
            found = [repr(n) for n in nearest(word, names)]
            hint = did_you_mean(found).strip() or f"see `{where} --help`"
            raise UsageError(f"{where} has no command {word!r}", hint, code="unknown_command")
        ctx = sub.make_context(word, [], parent=ctx, resilient_parsing=True)
    return ctx


def help_(
    tctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="[COMMAND]...", help="A command, e.g. deploy or snapshot create."),
    ] = None,
) -> None:
    """Show the help of a command (the same as COMMAND --help), or of imctl.

    \b
    Examples:
      imctl help                   # the commands and the common options
      imctl help deploy
      imctl help snapshot create
    """
    root = tctx.find_root()
    target = _resolve(root, list(command or []))
    typer.echo(target.get_help(), color=target.color)
