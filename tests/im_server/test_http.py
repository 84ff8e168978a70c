"""HTTP on the WebSocket port: health, readiness, Prometheus metrics and the admin API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from im_server import auth
from im_server.client import Client
from tests.im_server.conftest import Running, ServerFactory


@pytest.fixture
def im(shared_im: Running) -> Running:
    return shared_im


async def _get(im: Running, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(im.http + path, **kw) as r:
        body: Any = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def _post(im: Running, path: str, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {im.settings.admin_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(im.http + path, **kw) as r,
    ):
        return r.status, await r.json()


async def _metrics(im: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await _get(im, "/metrics")
    assert status == 200
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


# --- health --------------------------------------------------------------------------------


async def test_healthz(im: Running) -> None:
    status, body = await _get(im, "/healthz")
    assert status == 200
    assert body == {"status": "ok", "node": im.server.node_id}


async def test_readyz_reports_database_up_and_no_bus(im: Running) -> None:
    await im.client("alice")
    # The first database check runs in the background right after start: allow it to land.
    deadline = time.monotonic() + 5
    status, body = await _get(im, "/readyz")
    while status != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status, body = await _get(im, "/readyz")
    assert status == 200, body
    assert body["ready"] is True
    assert (body["database"], body["bus"], body["draining"]) == ("up", "none", False)
    assert body["connections"] == 1
    assert body["node"] == im.server.node_id


async def test_metrics_count_connections_frames_and_acks(server_factory: ServerFactory) -> None:
    im = await server_factory()  # counters from zero
    before = await _metrics(im)
    for name in ("im_connections", "im_db_errors_total", "im_draining"):
        assert (name, ()) in before, name
    assert before[("im_connections", ())] == 0
    assert before[("im_draining", ())] == 0
    assert before[("im_ack_latency_seconds_count", ())] == 0
    assert before[("im_frames_in_total", (("type", "send"),))] == 0

    alice = await im.client("alice")
    await alice.send({"text": "counted"}, to="bob")
    after = await _metrics(im)

    assert after[("im_connections", ())] == 1
    assert after[("im_frames_in_total", (("type", "send"),))] == 1
    assert after[("im_frames_in_total", (("type", "hello"),))] == 1
    assert after[("im_ack_latency_seconds_count", ())] == 1
    assert after[("im_ack_latency_seconds_bucket", (("le", "+Inf"),))] == 1
    assert after[("im_frames_out_total", (("type", "ack"),))] == 1
    assert after[("im_db_errors_total", ())] == 0

    await alice.close()
    status, text = await _get(im, "/metrics")
    assert status == 200 and "im_connections" in text


async def test_metrics_count_error_frames_by_code(server_factory: ServerFactory) -> None:
    im = await server_factory()  # counters from zero
    async with aiohttp.ClientSession() as http, http.ws_connect(im.url) as ws:
        await ws.send_str('{"type":"hello","token":"' + im.token("alice") + '"}')
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_str("not json")
        assert (await ws.receive_json(timeout=5))["code"] == "bad_json"
    samples = await _metrics(im)
    assert samples[("im_errors_total", (("code", "bad_json"),))] == 1
    assert samples[("im_frames_in_total", (("type", "unknown"),))] == 1


# --- admin: access -------------------------------------------------------------------------


async def test_admin_refuses_missing_or_wrong_token(im: Running) -> None:
    right = str(im.settings.admin_token)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": right},  # the right token without the Bearer scheme
        {"Authorization": f"Bearer {right}x"},
        {"Authorization": f"Basic {right}"},
    ):
        status, body = await _get(im, "/admin/stats", headers=headers)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), headers
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.post(im.http + "/admin/tokens", json={"user": "mallory"}) as r,
        ):
            assert r.status == 401, headers
            assert "token" not in await r.json()


async def test_admin_api_is_off_without_an_admin_token(server_factory: ServerFactory) -> None:
    im = await server_factory(admin_token=None)
    status, body = await _get(im, "/admin/stats", headers={"Authorization": "Bearer None"})
    assert status == 404
    assert body["error"]["code"] == "admin_disabled"


# --- admin: tokens -------------------------------------------------------------------------


async def test_admin_token_is_accepted_by_the_websocket(im: Running) -> None:
    status, body = await _post(im, "/admin/tokens", json={"user": "dave", "ttl": 120})
    assert status == 200
    assert body["user"] == "dave"
    assert abs(body["expires_at"] - (time.time() + 120)) < 5
    assert auth.verify(im.settings.jwt_secret, body["token"]) == "dave"
    dave = Client(im.url, body["token"])
    im.clients.append(dave)
    await dave.connect()
    assert dave.user == "dave"
    ack = await dave.send("from an admin token", to="alice")
    assert ack.conv == "d:alice:dave"


async def test_admin_bad_json_body_is_400(im: Running) -> None:
    headers = {"Content-Type": "application/json"}
    for data in ("{not json", "[1, 2]", '"dave"', "", "\xff"):
        status, body = await _post(im, "/admin/tokens", data=data, headers=headers)
        assert (status, body["error"]["code"]) == (400, "bad_json"), data


async def test_admin_token_with_bad_user_or_ttl_is_400(im: Running) -> None:
    for payload in (
        {},
        {"user": ""},
        {"user": "bob smith"},
        {"user": 7},
        {"user": "x" * 65},
        {"user": "dave", "ttl": 0},
        {"user": "dave", "ttl": "60"},
        {"user": "dave", "ttl": True},
        {"user": "dave", "ttl": 365 * 86400 + 1},
    ):
        status, body = await _post(im, "/admin/tokens", json=payload)
        assert (status, body["error"]["code"]) == (400, "bad_request"), payload
        assert "token" not in body


async def test_admin_token_for_a_user_id_with_a_trailing_newline_is_400(im: Running) -> None:
    # "bob\n" is not a user id; a token for it must not be minted.
    status, body = await _post(im, "/admin/tokens", json={"user": "bob\n"})
    assert status == 400, body
    assert body["error"]["code"] == "bad_request"


# --- admin: stats --------------------------------------------------------------------------


async def test_admin_stats_count_messages_conversations_and_sessions(im: Running) -> None:
    headers = {"Authorization": f"Bearer {im.settings.admin_token}"}
    status, empty = await _get(im, "/admin/stats", headers=headers)
    assert status == 200
    assert (empty["messages"], empty["conversations"], empty["users"]) == (0, 0, 0)

    alice = await im.client("alice")
    await im.client("bob")
    for i in range(3):
        await alice.send(i, to="bob")
    await alice.create_group("g", ["carol"])

    status, stats = await _get(im, "/admin/stats", headers=headers)
    assert status == 200
    # 3 direct messages + the group_created system message.
    assert (stats["messages"], stats["conversations"], stats["users"]) == (4, 2, 3)
    assert (stats["sessions"], stats["draining"], stats["node"]) == (2, False, im.server.node_id)
