"""Who is connected to this node, and getting frames to them (locally and through the bus)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import orjson

from im_server import protocol
from im_server.bus import PRESENCE_ALL, PRESENCE_QUERY, Bus, presence_subject, user_subject
from im_server.errors import ErrorCode, LimitError

log = logging.getLogger("im_server.hub")


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

    async def on_bus(self, subject: str, data: bytes, reply_to: str | None) -> None:
        if subject.startswith("im.u."):
            origin, kind, frame = data.split(b"\n", 2)
            if origin.decode() != self.node_id:  # our own publish was delivered locally already
                self.push_local(subject[5:], frame.decode(), kind.decode())
        elif subject.startswith("im.p."):
            node, status = data.decode().split("\n", 1)
            if node != self.node_id:
                self._remote_presence(subject[5:], node, status == "online")
        elif subject == PRESENCE_QUERY and reply_to and self.bus is not None:
            asked = orjson.loads(data)
            held = [u for u in asked if u in self.by_user]
            await self.bus.reply(reply_to, orjson.dumps({"node": self.node_id, "users": held}))

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
