"""Fuzz one live server with random frames after a valid hello.

Oracle: after every fuzz frame the client sends a ping with a unique rid and reads up to its pong.
Every frame read on the way must be a JSON object with a string ``type`` (answers to requests
may arrive late, interleaved with later examples: that is fine, they are checked when read). A
close is acceptable only as a policy close right after an error frame; then the fuzzer logs in
again. Afterwards a fresh client must still connect, send and get its ack.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.targets.local.postgres import PgInstance
from im_server.protocol import CLIENT_FRAME_TYPES
from tests.im_server.conftest import Running, module_node
from tests.im_server.test_protocol import FIELD_NAMES

USER = "fuzz"
ACCEPTABLE_CLOSES = {1008, 1009, 1013}

_ids = st.sampled_from(
    ["alice", "bob", USER, "d:alice:fuzz", "d:alice:bob", "d:fuzz:fuzz", "g:0", "", "a" * 65]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([0, 1, 2, 100, 500, 501, -1, 2**62, 2**62 + 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=20)
    | _ids
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | _ids, inner, max_size=4)
    ),
    max_leaves=10,
)
_names = st.sampled_from(FIELD_NAMES)
_types = st.sampled_from(sorted(CLIENT_FRAME_TYPES)) | st.sampled_from(
    ["", "msg", "ack", "error", "pong", "HELLO", "send ", "x" * 100]
)
_objects = st.builds(
    lambda t, fields: orjson.dumps({**fields, "type": t}).decode(),
    _types | st.integers(min_value=-5, max_value=5) | st.none(),
    st.dictionaries(_names | st.text(max_size=8), _values, max_size=6),
)
# Frames close to valid, so that the fuzz also reaches the handlers behind the parser.
_small = st.integers(min_value=-2, max_value=600)
_cid = st.text(st.characters(codec="ascii"), min_size=1, max_size=8)
_opt_rid = {"rid": _cid | _scalars}
_plausible = st.one_of(
    st.fixed_dictionaries({"type": st.just("send"), "cid": _cid, "to": _ids, "body": _values}),
    st.fixed_dictionaries({"type": st.just("send"), "cid": _cid, "conv": _ids, "body": _values}),
    st.fixed_dictionaries(
        {"type": st.just("sync"), "conv": _ids},
        optional={"after_seq": _small, "limit": _small, **_opt_rid},
    ),
    st.fixed_dictionaries(
        {"type": st.just("read"), "conv": _ids, "seq": _small}, optional=_opt_rid
    ),
    st.fixed_dictionaries({"type": st.just("typing"), "conv": _ids}),
    st.fixed_dictionaries({"type": st.just("watch"), "users": st.lists(_ids, max_size=5)}),
    st.fixed_dictionaries(
        {"type": st.just("group_create"), "members": st.lists(_ids, max_size=5)},
        optional={"title": st.text(max_size=10), **_opt_rid},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["group_add", "group_remove"]), "conv": _ids, "user": _ids},
        optional=_opt_rid,
    ),
    st.fixed_dictionaries({"type": st.just("group_members"), "conv": _ids}, optional=_opt_rid),
    st.fixed_dictionaries({"type": st.sampled_from(["convs", "ping"])}, optional=_opt_rid),
    st.fixed_dictionaries({"type": st.just("hello"), "token": _cid}),
).map(lambda o: orjson.dumps(o).decode())
_frames = (
    _plausible
    | _objects
    | _values.map(lambda v: orjson.dumps(v).decode())
    | st.text(max_size=300)
    | st.binary(max_size=100)
)


@dataclass
class _Target:
    im: Running
    http: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse | None = None
    rids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    frames_sent: int = 0
    answers_read: int = 0
    closes: list[int] = field(default_factory=list)

    async def session(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None or self.ws.closed:
            ws = await self.http.ws_connect(self.im.url, max_msg_size=0)
            await ws.send_str(
                orjson.dumps({"type": "hello", "token": self.im.token(USER)}).decode()
            )
            welcome = await self._read(ws)
            assert welcome is not None and welcome["type"] == "welcome", welcome
            self.ws = ws
        return self.ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
        """The next frame as a JSON object with a string type, or None after a clean close."""
        m = await ws.receive(timeout=10)
        if m.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return None
        assert m.type is WSMsgType.TEXT, f"server sent {m.type.name}: {m.data!r}"
        frame = orjson.loads(m.data)
        assert isinstance(frame, dict), frame
        assert isinstance(frame.get("type"), str), frame
        if frame["type"] == "error":
            assert isinstance(frame.get("code"), str) and isinstance(frame.get("message"), str)
            assert frame["code"] != "internal", frame
        return frame

    async def exchange(self, data: str | bytes) -> None:
        ws = await self.session()
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)
        self.frames_sent += 1
        rid = f"fuzz-{next(self.rids)}"
        await ws.send_str(orjson.dumps({"type": "ping", "rid": rid}).decode())
        last: dict[str, Any] | None = None
        while True:
            frame = await self._read(ws)
            if frame is None:
                code = ws.close_code
                assert last is not None and last["type"] == "error", (
                    f"closed ({code}) without an error frame after {data[:200]!r}"
                )
                assert code in ACCEPTABLE_CLOSES, f"close code {code} after {data[:200]!r}"
                self.closes.append(code)
                return
            if frame["type"] == "pong" and frame.get("rid") == rid:
                return
            self.answers_read += 1
            last = frame


@pytest.fixture(scope="module")
async def target(pg_instance: PgInstance) -> AsyncIterator[_Target]:
    """One server for every example and for the check afterwards (so module-scoped)."""
    # A generous rate limit: the fuzzer sends two frames per example, hundreds per second.
    async with (
        module_node(pg_instance, "fuzz", rate_per_sec=1_000_000.0, rate_burst=1_000_000) as im,
        aiohttp.ClientSession() as http,
    ):
        t = _Target(im, http)
        yield t
        if t.ws is not None:
            await t.ws.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(frames=st.lists(_frames, min_size=1, max_size=3))
async def test_random_frames_never_break_the_server(target: _Target, frames: list[Any]) -> None:
    for data in frames:
        await target.exchange(data)


async def test_server_still_serves_after_fuzzing(target: _Target) -> None:
    # The same server as the fuzz above: fixed nasty frames, then a fresh client must work.
    nasty: list[str | bytes] = [
        "",
        "null",
        "[]",
        '{"type":"send","cid":"n1","to":"bob","body":' + "[" * 100 + "]" * 100 + "}",
        '{"type":"sync","conv":"d:alice:bob","after_seq":4611686018427387904}',
        '{"type":"read","conv":"d:fuzz:fuzz","seq":4611686018427387904}',
        '{"type":"group_create","members":[' + ",".join(f'"u{i}"' for i in range(1000)) + "]}",
        '{"type":"watch","users":[' + ",".join(f'"w{i}"' for i in range(1000)) + "]}",
        '{"type":"hello","token":"x"}',
        '{"type":"typing","conv":"d:alice:fuzz"}',
        '{"type":"convs"}',
        b"\x00\x01",
    ]
    for data in nasty:
        await target.exchange(data)
    assert target.closes == []
    c = await target.im.client("after-fuzz")
    ack = await c.send({"still": "alive"}, to="bob", timeout=5)
    assert ack.conv == "d:after-fuzz:bob"
    msgs, _, _ = await c.sync(ack.conv)
    assert [m.body for m in msgs] == [{"still": "alive"}]
