"""Who a user is and which conversation two users share: the rules the wire protocol checks and
the store relies on, apart from both so the store need not import the protocol.
"""

from __future__ import annotations

import re

USER_ID_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")  # \Z: "$" would accept a final "\n"


def direct_conv_id(a: str, b: str) -> str:
    """One stable id per pair of users, whoever sends first. ':' cannot occur in a user id."""
    lo, hi = (a, b) if a <= b else (b, a)
    return f"d:{lo}:{hi}"


def direct_members(conv: str) -> tuple[str, str] | None:
    """The pair of a canonical direct id; None for anything else (so d:b:a is not a 2nd chat)."""
    parts = conv.split(":")
    if len(parts) != 3 or parts[0] != "d":
        return None
    a, b = parts[1], parts[2]
    if not (USER_ID_RE.match(a) and USER_ID_RE.match(b)) or a > b:
        return None
    return a, b
