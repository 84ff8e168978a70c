"""Hostile and broken clients over raw WebSockets (no SDK in between to hide anything): every
breach gets a clear error code, the session survives what it should survive, and a refused
hello is exactly one error frame followed by a close."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import WSMsgType

from im_server import auth
from tests.im_server.conftest import Running, ServerFactory


@pytest.fixture
def im(shared_im: Running) -> Running:
    return shared_im


WS = aiohttp.ClientWebSocketResponse
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


async def _connect(http: aiohttp.ClientSession, im: Running) -> WS:
    return await http.ws_connect(im.url, max_msg_size=0)


async def _send(ws: WS, frame: dict[str, Any]) -> None:
    await ws.send_str(orjson.dumps(frame).decode())


async def _recv(ws: WS, timeout: float = 5.0) -> dict[str, Any]:
    m = await ws.receive(timeout=timeout)
    assert m.type is WSMsgType.TEXT, f"expected a text frame, got {m.type.name} {m.data!r}"
    frame = orjson.loads(m.data)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
    return frame


def _hello(token: str, v: int = 1) -> str:
    return orjson.dumps({"type": "hello", "v": v, "token": token}).decode()


async def _login(http: aiohttp.ClientSession, im: Running, user: str) -> WS:
    ws = await _connect(http, im)
    await ws.send_str(_hello(im.token(user)))
    welcome = await _recv(ws)
    assert welcome["type"] == "welcome" and welcome["user"] == user, welcome
    return ws


async def _pong(ws: WS, rid: str) -> list[dict[str, Any]]:
    """Ping and read up to the pong; return whatever came before it."""
    await _send(ws, {"type": "ping", "rid": rid})
    before: list[dict[str, Any]] = []
    while True:
        f = await _recv(ws)
        if f["type"] == "pong" and f.get("rid") == rid:
            return before
        before.append(f)


async def _expect_refusal(ws: WS, code: str) -> dict[str, Any]:
    """A refused hello: exactly one error frame, then a policy close naming the code."""
    err = await _recv(ws)
    assert err["type"] == "error" and err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    closing = await ws.receive(timeout=5)
    assert closing.type is WSMsgType.CLOSE, f"expected a close, got {closing.type.name}"
    assert (closing.data, closing.extra) == (CLOSE_POLICY, code)
    # and nothing after it
    after = await ws.receive(timeout=5)
    assert after.type is WSMsgType.CLOSED, after
    return err


async def _message_rows(dsn: str) -> list[tuple[str, int, str, str | None]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT conv, seq, sender, cid FROM messages ORDER BY conv, seq")
    finally:
        await conn.close()
    return [(r["conv"], r["seq"], r["sender"], r["cid"]) for r in rows]


async def _still_serving(im: Running, user: str = "zed") -> None:
    """A fresh client can connect, send and get its ack."""
    c = await im.client(user)
    ack = await c.send({"ok": True}, to="alice", timeout=5)
    assert ack.seq >= 1


# --- malformed frames in a live session ----------------------------------------------------


async def test_malformed_json_is_bad_json_and_the_session_survives(im: Running) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        await ws.send_str('{"type": "send", "cid": "c1", ')
        err = await _recv(ws)
        assert (err["type"], err["code"], err["retryable"]) == ("error", "bad_json", False)
        assert await _pong(ws, "after-bad-json") == []


async def test_unknown_type_is_unknown_type_with_the_rid(im: Running) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        await _send(ws, {"type": "selfdestruct", "rid": "r-77"})
        err = await _recv(ws)
        assert (err["code"], err["rid"]) == ("unknown_type", "r-77")
        assert "selfdestruct" in err["message"]
        assert await _pong(ws, "p") == []


async def test_missing_and_wrong_typed_fields_are_bad_frame_with_their_ref(
    im: Running,
) -> None:
    bad: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({"type": "send", "cid": "c1", "to": "bob"}, {"cid": "c1"}),  # no body
        ({"type": "send", "cid": "c2", "body": 1}, {"cid": "c2"}),  # neither conv nor to
        ({"type": "send", "cid": "c3", "conv": "g:x", "to": "bob", "body": 1}, {"cid": "c3"}),
        ({"type": "send", "cid": "c4", "to": "no such user!", "body": 1}, {"cid": "c4"}),
        ({"type": "sync", "rid": "r1", "conv": "d:alice:bob", "limit": "10"}, {"rid": "r1"}),
        ({"type": "sync", "rid": "r2", "conv": "d:alice:bob", "limit": 501}, {"rid": "r2"}),
        ({"type": "read", "rid": "r3", "conv": "d:alice:bob", "seq": True}, {"rid": "r3"}),
        ({"type": "read", "rid": "r4", "conv": "d:alice:bob", "seq": -1}, {"rid": "r4"}),
        ({"type": "watch", "rid": "r5", "users": "bob"}, {"rid": "r5"}),
        ({"type": "group_add", "rid": "r6", "conv": "g:x"}, {"rid": "r6"}),
        ({"type": "typing"}, {}),
    ]
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        for frame, ref in bad:
            await _send(ws, frame)
            err = await _recv(ws)
            assert err["code"] == "bad_frame", (frame, err)
            assert {k: err[k] for k in ("rid", "cid") if k in err} == ref, (frame, err)
            assert "field" in err["message"]
        assert await _pong(ws, "p") == []
    assert await _message_rows(im.settings.database_url) == []


async def test_binary_frame_is_bad_frame_and_the_session_survives(im: Running) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        await ws.send_bytes(b'{"type":"ping","rid":"r1"}')
        err = await _recv(ws)
        assert err["code"] == "bad_frame" and "binary" in err["message"]
        assert await _pong(ws, "p") == []


async def test_send_body_nested_too_deep_is_bad_frame_not_a_dead_session(im: Running) -> None:
    # 300 levels: valid JSON the server parses, but deeper than its encoder accepts.
    frame = '{"type":"send","cid":"deep","to":"bob","body":' + "[" * 300 + "]" * 300 + "}"
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        await ws.send_str(frame)
        err = await _recv(ws)
        assert (err["code"], err.get("cid")) == ("bad_frame", "deep"), err
        assert await _pong(ws, "p") == []
    await _still_serving(im)


# --- size limits ---------------------------------------------------------------------------


async def test_frame_over_max_frame_is_refused_and_the_session_survives(
    server_factory: ServerFactory,
) -> None:
    im = await server_factory(max_frame=2048)
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        await _send(ws, {"type": "send", "cid": "big", "to": "bob", "body": "x" * 3000})
        err = await _recv(ws)
        assert (err["code"], err["retryable"]) == ("frame_too_large", False)
        assert "2048" in err["message"]
        # Just under the limit is fine.
        await _send(ws, {"type": "send", "cid": "fits", "to": "bob", "body": "x" * 1900})
        ack = await _recv(ws)
        assert (ack["type"], ack["cid"]) == ("ack", "fits")
        assert await _pong(ws, "p") == []
    assert [r[3] for r in await _message_rows(im.settings.database_url)] == ["fits"]


async def test_frame_limit_counts_bytes_not_characters(server_factory: ServerFactory) -> None:
    # 1500 'é' are 1500 characters but 3000 bytes of UTF-8: over a 2048 byte limit.
    im = await server_factory(max_frame=2048)
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        frame = orjson.dumps({"type": "send", "cid": "wide", "to": "bob", "body": "é" * 1500})
        assert len(frame) > 2048 > len(frame.decode())
        await ws.send_str(frame.decode())
        err = await _recv(ws)
        assert (err["type"], err.get("code")) == ("error", "frame_too_large"), err
    assert await _message_rows(im.settings.database_url) == []


async def test_frame_far_over_the_hard_cap_closes_1009_and_others_are_served(
    server_factory: ServerFactory,
) -> None:
    im = await server_factory(max_frame=2048)  # hard cap: 1 MiB
    async with aiohttp.ClientSession() as http:
        bob = await _login(http, im, "bob")
        alice = await _login(http, im, "alice")
        await alice.send_str('{"type":"ping","pad":"' + "x" * (2 * 1024 * 1024) + '"}')
        m = await alice.receive(timeout=10)
        assert m.type is WSMsgType.CLOSE, m
        assert m.data == CLOSE_TOO_BIG
        # Everyone else carries on.
        assert await _pong(bob, "p") == []
        await _still_serving(im)


# --- rate limit ----------------------------------------------------------------------------


async def test_rate_limit_refuses_with_retry_after_and_commits_nothing_refused(
    server_factory: ServerFactory,
) -> None:
    im = await server_factory(rate_per_sec=5, rate_burst=5)
    cids = [f"s{i}" for i in range(8)]
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        for cid in cids:
            await _send(ws, {"type": "send", "cid": cid, "to": "bob", "body": cid})
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < len(cids):  # exactly one answer per send
            f = await _recv(ws)
            assert f["cid"] not in answers, f
            answers[f["cid"]] = f
        acked = {c for c, f in answers.items() if f["type"] == "ack"}
        refused = {c: f for c, f in answers.items() if f["type"] == "error"}
        assert {"s0", "s1", "s2", "s3", "s4"} <= acked  # the burst
        assert refused, "8 sends within a burst of 5 at 5/s must hit the limit"
        for f in refused.values():
            assert (f["code"], f["retryable"]) == ("rate_limited", True)
            assert isinstance(f["retry_after_ms"], int) and 0 < f["retry_after_ms"] <= 1000
        rows = await _message_rows(im.settings.database_url)
        assert {r[3] for r in rows} == acked
        # Retrying after the advertised wait, with the same cid, succeeds.
        cid, f = sorted(refused.items())[0]
        await asyncio.sleep(f["retry_after_ms"] / 1000 + 0.05)
        await _send(ws, {"type": "send", "cid": cid, "to": "bob", "body": cid})
        ack = await _recv(ws)
        assert (ack["type"], ack["cid"], ack.get("duplicate")) == ("ack", cid, None)


# --- hello: refusals and the session state machine -----------------------------------------


async def test_refused_hellos_are_one_error_then_a_close(im: Running) -> None:
    secret = im.settings.jwt_secret
    cases: list[tuple[str, str | bytes, str]] = [
        ("garbage token", _hello("not-a-jwt"), "auth_failed"),
        ("wrong secret", _hello(auth.mint("x" * 40, "alice")), "auth_failed"),
        (
            "expired token",
            _hello(auth.mint(secret, "alice", 60, now=time.time() - 3600)),
            "token_expired",
        ),
        ("ping before hello", '{"type":"ping","rid":"r1"}', "not_authenticated"),
        ("send before hello", '{"type":"send","cid":"c","to":"bob","body":1}', "not_authenticated"),
        ("bad json", "{hello", "bad_json"),
        ("unknown type", '{"type":"helo","token":"t"}', "unknown_type"),
        ("hello without token", '{"type":"hello","v":1}', "bad_frame"),
        ("wrong version", _hello(im.token("alice"), v=2), "bad_version"),
        ("binary hello", _hello(im.token("alice")).encode(), "bad_frame"),
        ("oversized hello", _hello("x" * 70_000), "frame_too_large"),
    ]
    async with aiohttp.ClientSession() as http:
        for name, data, code in cases:
            ws = await _connect(http, im)
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)
            try:
                await _expect_refusal(ws, code)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from exc
            await ws.close()
    assert im.server.hub.sessions_of("alice") == 0
    await _still_serving(im)


async def test_hello_timeout_is_an_error_then_a_close(server_factory: ServerFactory) -> None:
    im = await server_factory(hello_timeout=0.3)
    async with aiohttp.ClientSession() as http:
        t0 = time.monotonic()
        ws = await _connect(http, im)
        await _expect_refusal(ws, "hello_timeout")
        assert time.monotonic() - t0 >= 0.25


async def test_second_hello_is_already_authenticated_and_the_session_survives(
    im: Running,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        await ws.send_str(_hello(im.token("bob")))
        err = await _recv(ws)
        assert err["code"] == "already_authenticated"
        assert await _pong(ws, "p") == []
        # Still alice, not bob.
        await _send(ws, {"type": "send", "cid": "c1", "to": "carol", "body": 1})
        ack = await _recv(ws)
        assert ack["conv"] == "d:alice:carol"
    assert im.server.hub.sessions_of("bob") == 0


async def test_session_cap_refuses_the_third_session_and_frees_the_slot_on_close(
    server_factory: ServerFactory,
) -> None:
    im = await server_factory(max_sessions_per_user=2)
    async with aiohttp.ClientSession() as http:
        # Keep references: an unreferenced client socket is closed when collected.
        first = await _login(http, im, "alice")
        second = await _login(http, im, "alice")
        third = await _connect(http, im)
        await third.send_str(_hello(im.token("alice")))
        err = await _expect_refusal(third, "session_limit")
        assert "2" in err["message"]
        # The cap is per user: bob is not affected.
        bob = await _login(http, im, "bob")
        # Closing one session frees its slot.
        await first.close()
        deadline = time.monotonic() + 5
        while im.server.hub.sessions_of("alice") > 1:
            assert time.monotonic() < deadline, "closed session still counted"
            await asyncio.sleep(0.01)
        again = await _login(http, im, "alice")
        assert im.server.hub.sessions_of("alice") == 2
        for ws in (second, bob, again):
            assert await _pong(ws, "p") == []
