"""Error codes on the wire and the exceptions that carry them.

Exception tree::

    ImError                     has an ErrorCode; becomes an ``error`` frame
    ├── FrameError              the frame itself is bad (json, type, fields, size)
    ├── AuthError               hello refused: the connection is closed after the error frame
    ├── AccessError             not a member, unknown conversation
    ├── LimitError              rate limit, session cap (retryable where it says so)
    └── UnavailableError        database or bus down, draining, outcome unknown (retryable)

``unavailable`` and ``draining`` mean nothing was committed. ``outcome_unknown`` means the
commit was under way when the server had to answer (the database stalled or the connection
broke mid-commit): it may or may not be committed. Both are answered the same way, by sending
again with the same ``cid``: a committed send then answers as a duplicate with its seq.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_VERSION = "bad_version"
    NOT_AUTHENTICATED = "not_authenticated"
    ALREADY_AUTHENTICATED = "already_authenticated"
    AUTH_FAILED = "auth_failed"
    TOKEN_EXPIRED = "token_expired"
    HELLO_TIMEOUT = "hello_timeout"
    SESSION_LIMIT = "session_limit"
    RATE_LIMITED = "rate_limited"
    NOT_MEMBER = "not_member"
    UNKNOWN_CONVERSATION = "unknown_conversation"
    FORBIDDEN = "forbidden"
    SLOW_CONSUMER = "slow_consumer"
    UNAVAILABLE = "unavailable"
    DRAINING = "draining"
    OUTCOME_UNKNOWN = "outcome_unknown"
    INTERNAL = "internal"
    WATCH_LIMIT = "watch_limit"


# Codes a client may retry unchanged (same cid): nothing was committed, or (outcome_unknown)
# the resend is answered as a duplicate if it was.
RETRYABLE = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.UNAVAILABLE,
        ErrorCode.DRAINING,
        ErrorCode.OUTCOME_UNKNOWN,
        ErrorCode.INTERNAL,
        ErrorCode.SLOW_CONSUMER,
    }
)


class ImError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class FrameError(ImError):
    def __init__(self, code: ErrorCode, message: str, ref: dict[str, str] | None = None) -> None:
        super().__init__(code, message)
        # The rid/cid of the frame, so the error can be matched to the request it answers.
        self.ref: dict[str, str] = ref or {}


class AuthError(ImError):
    pass


class AccessError(ImError):
    pass


class LimitError(ImError):
    def __init__(self, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(code, message)
        self.retry_after_ms = retry_after_ms


class UnavailableError(ImError):
    pass
