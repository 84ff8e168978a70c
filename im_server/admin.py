"""Admin HTTP API under /admin, guarded by the bearer token in IM_ADMIN_TOKEN.

POST   /admin/tokens                       {"user","ttl"}      -> {"user","token","expires_at"}
POST   /admin/groups                       {"owner","title","members"} -> {"conv","members"}
GET    /admin/groups/{conv}/members                                  -> {"conv","members"}
POST   /admin/groups/{conv}/members        {"user"}                  -> {"conv","changed"}
DELETE /admin/groups/{conv}/members/{user}                           -> {"conv","changed"}
GET    /admin/stats                                                  -> counts
GET    /admin/digest                                                 -> content summary

/admin/digest also accepts the read-only credential ``auth.digest_token(IM_ADMIN_TOKEN)``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from im_server import auth
from im_server.config import database_identity
from im_server.conversations import USER_ID_RE
from im_server.errors import AccessError, ErrorCode, ImError
from im_server.protocol import CONV_ID_RE, MAX_GROUP_MEMBERS, MAX_TITLE

if TYPE_CHECKING:
    from im_server.server import ImServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STATUS = {
    ErrorCode.UNKNOWN_CONVERSATION: 404,
    ErrorCode.NOT_MEMBER: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNAVAILABLE: 503,
}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class _BadRequest(Exception):
    pass


def _user(value: Any, field: str) -> str:
    if not isinstance(value, str) or not USER_ID_RE.match(value):
        raise _BadRequest(f"'{field}' must be a user id ([A-Za-z0-9_.@-], 1-64 characters)")
    return value


def add_routes(app: web.Application, server: ImServer) -> None:
    def guarded(
        fn: Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]],
        *,
        also_digest_token: bool = False,
    ) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            expected = server.settings.admin_token
            if expected is None:
                return _error(404, "admin_disabled", "the admin API is off: set IM_ADMIN_TOKEN")
            given = request.headers.get("Authorization", "").encode()
            accepted = [expected] + ([auth.digest_token(expected)] if also_digest_token else [])
            # Every candidate is compared, so the time taken says nothing about which matched.
            matches = [hmac.compare_digest(given, f"Bearer {t}".encode()) for t in accepted]
            if not any(matches):
                return _error(401, "unauthorized", "missing or wrong admin bearer token")
            body: dict[str, Any] = {}
            if request.method in ("POST", "PUT"):
                try:
                    parsed = await request.json()
                except (ValueError, UnicodeDecodeError):
                    return _error(400, "bad_json", "request body must be a JSON object")
                if not isinstance(parsed, dict):
                    return _error(400, "bad_json", "request body must be a JSON object")
                body = parsed
            conv = request.match_info.get("conv")
            if conv is not None and not CONV_ID_RE.match(conv):
                return _error(400, "bad_request", "malformed conversation id")
            try:
                return await fn(request, body)
            except _BadRequest as exc:
                return _error(400, "bad_request", str(exc))
            except ImError as exc:
                return _error(_STATUS.get(exc.code, 400), exc.code.value, exc.message)

        return handler

    async def tokens(request: web.Request, body: dict[str, Any]) -> web.Response:
        user = _user(body.get("user"), "user")
        ttl = body.get("ttl", 3600)
        top = server.settings.max_token_ttl  # a longer token would be refused at hello
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= top:
            raise _BadRequest(f"'ttl' must be seconds from 1 to {top}")
        token = auth.mint(server.settings.jwt_secret, user, ttl)
        return web.json_response(
            {"user": user, "token": token, "expires_at": int(time.time()) + ttl}
        )

    async def create_group(request: web.Request, body: dict[str, Any]) -> web.Response:
        owner = _user(body.get("owner"), "owner")
        title = body.get("title", "")
        if not isinstance(title, str) or len(title) > MAX_TITLE:
            raise _BadRequest(f"'title' must be a string of at most {MAX_TITLE} characters")
        members = body.get("members", [])
        if not isinstance(members, list) or len(members) > MAX_GROUP_MEMBERS:
            raise _BadRequest(f"'members' must be a list of at most {MAX_GROUP_MEMBERS} user ids")
        members = [_user(m, "members") for m in members]
        done = await server.store.create_group(owner, title, members)
        await server.fan_out(done, exclude=None)
        return web.json_response(
            {"conv": done.conv, "title": title, "members": list(done.recipients)}, status=201
        )

    async def list_members(request: web.Request, body: dict[str, Any]) -> web.Response:
        conv = request.match_info["conv"]
        members = await server.store.list_members(None, conv)
        return web.json_response({"conv": conv, "members": members})

    async def add_member(request: web.Request, body: dict[str, Any]) -> web.Response:
        conv = request.match_info["conv"]
        change = await server.store.add_member(None, conv, _user(body.get("user"), "user"))
        if change is not None:
            await server.fan_out(change, exclude=None)
        return web.json_response({"conv": conv, "changed": change is not None})

    async def remove_member(request: web.Request, body: dict[str, Any]) -> web.Response:
        conv = request.match_info["conv"]
        user = _user(request.match_info["user"], "user")
        change = await server.store.remove_member(None, conv, user)
        if change is not None:
            await server.fan_out(change, exclude=None)
        return web.json_response({"conv": conv, "changed": change is not None})

    async def stats(request: web.Request, body: dict[str, Any]) -> web.Response:
        counts = await server.store.stats()
        return web.json_response(
            {
                **counts,
                "node": server.node_id,
                "sessions": len(server.conns),
                "draining": server.draining,
            }
        )

    async def digest(request: web.Request, body: dict[str, Any]) -> web.Response:
        counts = await server.store.digest()
        return web.json_response(
            {
                **counts,
                # Which database and which process answered: a restore's check must know the
                # figures come from the restored database, not from a pod still on the old one.
                "database": database_identity(server.settings.database_url),
                "node": server.node_id,
                "started_at_ms": int(server.started_at * 1000),
                "draining": server.draining,
            }
        )

    app.router.add_post("/admin/tokens", guarded(tokens))
    app.router.add_post("/admin/groups", guarded(create_group))
    app.router.add_get("/admin/groups/{conv}/members", guarded(list_members))
    app.router.add_post("/admin/groups/{conv}/members", guarded(add_member))
    app.router.add_delete("/admin/groups/{conv}/members/{user}", guarded(remove_member))
    app.router.add_get("/admin/stats", guarded(stats))
    app.router.add_get("/admin/digest", guarded(digest, also_digest_token=True))


__all__ = ["AccessError", "add_routes"]
