"""Asyncio client SDK for protocol v1.

What it does for the application:
- reconnects with jittered exponential backoff (and after a server's ``reconnect`` frame);
- resends every unacked send with its original ``cid`` after a reconnect, so a send is
  committed exactly once however often the connection drops;
- delivers messages from others on ``messages`` in seq order per conversation, without
  duplicates: a seq gap (a lost bus message, a reconnect) triggers ``sync`` to fill it.

    async with Client(url, token) as c:
        ack = await c.send({"text": "hi"}, to="bob")
        msg = await c.messages.get()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from im_server.protocol import MAX_RESUME

log = logging.getLogger("im_server.client")

_AUTH_CODES = {"auth_failed", "token_expired", "bad_version"}


@dataclass(frozen=True, slots=True)
class Ack:
    cid: str
    conv: str
    seq: int
    ts: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    conv: str
    seq: int
    sender: str
    ts: int
    body: Any


class ServerError(Exception):
    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class ConnectionLost(Exception):
    """The request was in flight when the connection dropped; it may be retried."""


@dataclass(slots=True)
class _ConvState:
    next: int  # the next seq the application has not been given
    held: dict[int, Message | None] = field(default_factory=dict)  # None: our own (acked) send
    known_last: int = 0  # the highest seq the server has told us exists
    filling: bool = False


@dataclass(slots=True)
class _PendingSend:
    frame: str
    future: asyncio.Future[Ack]


class Client:
    def __init__(
        self,
        url: str,
        token: str | Callable[[], str],
        *,
        device: str | None = None,
        reconnect: bool = True,
        catch_up: bool = True,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        gap_wait: float = 0.05,
    ) -> None:
        self.url = url
        self._token = token
        self.device = device
        self.auto_reconnect = reconnect
        self.catch_up = catch_up
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.gap_wait = gap_wait
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.user: str | None = None
        self.node: str | None = None
        self.connects = 0
        self._convs: dict[str, _ConvState] = {}
        self._sends: dict[str, _PendingSend] = {}
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._rids = itertools.count(1)
        self._cid_prefix = secrets.token_hex(6)
        self._cids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._first: asyncio.Future[None] | None = None
        self._closing = False
        self._server_asked_after: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.fatal: ServerError | None = None
        # The server ended the session because the token expired (error, then close 1008).
        self._expired: ServerError | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and authenticate; raises ServerError if the server refuses the hello."""
        if self._runner is None:
            self._first = asyncio.get_running_loop().create_future()
            self._http = aiohttp.ClientSession()
            self._runner = asyncio.get_running_loop().create_task(self._run())
        assert self._first is not None
        await asyncio.wait_for(asyncio.shield(self._first), timeout)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        for t in list(self._tasks):
            t.cancel()
        if self._http is not None:
            await self._http.close()
        self._fail_all(ConnectionLost("client closed"))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def unacked(self) -> int:
        return len(self._sends)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _token_now(self) -> str:
        return self._token() if callable(self._token) else self._token

    async def _run(self) -> None:
        delay = self.backoff_min
        while not self._closing:
            try:
                await self._session()
                delay = self.backoff_min
            except ServerError as exc:
                if exc.code in _AUTH_CODES:
                    self.fatal = exc
                    if self._first is not None and not self._first.done():
                        self._first.set_exception(exc)
                    self._fail_all(exc)
                    return
                log.debug("session refused: %s", exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionLost) as exc:
                log.debug("connection failed: %r", exc)
            except Exception:
                # Whatever went wrong with one session, the loop must survive it: a dead
                # reconnect loop is a client that silently stops receiving.
                log.exception("session failed")
            self._connected.clear()
            self._fail_requests(ConnectionLost("connection dropped"))
            if self._closing or not self.auto_reconnect:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(ConnectionLost("could not connect"))
                self._fail_all(ConnectionLost("connection dropped"))
                return
            if self._server_asked_after is not None:
                wait, self._server_asked_after = self._server_asked_after, None
            else:
                wait = random.uniform(0, delay)  # full jitter: a reconnect storm spreads out
                delay = min(self.backoff_max, delay * 2)
            await asyncio.sleep(wait)

    async def _session(self) -> None:
        assert self._http is not None
        async with self._http.ws_connect(self.url, heartbeat=10.0, max_msg_size=0) as ws:
            hello: dict[str, Any] = {"type": "hello", "v": 1, "token": self._token_now()}
            if self.device:
                hello["device"] = self.device
            seen = ((c, st.next - 1) for c, st in self._convs.items() if st.next > 1)
            # The server refuses a longer resume; the rest is caught up by _resync (convs).
            resume = dict(itertools.islice(seen, MAX_RESUME))
            if resume:
                hello["resume"] = resume
            await ws.send_str(orjson.dumps(hello).decode())
            first = await ws.receive(timeout=15)
            if first.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionLost(f"no welcome (got {first.type.name})")
            frame = orjson.loads(first.data)
            if frame.get("type") == "reconnect":  # landed on a draining node: try elsewhere
                self._server_asked_after = frame.get("after_ms", 0) / 1000
                raise ConnectionLost("node is draining")
            if frame.get("type") == "error":
                raise ServerError(frame["code"], frame["message"], frame.get("retryable", False))
            if frame.get("type") != "welcome":
                raise ConnectionLost(f"expected welcome, got {frame.get('type')}")
            self.user = frame["user"]
            self.node = frame.get("node")
            self._ws = ws
            self.connects += 1
            self._connected.set()
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            # Resend what the previous connection did not get acked; the cid makes it safe.
            for p in list(self._sends.values()):
                await ws.send_str(p.frame)
            if self.connects > 1:
                # Conversations we never saw may have had pushes while we were away.
                self._spawn(self._resync())
            async for m in ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    self._on_frame(orjson.loads(m.data))
                elif m.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    break
            self._ws = None
            self._connected.clear()
            expired, self._expired = self._expired, None
            if expired is not None and not callable(self._token):
                # The same token would only be refused again: fatal, like at hello. A token
                # callable is asked for a fresh one by the reconnect.
                raise expired

    # --- inbound --------------------------------------------------------------------------

    def _on_frame(self, f: dict[str, Any]) -> None:
        t = f.get("type")
        if t == "msg":
            m = Message(f["conv"], f["seq"], f["from"], f["ts"], f["body"])
            self._seen(m.conv, m.seq, m)
        elif t == "ack":
            p = self._sends.pop(f["cid"], None)
            ack = Ack(f["cid"], f["conv"], f["seq"], f["ts"], bool(f.get("duplicate")))
            self._seen(ack.conv, ack.seq, None)
            if p is not None and not p.future.done():
                p.future.set_result(ack)
        elif t == "batch":
            if f.get("rid") is None:  # a resume batch, unasked: it feeds the conversation
                conv = f["conv"]
                for i in f["msgs"]:
                    m = Message(conv, i["seq"], i["from"], i["ts"], i["body"])
                    self._seen(conv, m.seq, m, fill=False)
                st = self._state(conv, 1)
                st.known_last = max(st.known_last, f.get("last_seq", 0))
                if st.next <= st.known_last and not st.filling:
                    self._start_fill(conv)
            self._answer(f)
        elif t == "error":
            self._on_error(f)
        elif t == "reconnect":
            self._server_asked_after = f.get("after_ms", 0) / 1000
        elif t in ("typing", "presence"):
            self.events.put_nowait(f)
        elif t == "resync":
            self._spawn(self._resync())
        else:
            self._answer(f)

    def _answer(self, f: dict[str, Any]) -> None:
        rid = f.get("rid")
        if rid is not None:
            fut = self._requests.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(f)

    def _on_error(self, f: dict[str, Any]) -> None:
        err = ServerError(f.get("code", "?"), f.get("message", ""), bool(f.get("retryable")))
        cid, rid = f.get("cid"), f.get("rid")
        if cid is not None and cid in self._sends:
            if err.retryable:
                # Nothing was committed; send again later with the same cid.
                after = f.get("retry_after_ms", 200) / 1000
                self._spawn(self._resend_later(cid, after))
            else:
                p = self._sends.pop(cid)
                if not p.future.done():
                    p.future.set_exception(err)
        elif rid is not None and rid in self._requests:
            fut = self._requests.pop(rid)
            if not fut.done():
                fut.set_exception(err)
        else:
            if err.code == "token_expired":
                self._expired = err
            self.events.put_nowait(f)

    async def _resend_later(self, cid: str, after: float) -> None:
        await asyncio.sleep(after)
        p = self._sends.get(cid)
        ws = self._ws
        if p is not None and ws is not None and self._server_asked_after is None:
            with contextlib.suppress(Exception):
                await ws.send_str(p.frame)

    def _state(self, conv: str, first_seq: int) -> _ConvState:
        st = self._convs.get(conv)
        if st is None:
            st = _ConvState(next=1 if self.catch_up else max(1, first_seq))
            self._convs[conv] = st
        return st

    def _seen(self, conv: str, seq: int, m: Message | None, fill: bool = True) -> None:
        st = self._state(conv, seq)
        if seq < st.next or seq in st.held:
            return  # a duplicate (bus redelivery, resend, sync overlap)
        st.held[seq] = m
        while st.next in st.held:
            item = st.held.pop(st.next)
            if item is not None:
                self.messages.put_nowait(item)
            st.next += 1
        if st.held and fill and not st.filling:
            self._start_fill(conv)

    async def _resync(self) -> None:
        """Compare every conversation's last seq with ours and fetch what we lack."""
        try:
            convs = await self.convs()
        except (ConnectionLost, ServerError, TimeoutError):
            return
        for c in convs:
            st = self._state(c["conv"], int(c["last_seq"]))
            st.known_last = max(st.known_last, int(c["last_seq"]))
            if st.next <= st.known_last and not st.filling:
                self._start_fill(c["conv"])

    def _start_fill(self, conv: str) -> None:
        self._convs[conv].filling = True
        self._spawn(self._fill(conv))

    async def _fill(self, conv: str) -> None:
        st = self._convs[conv]
        try:
            # Pushes from other nodes can overtake each other; give them a moment first.
            await asyncio.sleep(self.gap_wait)
            while st.held or st.known_last >= st.next:
                await self._connected.wait()
                before = st.next
                try:
                    msgs, _more, last = await self.sync(conv, st.next - 1, 500)
                except ConnectionLost:
                    continue
                st.known_last = max(st.known_last, last)
                for m in msgs:
                    self._seen(conv, m.seq, m, fill=False)
                if st.next == before:
                    break  # no progress: nothing more to fetch now; the next push retries
        finally:
            st.filling = False

    # --- outbound -------------------------------------------------------------------------

    def next_cid(self) -> str:
        return f"{self._cid_prefix}-{next(self._cids)}"

    async def send(
        self,
        body: Any,
        *,
        to: str | None = None,
        conv: str | None = None,
        cid: str | None = None,
        timeout: float | None = None,
    ) -> Ack:
        """Send until acked (across reconnects). The ack means the message is committed."""
        if self.fatal is not None:
            raise self.fatal
        cid = cid or self.next_cid()
        frame: dict[str, Any] = {"type": "send", "cid": cid, "body": body}
        if to is not None:
            frame["to"] = to
        if conv is not None:
            frame["conv"] = conv
        existing = self._sends.get(cid)
        if existing is not None:
            return await asyncio.wait_for(asyncio.shield(existing.future), timeout)
        fut: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        p = _PendingSend(orjson.dumps(frame).decode(), fut)
        self._sends[cid] = p
        ws = self._ws
        if ws is not None and self._server_asked_after is None:
            with contextlib.suppress(Exception):
                await ws.send_str(p.frame)
        return await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def request(self, frame: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        if self.fatal is not None:
            raise self.fatal
        await asyncio.wait_for(self._connected.wait(), timeout)
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        rid = f"r{next(self._rids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        try:
            await ws.send_str(orjson.dumps({**frame, "rid": rid}).decode())
        except Exception as exc:
            self._requests.pop(rid, None)
            raise ConnectionLost(str(exc)) from exc
        return await asyncio.wait_for(fut, timeout)

    async def sync(
        self, conv: str, after_seq: int = 0, limit: int = 100
    ) -> tuple[list[Message], bool, int]:
        f = await self.request(
            {"type": "sync", "conv": conv, "after_seq": after_seq, "limit": limit}
        )
        msgs = [Message(conv, i["seq"], i["from"], i["ts"], i["body"]) for i in f["msgs"]]
        return msgs, bool(f["more"]), int(f["last_seq"])

    async def history(self, conv: str) -> list[Message]:
        """Every message of a conversation, paging with sync."""
        out: list[Message] = []
        after = 0
        while True:
            msgs, more, _ = await self.sync(conv, after, 500)
            out.extend(msgs)
            if not more or not msgs:
                return out
            after = msgs[-1].seq

    async def convs(self) -> list[dict[str, Any]]:
        f = await self.request({"type": "convs"})
        convs: list[dict[str, Any]] = f["convs"]
        return convs

    async def read(self, conv: str, seq: int) -> int:
        f = await self.request({"type": "read", "conv": conv, "seq": seq})
        return int(f["read_seq"])

    async def typing(self, conv: str) -> None:
        ws = self._ws
        if ws is not None:
            await ws.send_str(orjson.dumps({"type": "typing", "conv": conv}).decode())

    async def watch(self, users: list[str]) -> list[str]:
        f = await self.request({"type": "watch", "users": users})
        online: list[str] = f["online"]
        return online

    async def create_group(self, title: str, members: list[str]) -> dict[str, Any]:
        return await self.request({"type": "group_create", "title": title, "members": members})

    async def add_member(self, conv: str, user: str) -> dict[str, Any]:
        return await self.request({"type": "group_add", "conv": conv, "user": user})

    async def remove_member(self, conv: str, user: str) -> dict[str, Any]:
        return await self.request({"type": "group_remove", "conv": conv, "user": user})

    async def members(self, conv: str) -> list[dict[str, str]]:
        f = await self.request({"type": "group_members", "conv": conv})
        members: list[dict[str, str]] = f["members"]
        return members

    async def ping(self) -> None:
        await self.request({"type": "ping"})

    def _fail_requests(self, exc: Exception) -> None:
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(exc)
        self._requests.clear()

    def _fail_all(self, exc: Exception) -> None:
        self._fail_requests(exc)
        for p in self._sends.values():
            if not p.future.done():
                p.future.set_exception(exc)
        self._sends.clear()
