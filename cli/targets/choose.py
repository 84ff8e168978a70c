"""From ``--cloud`` to a Target: the one place that knows which class serves which name.

Lazy on purpose: ``imctl --help`` must not load a cloud SDK or Pulumi, and the local target must
not load them either.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cli.errors import UsageError

if TYPE_CHECKING:
    from cli.env import Env
    from cli.targets.base import Target

LOCAL = "local"
CLOUDS = ("aws", "gcp", "alicloud")


class Invocation(Protocol):
    """What choosing a target needs of the command's Context."""

    @property
    def stack(self) -> str: ...

    @property
    def cloud(self) -> str: ...

    @property
    def env(self) -> Env: ...

    @property
    def stack_dir(self) -> Path: ...


def keeps_stack_dir(cloud: str) -> bool:
    """Whether the target's stack lives in ``~/.imctl/stacks/<name>`` (so a verb other than
    deploy needs it to exist); a cloud's state is in its Pulumi backend or an outputs file."""
    return cloud == LOCAL


def _target_class(cloud: str) -> type[Target]:
    if cloud == LOCAL:
        from cli.targets.local.target import LocalTarget

        return LocalTarget
    from cli.targets.cloud.target import CloudTarget

    return CloudTarget


def _takers(option: str) -> tuple[str, ...]:
    """The targets that take a target-only option: what the error names."""
    local = (LOCAL,) if option in _target_class(LOCAL).options else ()
    return local + (CLOUDS if option in _target_class(CLOUDS[0]).options else ())


def check_options(cloud: str, given: Mapping[str, Any]) -> None:
    """Exit 2 for a target-only option the chosen target does not take. ``given`` maps each
    option's flag (``--port``) to its value; None, False and empty mean "not given"."""
    accepted = _target_class(cloud).options
    for flag, value in given.items():
        if value is None or value is False or value == [] or flag in accepted:
            continue
        takers = _takers(flag)
        where = f"it is for {', '.join(takers)}" if takers else "no target takes it"
        raise UsageError(
            f"{flag} is not an option of the {cloud} target",
            f"{where}; drop it, or pick the target with --cloud",
            code="option_not_for_target",
        )


def target_for(ctx: Invocation, **given: Any) -> Target:
    """The target ``--cloud`` names, after checking the target-only options given.

    ``given``: the target-only options of the command as keyword arguments named after their
    flags (``port=...`` for ``--port``; ``outputs`` is ``--outputs``)."""
    flags = {"--" + name.rstrip("_").replace("_", "-"): value for name, value in given.items()}
    check_options(ctx.cloud, flags)
    if ctx.cloud == LOCAL:
        from cli.state import StackFiles
        from cli.targets.local.target import LocalTarget

        return LocalTarget(StackFiles(ctx.stack_dir))
    from cli.targets.cloud.target import CloudTarget

    return CloudTarget(ctx, outputs_file=given.get("outputs"))
