"""Which region holds the writer once a failover is recorded in the stack config but not yet
deployed, and what a deploy must do or refuse because of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from cli.errors import PreconditionFailed

if TYPE_CHECKING:
    from pulumi import automation as auto


def roles_moved(st: auto.Stack, config: Mapping[str, str]) -> bool:
    """A failover was recorded since the last deploy: the state still shows the promoted
    instance as a replica. Refresh first, so Pulumi compares the program with what the cloud
    now has, instead of trying to undo the promotion."""
    deployed = st.outputs().get("failovers")
    configured = config.get("failovers", "0")
    return deployed is not None and str(deployed.value) != configured


def refuse_undeployable(stack: str, merged: Mapping[str, str]) -> None:
    """The program refuses these too (for a plain ``pulumi up``); checking here first gives the
    precondition exit code and writes nothing."""
    from stacks.config import KEY_NAMES, ConfigError, check_deployable, parse

    try:
        check_deployable(parse({k: v for k, v in merged.items() if k in KEY_NAMES}))
    except ConfigError as exc:
        raise PreconditionFailed(f"stack {stack!r}: {exc.message}", exc.hint) from None


def configured_writer(config: Mapping[str, str]) -> tuple[str | None, int]:
    """The writer region the stack config names (``failovers`` written back by
    ``imctl failover``), which may be ahead of the outputs until the next deploy."""
    from stacks.config import writer_of

    region = config.get("region")
    try:
        failovers = int(config.get("failovers", "0") or 0)
    except ValueError:
        return None, 0
    if region is None:
        return None, failovers
    return writer_of(region, config.get("standbyRegion") or None, failovers), failovers
