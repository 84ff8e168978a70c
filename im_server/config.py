"""Server settings, read from the environment in one place and validated up front."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it wants."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    jwt_secret: str
    admin_token: str | None = None
    nats_url: str | None = None
    node_id: str = ""
    max_frame: int = 64 * 1024
    rate_per_sec: float = 200.0
    rate_burst: int = 400
    max_sessions_per_user: int = 10
    hello_timeout: float = 10.0
    drain_grace: float = 20.0
    reconnect_jitter_ms: int = 2000
    batch_max: int = 256
    batch_linger_ms: float = 0.0
    db_pool_size: int = 8
    send_workers: int = 4
    max_outbound_frames: int = 10_000
    # client limits (issue 12)
    max_outbound_bytes: int = 4 * 1024 * 1024
    max_inflight_requests: int = 16
    max_watch_per_session: int = 1000
    max_watched_per_node: int = 5_000
    max_token_ttl: int = 30 * 86400
    metrics_token: str | None = None
    header_timeout: float = 10.0
    max_connections: int = 0  # 0: RLIMIT_NOFILE minus headroom, taken when the node listens


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _metrics_token(env: Mapping[str, str]) -> str | None:
    token = env.get("IM_METRICS_TOKEN") or None
    if token is not None and len(token) < 16:
        raise ConfigError("IM_METRICS_TOKEN must be at least 16 characters when set")
    return token


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    db = env.get("IM_DATABASE_URL", "")
    if not db.startswith(("postgres://", "postgresql://")):
        raise ConfigError(
            "IM_DATABASE_URL must be a PostgreSQL URL (postgresql://user:pw@host:port/db)"
        )
    secret = env.get("IM_JWT_SECRET", "")
    if len(secret) < 16:
        raise ConfigError("IM_JWT_SECRET must be set to at least 16 characters (HS256 key)")
    nats_url = env.get("IM_NATS_URL") or None
    if nats_url is not None and not nats_url.startswith(("nats://", "tls://")):
        raise ConfigError(f"IM_NATS_URL must start with nats:// or tls://, got {nats_url!r}")
    admin = env.get("IM_ADMIN_TOKEN") or None
    if admin is not None and len(admin) < 16:
        raise ConfigError("IM_ADMIN_TOKEN must be at least 16 characters when set")
    return Settings(
        database_url=db,
        jwt_secret=secret,
        admin_token=admin,
        nats_url=nats_url,
        node_id=env.get("IM_NODE_ID", ""),
        max_frame=_int(env, "IM_MAX_FRAME", 64 * 1024, 1024, 16 * 1024 * 1024),
        rate_per_sec=_float(env, "IM_RATE_PER_SEC", 200.0, 0.1, 1_000_000),
        rate_burst=_int(env, "IM_RATE_BURST", 400, 1, 1_000_000),
        max_sessions_per_user=_int(env, "IM_MAX_SESSIONS_PER_USER", 10, 1, 10_000),
        hello_timeout=_float(env, "IM_HELLO_TIMEOUT", 10.0, 0.05, 3600),
        drain_grace=_float(env, "IM_DRAIN_GRACE_SECONDS", 20.0, 0.1, 3600),
        reconnect_jitter_ms=_int(env, "IM_RECONNECT_JITTER_MS", 2000, 0, 600_000),
        batch_max=_int(env, "IM_BATCH_MAX", 256, 1, 10_000),
        batch_linger_ms=_float(env, "IM_BATCH_LINGER_MS", 0.0, 0, 1000),
        db_pool_size=_int(env, "IM_DB_POOL_SIZE", 8, 2, 200),
        send_workers=_int(env, "IM_SEND_WORKERS", 4, 1, 64),
        max_outbound_frames=_int(env, "IM_MAX_OUTBOUND_FRAMES", 10_000, 10, 10_000_000),
        # client limits (issue 12)
        max_outbound_bytes=_int(env, "IM_MAX_OUTBOUND_BYTES", 4 * 1024 * 1024, 65536, 1 << 34),
        max_inflight_requests=_int(env, "IM_MAX_INFLIGHT_REQUESTS", 16, 1, 10_000),
        max_watch_per_session=_int(env, "IM_MAX_WATCH_PER_SESSION", 1000, 1, 1_000_000),
        max_watched_per_node=_int(env, "IM_MAX_WATCHED_PER_NODE", 5_000, 1, 10_000_000),
        max_token_ttl=_int(env, "IM_MAX_TOKEN_TTL", 30 * 86400, 60, 365 * 86400),
        metrics_token=_metrics_token(env),
        header_timeout=_float(env, "IM_HEADER_TIMEOUT", 10.0, 0.05, 3600),
        max_connections=_int(env, "IM_MAX_CONNECTIONS", 0, 0, 10_000_000),
    )


def database_identity(url: str) -> dict[str, Any]:
    """Where a PostgreSQL URL points (host, port, database), without its credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return {
        "host": parts.hostname or "",
        "port": port or 5432,
        "name": unquote(parts.path.lstrip("/")),
    }
