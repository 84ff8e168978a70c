"""The fan-out bus between im-server nodes: NATS core subjects, at-most-once.

Nothing on the bus is needed for correctness: every message it carries is already committed in
PostgreSQL, and clients repair gaps by seq with ``sync``. The bus only makes delivery fast.

Subjects:
    im.u.<user>     frames for every device of <user>, wherever it is connected
    im.p.<user>     presence changes of <user>, for nodes whose clients watch <user>
    im.pq           presence queries: "which of these users do you hold?" (request/many-reply)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from im_server.ratelog import LogThrottle

log = logging.getLogger("im_server.bus")

Handler = Callable[[str, bytes, str | None], Awaitable[None]]


# Every subject the nodes use is built and taken apart here, and nowhere else.
_USER_PREFIX = "im.u."
_PRESENCE_PREFIX = "im.p."


def user_subject(user: str) -> str:
    return f"{_USER_PREFIX}{user}"


def presence_subject(user: str) -> str:
    return f"{_PRESENCE_PREFIX}{user}"


def user_of(subject: str) -> str | None:
    """The user a ``user_subject`` names (not yet validated); None for any other subject."""
    return subject[len(_USER_PREFIX) :] if subject.startswith(_USER_PREFIX) else None


def presence_user_of(subject: str) -> str | None:
    """The user a ``presence_subject`` names (not yet validated); None for any other subject."""
    return subject[len(_PRESENCE_PREFIX) :] if subject.startswith(_PRESENCE_PREFIX) else None


# Every presence change in the cluster ('>' also matches user ids with dots in them).
PRESENCE_ALL = f"{_PRESENCE_PREFIX}>"


PRESENCE_QUERY = "im.pq"


class Bus(Protocol):
    @property
    def connected(self) -> bool: ...

    async def subscribe(self, subject: str) -> None: ...

    async def unsubscribe(self, subject: str) -> None: ...

    async def publish(self, subject: str, payload: bytes) -> None: ...

    async def gather(self, subject: str, payload: bytes, wait: float) -> list[bytes]: ...

    async def reply(self, reply_to: str, payload: bytes) -> None: ...

    async def close(self) -> None: ...


class NatsBus:
    """A NATS connection that keeps its subscriptions across reconnects (nats-py resends SUB).

    ``user``/``password`` log in to a server that requires them (every deployed bus does);
    nats-py sends them again on every reconnect, to whichever server of the cluster it picks."""

    def __init__(
        self,
        url: str,
        handler: Handler,
        on_state: Callable[[bool], None],
        *,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.url = url
        self._user = user
        self._password = password
        self._handler = handler
        self._on_state = on_state
        self._nc: Any = None
        self._subs: dict[str, Any] = {}
        self._connected = False
        self._refused = LogThrottle()

    @property
    def connected(self) -> bool:
        return self._connected

    def _set_state(self, up: bool) -> None:
        if up != self._connected:
            log.warning("bus %s", "connected" if up else "disconnected")
        self._connected = up
        self._on_state(up)

    async def start(self) -> None:
        import nats  # the bus is optional: single-node servers never import it

        async def disconnected() -> None:
            self._set_state(False)

        async def reconnected() -> None:
            self._set_state(True)

        async def error(exc: Exception) -> None:
            if "Authorization" in str(exc):
                # Wrong or missing credentials do not heal by retrying (nats-py retries every
                # 0.25 s, and start() waits until it gets in); say so, once in a while.
                if self._refused.due():
                    log.error("NATS refused our login (IM_NATS_USER/IM_NATS_PASSWORD): %s", exc)
            else:
                log.debug("nats error: %r", exc)

        self._nc = await nats.connect(
            self.url,
            name="im-server",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
            ping_interval=5,
            max_outstanding_pings=2,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            user=self._user,
            password=self._password,
            # Bounded: while NATS is down, publishes buffer up to this and then are dropped.
            pending_size=8 * 1024 * 1024,
        )
        self._set_state(True)

    async def _on_msg(self, msg: Any) -> None:
        try:
            await self._handler(msg.subject, msg.data, msg.reply or None)
        except Exception:
            log.exception("bus handler failed for %s", msg.subject)

    async def subscribe(self, subject: str) -> None:
        if subject in self._subs or self._nc is None:
            return
        self._subs[subject] = await self._nc.subscribe(subject, cb=self._on_msg)
        # Make sure the server has the SUB before the caller relies on it (welcome, resume).
        if self._connected:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)

    async def unsubscribe(self, subject: str) -> None:
        sub = self._subs.pop(subject, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def publish(self, subject: str, payload: bytes) -> None:
        if self._nc is None:
            return
        try:
            await self._nc.publish(subject, payload)
        except Exception as exc:  # at-most-once: a lost publish is repaired by sync
            log.debug("publish to %s dropped: %r", subject, exc)

    async def gather(self, subject: str, payload: bytes, wait: float) -> list[bytes]:
        """Publish a request and collect every reply that arrives within ``wait`` seconds."""
        if self._nc is None or not self._connected:
            return []
        inbox = self._nc.new_inbox()
        replies: list[bytes] = []

        async def collect(msg: Any) -> None:
            replies.append(msg.data)

        try:
            sub = await self._nc.subscribe(inbox, cb=collect)
            await self._nc.publish(subject, payload, reply=inbox)
            await self._nc.flush(timeout=wait)
            await asyncio.sleep(wait)
            await sub.unsubscribe()
        except Exception as exc:
            log.debug("gather on %s failed: %r", subject, exc)
        return replies

    async def reply(self, reply_to: str, payload: bytes) -> None:
        await self.publish(reply_to, payload)

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
        self._connected = False
