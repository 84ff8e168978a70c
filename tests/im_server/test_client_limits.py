"""Bounds a hostile client runs into (issue 12, items 5, 7, 9), each over real sockets: what it
is refused with, and that the node lets go of what it held."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import WSMsgType

from cli.targets.local.procs import free_port
from im_server import auth
from tests.im_server.conftest import Running, ServerFactory, until
from tests.im_server.test_bad_input import _connect, _expect_refusal, _login, _pong, _recv, _send

WS = aiohttp.ClientWebSocketResponse


# --- item 5: memory ------------------------------------------------------------------------


async def test_a_refused_hello_is_dropped_even_if_the_client_never_answers_the_close(
    im: Running,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(im.url, autoclose=False, autoping=False)
        await ws.send_str(orjson.dumps({"type": "hello", "token": "nope"}).decode())
        # The client reads nothing and never sends its close frame.
        took = await until(lambda: not im.server.conns, 3.0, "refused session still held")
        assert took < 1.0
        err = await _recv(ws)
        assert err["code"] == "auth_failed"


async def test_permessage_deflate_is_not_negotiated(im: Running) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(im.url, compress=15)
        assert ws.compress == 0
        await ws.send_str(orjson.dumps({"type": "hello", "token": im.token("alice")}).decode())
        assert (await _recv(ws))["type"] == "welcome"


async def test_unread_bytes_over_the_cap_close_the_session_as_slow_consumer(
    server_factory: ServerFactory,
) -> None:
    # 1 MiB of unread frames; well under IM_MAX_OUTBOUND_FRAMES (10,000) frames.
    im = await server_factory(max_outbound_bytes=1024 * 1024)
    body = "x" * 60_000
    async with aiohttp.ClientSession() as http:
        bob = await _login(http, im, "bob")  # reads nothing until the end
        alice = await im.client("alice")
        for i in range(200):  # 12 MB: past the kernel's socket buffers, then past the cap
            await alice.send(body, to="bob", cid=f"c{i}", timeout=30)
        seen: list[dict[str, Any]] = []
        while True:
            m = await bob.receive(timeout=10)
            if m.type is not WSMsgType.TEXT:
                break
            seen.append(orjson.loads(m.data))
        assert m.type is WSMsgType.CLOSE and m.data == 1013, m
        assert seen[-1]["code"] == "slow_consumer", seen[-1]
        assert len(seen) < 200


async def test_requests_in_flight_per_session_are_capped(server_factory: ServerFactory) -> None:
    im = await server_factory(max_inflight_requests=2)
    async with aiohttp.ClientSession() as http:
        ws = await _login(http, im, "alice")
        for i in range(20):
            await _send(ws, {"type": "sync", "rid": f"r{i}", "conv": "d:alice:bob"})
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < 20:
            f = await _recv(ws)
            answers[f["rid"]] = f
        refused = [f for f in answers.values() if f["type"] == "error"]
        assert refused and all(f["code"] == "rate_limited" for f in refused), refused
        assert "in flight" in refused[0]["message"] and refused[0]["retry_after_ms"] > 0
        assert sum(f["type"] == "batch" for f in answers.values()) >= 2
        assert await _pong(ws, "p") == []  # and it is served again once they are answered
        await _send(ws, {"type": "sync", "rid": "again", "conv": "d:alice:bob"})
        assert (await _recv(ws))["type"] == "batch"


async def test_a_sync_batch_is_cut_by_bytes_and_says_more(server_factory: ServerFactory) -> None:
    im = await server_factory(max_outbound_bytes=1024 * 1024, max_inflight_requests=4)
    alice = await im.client("alice")
    for i in range(12):
        await alice.send("y" * 60_000, to="bob", cid=f"big{i}")
    # Budget: 1 MiB / (2 x 4) = 128 KiB, so 3 messages of 60 KB (the one that starts past it
    # is not sent).
    batch = await alice.request({"type": "sync", "conv": "d:alice:bob", "limit": 500})
    assert [m["seq"] for m in batch["msgs"]] == [1, 2, 3]
    assert batch["more"] is True and batch["last_seq"] == 12
    small = await alice.request({"type": "sync", "conv": "d:alice:bob", "after_seq": 11})
    assert [m["seq"] for m in small["msgs"]] == [12] and small["more"] is False


async def test_watch_is_capped_per_session_and_per_node(server_factory: ServerFactory) -> None:
    im = await server_factory(max_watch_per_session=50, max_watched_per_node=80)
    a = await im.client("alice")
    assert await a.watch([f"u{i}" for i in range(40)]) == []
    with pytest.raises(Exception) as info:
        await a.watch([f"v{i}" for i in range(11)])  # 51 for this session
    assert getattr(info.value, "code", None) == "watch_limit"
    assert await a.watch([f"u{i}" for i in range(10)] + ["v0"]) == []  # 41: fine
    b = await im.client("bob")
    with pytest.raises(Exception) as info:
        await b.watch([f"w{i}" for i in range(40)])  # 81 distinct on the node
    assert getattr(info.value, "code", None) == "watch_limit"
    assert "node" in str(info.value)
    assert await b.watch([f"u{i}" for i in range(40)]) == []  # already watched here: fine
    await a.close()
    await until(lambda: "v0" not in im.server.hub.watchers, 5, "watches of a gone session")
    assert await b.watch([f"w{i}" for i in range(10)]) == []


async def test_resume_is_capped_and_pays_the_rate_limit_per_conversation(
    server_factory: ServerFactory,
) -> None:
    im = await server_factory(rate_per_sec=50, rate_burst=5)
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, im)
        resume = {f"g:{i:020x}": 0 for i in range(1001)}
        hello = {"type": "hello", "token": im.token("alice"), "resume": resume}
        await _send(ws, hello)
        err = await _expect_refusal(ws, "bad_frame")
        assert "1000" in err["message"]

        ws = await _connect(http, im)
        hello["resume"] = {f"g:{i:020x}": 0 for i in range(30)}
        t0 = time.monotonic()
        await _send(ws, hello)
        assert (await _recv(ws))["type"] == "welcome"
        errors = [await _recv(ws) for _ in range(30)]
        # 25 tokens past the burst of 5 at 50/s: half a second at least.
        assert time.monotonic() - t0 >= 0.45
        assert {e["code"] for e in errors} == {"unknown_conversation"}


# --- item 9: tokens, metrics, integers -----------------------------------------------------


async def test_a_token_living_longer_than_the_cap_is_refused(im: Running) -> None:
    secret = im.settings.jwt_secret
    cases = [
        jwt.encode({"sub": "alice", "exp": 2**70}, secret, algorithm="HS256"),
        jwt.encode({"sub": "alice", "exp": int(time.time()) + 31 * 86400}, secret, "HS256"),
    ]
    async with aiohttp.ClientSession() as http:
        for token in cases:
            ws = await _connect(http, im)
            await _send(ws, {"type": "hello", "token": token})
            err = await _expect_refusal(ws, "auth_failed")
            assert "lifetime" in err["message"]
        # 30 days is fine.
        await _login(http, im, "alice")


async def test_a_session_ends_when_its_token_expires(im: Running) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, im)
        await _send(ws, {"type": "hello", "token": auth.mint(im.settings.jwt_secret, "al", 1)})
        assert (await _recv(ws))["type"] == "welcome"
        err = await _recv(ws, timeout=5)
        assert (err["type"], err["code"]) == ("error", "token_expired")
        m = await ws.receive(timeout=5)
        assert (m.type, m.data, m.extra) == (WSMsgType.CLOSE, 1008, "token_expired")


async def test_the_sdk_gets_a_fresh_token_after_expiry_or_stops(im: Running) -> None:
    minted: list[str] = []

    def fresh() -> str:
        minted.append(auth.mint(im.settings.jwt_secret, "carol", 1 if not minted else 3600))
        return minted[-1]

    renewing = await im.client("carol", reconnect=True)  # static token: replaced below
    await renewing.close()
    c = await _sdk(im, fresh)
    await until(lambda: c.connects >= 2, 8, "no reconnect with a fresh token")
    assert c.fatal is None and len(minted) >= 2

    static = await _sdk(im, auth.mint(im.settings.jwt_secret, "dave", 1))
    await until(lambda: static.fatal is not None, 8, "an expired static token kept going")
    assert static.fatal is not None and static.fatal.code == "token_expired"
    assert static.connects == 1


async def _sdk(im: Running, token: Any) -> Any:
    from im_server.client import Client

    c = Client(im.url, token, backoff_min=0.01)
    im.clients.append(c)
    await c.connect()
    return c


async def test_metrics_need_the_bearer_token_when_one_is_set(
    server_factory: ServerFactory,
) -> None:
    token = secrets.token_urlsafe(24)
    im = await server_factory(metrics_token=token)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{im.http}/metrics") as r:
            assert r.status == 401
        bad = {"Authorization": "Bearer nope"}
        async with http.get(f"{im.http}/metrics", headers=bad) as r:
            assert r.status == 401
        good = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{im.http}/metrics", headers=good) as r:
            assert r.status == 200 and "im_connections" in await r.text()


async def test_integers_beyond_64_bits_are_bad_frame_and_64_bit_ones_stay_exact(
    im: Running,
) -> None:
    async with aiohttp.ClientSession() as http:
        bob = await _login(http, im, "bob")
        ws = await _login(http, im, "alice")
        for big in (2**64, 2**70, -(2**63) - 1, 10**300):
            await ws.send_str(f'{{"type":"send","cid":"c{big % 97}","to":"bob","body":{big}}}')
            err = await _recv(ws)
            assert (err["code"], err["cid"]) == ("bad_frame", f"c{big % 97}"), err
            assert "integers" in err["message"]
        # Past a double's range orjson itself refuses the text.
        await ws.send_str('{"type":"send","cid":"inf","to":"bob","body":1' + "0" * 400 + "}")
        assert (await _recv(ws))["code"] == "bad_json"
        exact = '{"a":18446744073709551615,"b":-9223372036854775808,"s":"123456789012345678901234"}'
        await ws.send_str('{"type":"send","cid":"ok","to":"bob","body":' + exact + "}")
        assert (await _recv(ws))["type"] == "ack"
        m = await bob.receive(timeout=5)
        assert exact in m.data  # pushed byte for byte, no float


# --- item 7: HTTP ---------------------------------------------------------------------------


async def _half_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # never finished
    await writer.drain()
    return reader, writer


async def test_an_incomplete_request_is_timed_out(server_factory: ServerFactory) -> None:
    im = await server_factory(header_timeout=0.3)
    reader, writer = await _half_open(im.port)
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    assert time.monotonic() - t0 < 3
    writer.close()


async def test_past_max_connections_the_public_port_refuses_and_health_still_answers(
    server_factory: ServerFactory,
) -> None:
    gated = await server_factory(max_connections=20, header_timeout=60, health_port=free_port())
    held = [await _half_open(gated.port) for _ in range(20)]
    reader, writer = await asyncio.open_connection("127.0.0.1", gated.port)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
    writer.close()
    async with aiohttp.ClientSession() as http:
        await until(gated.server.health.ready, 5, "database never up")
        async with http.get(f"http://127.0.0.1:{gated.health_port}/readyz") as r:
            assert r.status == 200
        for _, w in held[:5]:
            w.close()
        gate = gated.server.gate
        assert gate is not None
        await until(lambda: gate.open <= 15, 5, "closed sockets still counted")
        async with http.get(f"http://127.0.0.1:{gated.port}/healthz") as r:
            assert r.status == 200
    for _, w in held[5:]:
        w.close()
