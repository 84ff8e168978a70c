"""Who is connected to this node, and getting frames to them (locally and through the bus)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import orjson

from im_server import conversations, protocol
from im_server.bus import (
    PRESENCE_ALL,
    PRESENCE_QUERY,
    Bus,
    presence_subject,
    presence_user_of,
    user_of,
    user_subject,
)
from im_server.errors import ErrorCode, LimitError
from im_server.ratelog import LogThrottle

log = logging.getLogger("im_server.hub")
# One for the process (not per Hub): the log it guards is the process's.
_drops = LogThrottle()


class Session(Protocol):
    id: str
    user: str

    def push(self, frame: str, kind: str) -> None: ...


class Hub:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.bus: Bus | None = None  # set by the server once NATS is configured
        self._node_prefix = node_id.encode() + b"\n"
        self.by_user: dict[str, dict[str, Session]] = {}
        # Presence: who watches whom here, and which other nodes hold a watched user.
        self.watchers: dict[str, set[Session]] = {}
        self.watching: dict[str, set[str]] = {}
        self.remote_online: dict[str, set[str]] = {}

    def sessions_of(self, user: str) -> int:
        return len(self.by_user.get(user, ()))

    async def attach(self, s: Session) -> None:
        """Register a session; returns once the bus will route the user's frames here."""
        devices = self.by_user.setdefault(s.user, {})
        first = not devices
        devices[s.id] = s
        if first:
            if self.bus is not None:
                await self.bus.subscribe(user_subject(s.user))
            await self._presence_changed(s.user, online=True)

    async def detach(self, s: Session) -> None:
        devices = self.by_user.get(s.user)
        if devices is None or devices.pop(s.id, None) is None:
            return
        for user in self.watching.pop(s.id, ()):
            ws = self.watchers.get(user)
            if ws is not None:
                ws.discard(s)
                if not ws:
                    del self.watchers[user]
                    self.remote_online.pop(user, None)
        if not devices:
            del self.by_user[s.user]
            if self.bus is not None:
                await self.bus.unsubscribe(user_subject(s.user))
            await self._presence_changed(s.user, online=False)

    # --- delivery -------------------------------------------------------------------------

    def push_local(self, user: str, frame: str, kind: str, exclude: str | None = None) -> None:
        devices = self.by_user.get(user)
        if devices:
            for sid, s in devices.items():
                if sid != exclude:
                    s.push(frame, kind)

    async def deliver(
        self, users: Iterable[str], frame: str, kind: str, exclude: str | None = None
    ) -> None:
        """Push to every device of every user: here directly, elsewhere through the bus."""
        payload = None
        for user in users:
            self.push_local(user, frame, kind, exclude)
            if self.bus is not None:
                if payload is None:
                    payload = self._node_prefix + kind.encode() + b"\n" + frame.encode()
                await self.bus.publish(user_subject(user), payload)

    # Set by the server: counts bus frames dropped as malformed, by subject family.
    bus_dropped: Callable[[str], None] | None = None

    async def on_bus(self, subject: str, data: bytes, reply_to: str | None) -> None:
        """Act on a frame from another node; drop (count, log rarely) anything malformed.

        The bus is authenticated, but a node must not push a client whatever arrives: a bug
        or a leaked credential would otherwise reach every session, and one bad frame used to
        raise out of here."""
        if (user := user_of(subject)) is not None:
            push = _user_frame(user, data)
            if push is None:
                self._drop("user", subject)
                return
            origin, kind, frame = push
            if origin != self.node_id:  # our own publish was delivered locally already
                self.push_local(user, frame, kind)
        elif (user := presence_user_of(subject)) is not None:
            change = _presence_frame(user, data)
            if change is None:
                self._drop("presence", subject)
                return
            node, online = change
            if node != self.node_id:
                self._remote_presence(user, node, online)
        elif subject == PRESENCE_QUERY:
            asked = _presence_query(data)
            if asked is None or not reply_to:
                self._drop("query", subject)
                return
            if self.bus is not None:
                held = [u for u in asked if u in self.by_user]
                await self.bus.reply(reply_to, orjson.dumps({"node": self.node_id, "users": held}))
        else:
            self._drop("unknown", subject)

    def _drop(self, family: str, subject: str) -> None:
        if self.bus_dropped is not None:
            self.bus_dropped(family)
        log.debug("dropped a malformed bus frame on %s", subject)
        if count := _drops.due():
            log.warning(
                "dropped %d malformed bus frame(s), the last on %s (metric im_bus_dropped_total)",
                count,
                subject,
            )

    # --- presence -------------------------------------------------------------------------

    def is_online(self, user: str) -> bool:
        return user in self.by_user or bool(self.remote_online.get(user))

    async def _presence_changed(self, user: str, *, online: bool) -> None:
        if self.bus is not None:
            status = "online" if online else "offline"
            await self.bus.publish(presence_subject(user), f"{self.node_id}\n{status}".encode())
        if online or not self.is_online(user):
            self._notify_watchers(user, online)

    def _remote_presence(self, user: str, node: str, online: bool) -> None:
        if user not in self.watchers:
            return
        before = self.is_online(user)
        nodes = self.remote_online.setdefault(user, set())
        if online:
            nodes.add(node)
        else:
            nodes.discard(node)
        if self.is_online(user) != before:
            self._notify_watchers(user, not before)

    def _notify_watchers(self, user: str, online: bool) -> None:
        watchers = self.watchers.get(user)
        if watchers:
            frame = protocol.presence(user, "online" if online else "offline")
            for s in watchers:
                s.push(frame, "presence")

    async def watch(
        self, s: Session, users: Iterable[str], per_session: int, per_node: int
    ) -> list[str]:
        """Start sending ``s`` presence changes of ``users``; return those online now.

        Every distinct watched user costs a bus subscription, so both the users one session
        watches and the users this node watches are capped; a request over either cap is
        refused whole (nothing of it is watched)."""
        mine = self.watching.get(s.id, set())
        new = [u for u in dict.fromkeys(users) if u not in mine]
        if len(mine) + len(new) > per_session:
            raise LimitError(
                ErrorCode.WATCH_LIMIT, f"a session may watch at most {per_session} users"
            )
        fresh = [u for u in new if u not in self.watchers]
        if len(self.watchers) + len(fresh) > per_node:
            raise LimitError(
                ErrorCode.WATCH_LIMIT, f"this node watches its limit of {per_node} users"
            )
        # Registered before the first await, so concurrent watches count each other.
        mine = self.watching.setdefault(s.id, mine)
        for user in new:
            mine.add(user)
            self.watchers.setdefault(user, set()).add(s)
        if fresh and self.bus is not None:
            # One subscription to every presence change, not one per watched user: a NATS
            # subscription costs ~6 KB here (a task and a queue each), and freeing 300,000 of
            # them after a watch flood did not give the memory back. Events of users nobody
            # here watches are dropped in _remote_presence; they are as frequent as sessions
            # starting and ending anywhere, a few bytes each.
            await self.bus.subscribe(PRESENCE_ALL)
            for raw in await self.bus.gather(PRESENCE_QUERY, orjson.dumps(fresh), 0.05):
                answer = orjson.loads(raw)
                if answer.get("node") == self.node_id:
                    continue
                for user in answer.get("users", []):
                    if user in self.watchers:
                        self.remote_online.setdefault(user, set()).add(answer["node"])
        return sorted(u for u in mine if self.is_online(u))


# --- bus frames from other nodes ----------------------------------------------------------

_MAX_PRESENCE_QUERY: Final = protocol.MAX_WATCH


def _user_frame(user: str, data: bytes) -> tuple[str, str, str] | None:
    """(origin node, kind, frame) from their three lines, frame a JSON object of that kind."""
    if not conversations.USER_ID_RE.match(user):
        return None
    parts = data.split(b"\n", 2)
    if len(parts) != 3:
        return None
    try:
        origin, kind, text = (p.decode() for p in parts)
        frame = orjson.loads(text)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    if not origin or not isinstance(frame, dict) or frame.get("type") != kind:
        return None
    check = _PUSH_SHAPES.get(kind)
    if check is not None and not check(frame):
        return None
    return origin, kind, text


def _is_int(v: Any, lo: int = 0) -> bool:
    return type(v) is int and v >= lo  # bool is an int subclass; a seq of true is not


def _str_matching(v: Any, pattern: Any) -> bool:
    return isinstance(v, str) and pattern.match(v) is not None


def _msg_shape(f: dict[str, Any]) -> bool:
    return (
        _str_matching(f.get("conv"), protocol.CONV_ID_RE)
        and _is_int(f.get("seq"), 1)
        and _str_matching(f.get("from"), conversations.USER_ID_RE)
        and _is_int(f.get("ts"))
        and "body" in f
    )


def _typing_shape(f: dict[str, Any]) -> bool:
    return _str_matching(f.get("conv"), protocol.CONV_ID_RE) and _str_matching(
        f.get("user"), conversations.USER_ID_RE
    )


# The kinds Hub.deliver publishes today; a kind added later still has to be a JSON object whose
# "type" names it.
_PUSH_SHAPES: Final[dict[str, Callable[[dict[str, Any]], bool]]] = {
    "msg": _msg_shape,
    "typing": _typing_shape,
}


def _presence_frame(user: str, data: bytes) -> tuple[str, bool] | None:
    """(node, online) from the lines ``<node>`` and ``online`` or ``offline``."""
    if not conversations.USER_ID_RE.match(user):
        return None
    try:
        node, status = data.decode().split("\n", 1)
    except (UnicodeDecodeError, ValueError):
        return None
    if not node or status not in ("online", "offline"):
        return None
    return node, status == "online"


def _presence_query(data: bytes) -> list[str] | None:
    """A JSON list of user ids (at most a watch request's worth), or None."""
    try:
        asked = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(asked, list)
        or len(asked) > _MAX_PRESENCE_QUERY
        or not all(isinstance(u, str) for u in asked)
    ):
        return None
    return asked
