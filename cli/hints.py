"""Next-step hints that work when pasted: every ``imctl <command>`` a hint names gets the
``-s/--stack`` and ``--cloud`` of the invocation that printed it.

Hints are written in a hundred places, many deep in the domain where the invocation's options
are not known (``imctl snapshot list``, ``imctl standby rebuild --region b``). Rather than thread
the stack and cloud into each, the output passes every hint through ``with_options`` on its way
out: an error's hint, warnings, confirmation details, a result document's ``HINT_KEYS``, and the
advice a text render prints through ``advice``. Only hints: a journal message, a log line or a
note about another stack is data and is printed as it was written. A mention that already names
its stack or cloud keeps them, and one that names another stack is about that stack and gets
nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
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
_STACK: Final = re.compile(r"(?:^|\s)(?:-s|--stack)(?:\s+|=)([^\s`),;]+)")
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
    ``imctl <command>`` that lacks them. ``stack`` None is the default stack, which a mention of
    another stack is told apart from."""
    if (stack is None and cloud is None) or "imctl " not in text:
        return text
    own = stack or DEFAULT_STACK
    out: list[str] = []
    last = 0
    for m in _MENTION.finditer(text):
        end = _END.search(text, m.end())
        rest = text[m.end() : end.start() if end else len(text)]
        named = _STACK.search(rest)
        extra = []
        # A command for another stack is left whole: this invocation's cloud need not be its.
        if named is None or named.group(1) == own:
            if stack is not None and named is None:
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
    if stack is None and cloud is None:
        return dict(doc)

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


# The options of the invocation whose result is being rendered (``Output.result`` sets them).
_RENDERING: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "imctl_hint_options", default=(None, None)
)


@contextlib.contextmanager
def rendering(stack: str | None, cloud: str | None) -> Iterator[None]:
    """While a result is rendered, ``advice`` completes commands with these options."""
    token = _RENDERING.set((stack, cloud))
    try:
        yield
    finally:
        _RENDERING.reset(token)


def advice(text: str) -> str:
    """A render's own advice (``"take one: imctl snapshot create"``) completed with the options
    of the invocation being rendered; renders call it on advice only, never on data they print.
    """
    return with_options(text, *_RENDERING.get())
