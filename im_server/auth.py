"""JWT (HS256) tokens: ``sub`` is the user id, ``exp`` is always enforced."""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt

from im_server.errors import AuthError, ErrorCode
from im_server.protocol import USER_ID_RE

ALGORITHM = "HS256"
# What the read-only digest credential is derived for (see digest_token).
DIGEST_SCOPE = b"im-admin:digest:v1"


def mint(secret: str, user: str, ttl_seconds: int = 3600, now: float | None = None) -> str:
    if not USER_ID_RE.match(user):
        raise ValueError(f"invalid user id {user!r}: use [A-Za-z0-9_.@-], 1-64 characters")
    if ttl_seconds <= 0:
        raise ValueError("ttl must be positive")
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": user, "iat": issued, "exp": issued + ttl_seconds}, secret, ALGORITHM)


def verify(secret: str, token: str) -> str:
    """Return the user id of a valid token, or raise AuthError saying why not."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(ErrorCode.TOKEN_EXPIRED, "token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(ErrorCode.AUTH_FAILED, f"invalid token: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID_RE.match(sub):
        raise AuthError(ErrorCode.AUTH_FAILED, "token subject is not a valid user id")
    return sub


def digest_token(admin_token: str) -> str:
    """The credential GET /admin/digest accepts besides the admin token itself: an HMAC of the
    admin token, so a caller that only reads the digest (imctl, through a load balancer that may
    be plain HTTP) never sends the token that can mint any user's JWT. Seen on the wire, it
    grants reading counts and nothing else."""
    return hmac.new(admin_token.encode(), DIGEST_SCOPE, hashlib.sha256).hexdigest()
