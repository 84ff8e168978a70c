"""Wire protocol v1, sans-I/O: text frames in, typed requests out; typed results in, text out.

Nothing here touches a socket, a database or the clock, so every rule about what a valid frame
is can be tested by calling functions. ``docs/protocol.md`` is the prose version of this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from im_server.conversations import USER_ID_RE, direct_members
from im_server.errors import ErrorCode, FrameError

PROTOCOL_VERSION = 1

# Conversation ids are ours (d:alice:bob, g:<hex>); the bound keeps a hostile id from being big.
CONV_ID_RE = re.compile(r"^[A-Za-z0-9_.@:-]{1,140}\Z")
MAX_CID = 64
MAX_RID = 64
MAX_SYNC_LIMIT = 500
MAX_GROUP_MEMBERS = 1000
MAX_TITLE = 200
MAX_WATCH = 1000
# One resume query per entry: bounded like the convs list a client can learn them from.
MAX_RESUME = 1000


# --- client -> server ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    token: str
    device: str | None
    resume: dict[str, int]


@dataclass(frozen=True, slots=True)
class Send:
    cid: str
    conv: str | None
    to: str | None
    body: str  # canonical JSON text of the body, stored and pushed byte for byte


@dataclass(frozen=True, slots=True)
class Sync:
    rid: str | None
    conv: str
    after_seq: int
    limit: int


@dataclass(frozen=True, slots=True)
class Read:
    rid: str | None
    conv: str
    seq: int


@dataclass(frozen=True, slots=True)
class Convs:
    rid: str | None


@dataclass(frozen=True, slots=True)
class Typing:
    conv: str


@dataclass(frozen=True, slots=True)
class Watch:
    rid: str | None
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupCreate:
    rid: str | None
    title: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupAdd:
    rid: str | None
    conv: str
    user: str


@dataclass(frozen=True, slots=True)
class GroupRemove:
    rid: str | None
    conv: str
    user: str


@dataclass(frozen=True, slots=True)
class GroupMembers:
    rid: str | None
    conv: str


@dataclass(frozen=True, slots=True)
class Ping:
    rid: str | None


Request = (
    Hello
    | Send
    | Sync
    | Read
    | Convs
    | Typing
    | Watch
    | GroupCreate
    | GroupAdd
    | GroupRemove
    | GroupMembers
    | Ping
)


@dataclass(slots=True)
class _Fields:
    """Typed access to one frame's fields; every failure names the field."""

    obj: dict[str, Any]
    ftype: str
    raw: str | bytes
    # rid/cid of the frame, so an error can be matched to the request that caused it.
    ref: dict[str, str] = field(default_factory=dict)

    def _fail(self, name: str, want: str) -> FrameError:
        return FrameError(
            ErrorCode.BAD_FRAME, f"{self.ftype}: field '{name}' must be {want}", self.ref
        )

    def string(self, name: str, *, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
        v = self.obj.get(name)
        if not isinstance(v, str) or not v or len(v) > max_len:
            raise self._fail(name, f"a non-empty string of at most {max_len} characters")
        if pattern is not None and not pattern.match(v):
            raise self._fail(name, f"a string matching {pattern.pattern}")
        return v

    def opt_string(
        self, name: str, *, max_len: int, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        if self.obj.get(name) is None:
            return None
        return self.string(name, max_len=max_len, pattern=pattern)

    def integer(self, name: str, *, lo: int, hi: int, default: int | None = None) -> int:
        v = self.obj.get(name, default)
        # bool is an int in Python; on the wire it is not a number.
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise self._fail(name, f"an integer from {lo} to {hi}")
        return v

    def user_list(
        self, name: str, *, max_len: int, default: list[str] | None = None
    ) -> tuple[str, ...]:
        v = self.obj.get(name, default)
        if not isinstance(v, list) or len(v) > max_len:
            raise self._fail(name, f"a list of at most {max_len} user ids")
        for u in v:
            if not isinstance(u, str) or not USER_ID_RE.match(u):
                raise self._fail(name, "a list of user ids ([A-Za-z0-9_.@-], 1-64 characters)")
        return tuple(dict.fromkeys(v))


_MAX_SEQ = 2**62


def parse_request(data: str | bytes) -> Request:
    """Parse one client text frame. Raises FrameError with a code a client can act on."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise FrameError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    ftype = obj.get("type")
    if not isinstance(ftype, str):
        raise FrameError(ErrorCode.BAD_FRAME, "frame needs a string field 'type'")
    f = _Fields(obj, ftype, data)
    for key in ("rid", "cid"):
        ref = obj.get(key)
        if isinstance(ref, str) and len(ref) <= MAX_CID:
            f.ref[key] = ref
    parser = _PARSERS.get(ftype)
    if parser is None:
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type '{ftype[:40]}'", f.ref)
    req: Request = parser(f)
    return req


def _rid(f: _Fields) -> str | None:
    return f.opt_string("rid", max_len=MAX_RID)


def _conv(f: _Fields) -> str:
    return f.string("conv", max_len=140, pattern=CONV_ID_RE)


def _user(f: _Fields) -> str:
    return f.string("user", max_len=64, pattern=USER_ID_RE)


def _hello(f: _Fields) -> Hello:
    version = f.integer("v", lo=0, hi=1_000_000, default=PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise FrameError(
            ErrorCode.BAD_VERSION, f"protocol version {version} is not supported; use 1"
        )
    token = f.string("token", max_len=8192)
    device = f.opt_string("device", max_len=64)
    raw_resume = f.obj.get("resume") or {}
    if not isinstance(raw_resume, dict) or len(raw_resume) > MAX_RESUME:
        raise f._fail(
            "resume", f"an object mapping at most {MAX_RESUME} conversation ids to a last seq"
        )
    resume: dict[str, int] = {}
    for conv, seq in raw_resume.items():
        if (
            not CONV_ID_RE.match(conv)
            or not isinstance(seq, int)
            or isinstance(seq, bool)
            or not 0 <= seq < _MAX_SEQ
        ):
            raise f._fail("resume", "an object mapping conversation id to the last seq seen")
        resume[conv] = seq
    return Hello(version, token, device, resume)


def _send(f: _Fields) -> Send:
    cid = f.string("cid", max_len=MAX_CID)
    conv = f.opt_string("conv", max_len=140, pattern=CONV_ID_RE)
    to = f.opt_string("to", max_len=64, pattern=USER_ID_RE)
    if (conv is None) == (to is None):
        raise f._fail("conv", "given, or 'to' given, but not both")
    if "body" not in f.obj:
        raise f._fail("body", "present (any JSON value)")
    if conv is not None and conv.startswith("d:") and direct_members(conv) is None:
        raise f._fail("conv", "a group id, or a direct id as returned in an ack (d:<a>:<b>, a<=b)")
    try:
        body = orjson.dumps(f.obj["body"]).decode()
    except orjson.JSONEncodeError:  # valid JSON, but nested deeper than the encoder writes
        raise f._fail("body", "a JSON value nested at most 254 levels deep") from None
    raw = f.raw if isinstance(f.raw, str) else f.raw.decode()  # orjson checked the UTF-8
    if _LONG_DIGITS.search(raw) and not _ints_fit(raw):
        raise f._fail("body", f"JSON whose integers are from {_INT_MIN} to {_INT_MAX}")
    return Send(cid, conv, to, body)


# orjson reads a wider integer as a float, so 2**70 would be stored and pushed as
# 1.1805916207174113e+21: a silent change of the body. Refused instead (bad_frame): a body is
# stored byte for byte or not at all, and an application needing big numbers sends strings.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# Any integer out of range has at least 19 digits; only then is the frame parsed again, with
# the standard library, which shows the integers (digits inside strings do not count).
_LONG_DIGITS = re.compile(r"[0-9]{19}")


class _WideInt(ValueError):
    pass


def _checked_int(text: str) -> int:
    if len(text) > 21:  # before int(): a 100 KB digit string would be slow to convert
        raise _WideInt
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _WideInt
    return value


def _ints_fit(raw: str) -> bool:
    try:
        json.loads(raw, parse_int=_checked_int)
    except _WideInt:
        return False
    return True


def _sync(f: _Fields) -> Sync:
    return Sync(
        _rid(f),
        _conv(f),
        f.integer("after_seq", lo=0, hi=_MAX_SEQ, default=0),
        f.integer("limit", lo=1, hi=MAX_SYNC_LIMIT, default=100),
    )


def _read(f: _Fields) -> Read:
    return Read(_rid(f), _conv(f), f.integer("seq", lo=0, hi=_MAX_SEQ))


def _convs(f: _Fields) -> Convs:
    return Convs(_rid(f))


def _typing(f: _Fields) -> Typing:
    return Typing(_conv(f))


def _watch(f: _Fields) -> Watch:
    return Watch(_rid(f), f.user_list("users", max_len=MAX_WATCH))


def _group_create(f: _Fields) -> GroupCreate:
    title = f.obj.get("title", "")
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise f._fail("title", f"a string of at most {MAX_TITLE} characters")
    return GroupCreate(
        _rid(f), title, f.user_list("members", max_len=MAX_GROUP_MEMBERS, default=[])
    )


def _group_add(f: _Fields) -> GroupAdd:
    return GroupAdd(_rid(f), _conv(f), _user(f))


def _group_remove(f: _Fields) -> GroupRemove:
    return GroupRemove(_rid(f), _conv(f), _user(f))


def _group_members(f: _Fields) -> GroupMembers:
    return GroupMembers(_rid(f), _conv(f))


def _ping(f: _Fields) -> Ping:
    return Ping(_rid(f))


# One row per client frame: its wire name, the request it becomes, and its parser.
_FRAMES: tuple[tuple[str, type, Callable[[_Fields], Request]], ...] = (
    ("hello", Hello, _hello),
    ("send", Send, _send),
    ("sync", Sync, _sync),
    ("read", Read, _read),
    ("convs", Convs, _convs),
    ("typing", Typing, _typing),
    ("watch", Watch, _watch),
    ("group_create", GroupCreate, _group_create),
    ("group_add", GroupAdd, _group_add),
    ("group_remove", GroupRemove, _group_remove),
    ("group_members", GroupMembers, _group_members),
    ("ping", Ping, _ping),
)
_PARSERS = {name: parse for name, _, parse in _FRAMES}
# The wire name of a parsed request (metrics count frames by it).
FRAME_TYPE_OF: dict[type, str] = {cls: name for name, cls, _ in _FRAMES}

CLIENT_FRAME_TYPES = frozenset(_PARSERS)


def error_ref(exc: BaseException) -> dict[str, str]:
    """The rid/cid of the request an error answers, when the frame had one."""
    return exc.ref if isinstance(exc, FrameError) else {}


# --- server -> client ---------------------------------------------------------------------


def _dumps(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


def _q(s: str) -> str:
    return orjson.dumps(s).decode()


def welcome(user: str, session: str, server_time: int, node: str) -> str:
    return _dumps(
        {
            "type": "welcome",
            "v": PROTOCOL_VERSION,
            "user": user,
            "session": session,
            "server_time": server_time,
            "node": node,
        }
    )


def ack(cid: str, conv: str, seq: int, ts: int, duplicate: bool = False) -> str:
    frame: dict[str, Any] = {"type": "ack", "cid": cid, "conv": conv, "seq": seq, "ts": ts}
    if duplicate:
        frame["duplicate"] = True
    return _dumps(frame)


def msg(conv: str, seq: int, sender: str, ts: int, body: str) -> str:
    # Built by hand so the stored body text is pushed without a parse and re-encode.
    return (
        f'{{"type":"msg","conv":{_q(conv)},"seq":{seq},"from":{_q(sender)},'
        f'"ts":{ts},"body":{body}}}'
    )


def msg_item(seq: int, sender: str, ts: int, body: str) -> str:
    return f'{{"seq":{seq},"from":{_q(sender)},"ts":{ts},"body":{body}}}'


def batch(rid: str | None, conv: str, items: list[str], more: bool, last_seq: int) -> str:
    head = f'{{"type":"batch","conv":{_q(conv)},'
    if rid is not None:
        head += f'"rid":{_q(rid)},'
    more_s = "true" if more else "false"
    return f'{head}"msgs":[{",".join(items)}],"more":{more_s},"last_seq":{last_seq}}}'


def reply(ftype: str, rid: str | None, **fields: Any) -> str:
    frame: dict[str, Any] = {"type": ftype}
    if rid is not None:
        frame["rid"] = rid
    frame.update(fields)
    return _dumps(frame)


def error(
    code: ErrorCode,
    message: str,
    *,
    retryable: bool = False,
    ref: dict[str, str] | None = None,
    retry_after_ms: int | None = None,
) -> str:
    frame: dict[str, Any] = {
        "type": "error",
        "code": code.value,
        "message": message,
        "retryable": retryable,
    }
    if ref:
        frame.update(ref)
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return _dumps(frame)


def reconnect(after_ms: int) -> str:
    return _dumps({"type": "reconnect", "after_ms": after_ms})


def typing(conv: str, user: str) -> str:
    return _dumps({"type": "typing", "conv": conv, "user": user})


def presence(user: str, status: str) -> str:
    return _dumps({"type": "presence", "user": user, "status": status})
