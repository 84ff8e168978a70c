"""JWT (HS256) tokens: ``sub`` is the user id, ``exp`` is always enforced."""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt

from im_server.conversations import USER_ID_RE
from im_server.errors import AuthError, ErrorCode

ALGORITHM = "HS256"
# Longest token lifetime accepted (IM_MAX_TOKEN_TTL's default) and minted (imctl, admin API):
# a leaked token must not be good for decades, and a session ends when its token does.
MAX_TOKEN_TTL = 30 * 86400
# Clocks of the minting host and the node may differ a little.
CLOCK_SKEW = 300
# What the read-only digest credential is derived for (see digest_token).
DIGEST_SCOPE = b"im-admin:digest:v1"


def mint(secret: str, user: str, ttl_seconds: int = 3600, now: float | None = None) -> str:
    if not USER_ID_RE.match(user):
        raise ValueError(f"invalid user id {user!r}: use [A-Za-z0-9_.@-], 1-64 characters")
    if ttl_seconds <= 0:
        raise ValueError("ttl must be positive")
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": user, "iat": issued, "exp": issued + ttl_seconds}, secret, ALGORITHM)


def verify(secret: str, token: str, max_ttl: int = MAX_TOKEN_TTL) -> str:
    """Return the user id of a valid token, or raise AuthError saying why not."""
    return verify_claims(secret, token, max_ttl)[0]


def verify_claims(
    secret: str, token: str, max_ttl: int = MAX_TOKEN_TTL, now: float | None = None
) -> tuple[str, int]:
    """The user id and expiry (Unix seconds) of a valid token; AuthError saying why not.

    A token whose ``exp`` lies more than ``max_ttl`` ahead is refused, whoever signed it."""
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
    exp = int(claims["exp"])  # PyJWT checked it is a number in the future
    if exp - (time.time() if now is None else now) > max_ttl + CLOCK_SKEW:
        raise AuthError(ErrorCode.AUTH_FAILED, f"token lifetime is over {max_ttl} seconds")
    return sub, exp


def digest_token(admin_token: str) -> str:
    """The credential GET /admin/digest accepts besides the admin token itself: an HMAC of the
    admin token, so a caller that only reads the digest (imctl, through a load balancer that may
    be plain HTTP) never sends the token that can mint any user's JWT. Seen on the wire, it
    grants reading counts and nothing else."""
    return hmac.new(admin_token.encode(), DIGEST_SCOPE, hashlib.sha256).hexdigest()
