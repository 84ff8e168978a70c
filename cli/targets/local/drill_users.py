"""Who drills write as, and how their conversations are found: a prefix of user ids that
``imctl token`` refuses, so ``imctl drill clean`` can remove drill traffic and nothing else.

No asyncpg or client imports here: ``imctl token`` checks the prefix on every call.
"""

from __future__ import annotations

DRILL_PREFIX = "imctl-drill."


def is_drill_user(user: str) -> bool:
    return user.startswith(DRILL_PREFIX)


def drill_users(run: str, pairs: int) -> list[tuple[str, str]]:
    """(sender, receiver) per pair of one drill run."""
    return [(f"{DRILL_PREFIX}{run}.s{p}", f"{DRILL_PREFIX}{run}.r{p}") for p in range(pairs)]


def conversations_like(run: str | None) -> str:
    """A LIKE pattern for the direct conversations between two drill users (of one run, or of
    any): ``d:<a>:<b>`` with both ids under the prefix."""
    users = _escape(DRILL_PREFIX + (f"{run}." if run is not None else ""))
    return f"d:{users}%:{users}%"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
