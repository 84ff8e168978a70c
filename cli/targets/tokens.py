"""User tokens for the hello frame, signed with a stack's JWT secret (every target's nodes
verify them the same way)."""

from __future__ import annotations

import time
from typing import Any

from cli.errors import UsageError
from cli.targets.local.drill_users import is_drill_user


def mint(secret: str, user: str, ttl: int) -> dict[str, Any]:
    """-> {"user", "token", "expires_at"}; refuses what the nodes would refuse, and the user ids
    reserved for drills."""
    from im_server import auth

    # The nodes refuse tokens that live longer than IM_MAX_TOKEN_TTL (default this).
    if not 1 <= ttl <= auth.MAX_TOKEN_TTL:
        raise UsageError(f"--ttl must be 1 to {auth.MAX_TOKEN_TTL} seconds, got {ttl}")
    if is_drill_user(user):
        raise UsageError(
            f"user ids starting with {user.split('.')[0]}. are reserved for drills",
            "`imctl drill clean` deletes their conversations; pick another id",
        )
    try:
        token = auth.mint(secret, user, ttl)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return {"user": user, "token": token, "expires_at": int(time.time()) + ttl}
