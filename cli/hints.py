"""Next-step hints that work when pasted: every ``imctl <command>`` a message names gets the
``-s/--stack`` and ``--cloud`` of the invocation that printed it.

Hints are written in a hundred places, many deep in the domain where the invocation's options
are not known (``imctl snapshot list``, ``imctl standby rebuild --region b``). Rather than thread
the stack and cloud into each, the output passes every hint through ``with_options`` on its way
out: one rule, and a hint written tomorrow follows it without knowing. A mention that already
names its stack or cloud keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from cli.options import DEFAULT_CLOUD, DEFAULT_STACK

# Commands with subcommands: the options go after both words (``imctl snapshot list -s x``).
GROUPS: Final = ("snapshot", "standby", "drill", "stack")
# The commands that take the common options (``version`` names no stack).
COMMANDS: Final = (
    "deploy",
    "plan",
    "status",
    "scale",
    "token",
    "logs",
    "restore",
    "failover",
    "destroy",
    "history",
    "doctor",
)
# Keys of a result document whose strings are advice to run something.
HINT_KEYS: Final = frozenset({"hint", "hints", "next_steps", "next_command", "fix", "steps"})

_MENTION: Final = re.compile(
    rf"\bimctl (?:(?:{'|'.join(GROUPS)}) [a-z][a-z-]*|(?:{'|'.join(COMMANDS)}))(?![\w-])"
)
# Where a pasted command ends in prose: a closing backtick or parenthesis, a clause.
_END: Final = re.compile(r"`|\)|;|,| \(| then | or | and |\n|$")
# The common options a mention already gives right after its command: the missing ones go after
# them, so "imctl deploy -s prod" becomes "imctl deploy -s prod --cloud aws".
_LEADING: Final = re.compile(r"(?:\s+(?:-s|--stack|--cloud)(?:\s+|=)[^\s`),;]+)*")
_HAS_STACK: Final = re.compile(r"(?:^|\s)(?:-s|--stack)(?:\s|=)")
_HAS_CLOUD: Final = re.compile(r"(?:^|\s)--cloud(?:\s|=)")


def needed(stack: str, cloud: str, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The stack and cloud a pasted command must name: none for the defaults, unless
    IMCTL_STACK/IMCTL_CLOUD is set (a pasted ``imctl status`` would then read the variable, not
    the default the invocation chose with ``-s dev``)."""
    named_stack = stack != DEFAULT_STACK or "IMCTL_STACK" in environ
    named_cloud = cloud != DEFAULT_CLOUD or "IMCTL_CLOUD" in environ
    return (stack if named_stack else None, cloud if named_cloud else None)


def with_options(text: str, stack: str | None, cloud: str | None) -> str:
    """``text`` with ``-s stack``/``--cloud cloud`` (those not None) added to each
    ``imctl <command>`` that lacks them."""
    if (stack is None and cloud is None) or "imctl " not in text:
        return text
    out: list[str] = []
    last = 0
    for m in _MENTION.finditer(text):
        end = _END.search(text, m.end())
        rest = text[m.end() : end.start() if end else len(text)]
        extra = []
        if stack is not None and not _HAS_STACK.search(rest):
            extra.append(f"-s {stack}")
        if cloud is not None and not _HAS_CLOUD.search(rest):
            extra.append(f"--cloud {cloud}")
        at = _LEADING.match(text, m.end())
        cut = at.end() if at else m.end()
        out.append(text[last:cut])
        if extra:
            out.append(" " + " ".join(extra))
        last = cut
    out.append(text[last:])
    return "".join(out)


def in_document(doc: Mapping[str, Any], stack: str | None, cloud: str | None) -> dict[str, Any]:
    """A copy of a result document whose hint-like fields (``HINT_KEYS``, at any depth) have
    their commands completed; every other value is left exactly as it was."""

    def walk(value: Any, hinted: bool) -> Any:
        if isinstance(value, str):
            return with_options(value, stack, cloud) if hinted else value
        if isinstance(value, Mapping):
            return {k: walk(v, hinted or k in HINT_KEYS) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, hinted) for v in value]
        return value

    result: dict[str, Any] = walk(doc, False)
    return result
