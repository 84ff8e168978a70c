"""Server settings, read from the environment in one place and validated up front."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from im_server.syncpolicy import (
    DEFAULT_SYNC_DEGRADE_AFTER,
    DEFAULT_SYNC_POLICY,
    SYNC_DEGRADE_AFTER_ENV,
    SYNC_DEGRADE_AFTER_MAX,
    SYNC_DEGRADE_AFTER_MIN,
    SYNC_POLICIES,
    SYNC_POLICY_ENV,
    SYNC_STANDBY_ENV,
)


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
    # A worker commits beside another worker's running commit only with this many sends queued.
    send_parallel_min: int = 8
    # ... unless the running commit is older than this (then it is stalled, not just running).
    send_hold_max_ms: float = 20.0
    max_outbound_frames: int = 10_000
    # writes (issue 12): how long a send may wait for its commit before it is answered, and
    # what to do when the synchronous standby (local target) is gone.
    send_timeout: float = 10.0
    sync_standby: str = ""
    sync_policy: str = DEFAULT_SYNC_POLICY
    sync_degrade_after: float = DEFAULT_SYNC_DEGRADE_AFTER
    # bus auth (issue 12)
    nats_user: str | None = None
    nats_password: str | None = None
    # TLS (issue 13): with a certificate, clients' wss:// is served on tls_port as well as the
    # plain port (which stays for in-cluster probes and scrapes). The files are re-read when they
    # change (cert-manager renews them in the mounted Secret) every tls_reload_seconds.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_port: int = 8443
    tls_reload_seconds: float = 60.0
    # client limits (issue 12)
    max_outbound_bytes: int = 4 * 1024 * 1024
    max_inflight_requests: int = 16
    max_watch_per_session: int = 1000
    max_watched_per_node: int = 5_000
    max_token_ttl: int = 30 * 86400
    metrics_token: str | None = None
    header_timeout: float = 10.0
    max_connections: int = 0  # 0: RLIMIT_NOFILE minus headroom, taken when the node listens


_N = TypeVar("_N", int, float)


def _number(
    env: Mapping[str, str], name: str, default: _N, lo: _N, hi: _N, parse: Callable[[str], _N]
) -> _N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        kind = "an integer" if parse is int else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return _number(env, name, default, lo, hi, int)


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    return _number(env, name, default, lo, hi, float)


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


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
        send_parallel_min=_int(env, "IM_SEND_PARALLEL_MIN", 8, 1, 10_000),
        send_hold_max_ms=_float(env, "IM_SEND_HOLD_MAX_MS", 20.0, 0, 60_000),
        max_outbound_frames=_int(env, "IM_MAX_OUTBOUND_FRAMES", 10_000, 10, 10_000_000),
        send_timeout=_float(env, "IM_SEND_TIMEOUT_SECONDS", 10.0, 0.5, 3600),
        sync_standby=env.get(SYNC_STANDBY_ENV, ""),
        sync_policy=_choice(env, SYNC_POLICY_ENV, DEFAULT_SYNC_POLICY, SYNC_POLICIES),
        sync_degrade_after=_float(
            env,
            SYNC_DEGRADE_AFTER_ENV,
            DEFAULT_SYNC_DEGRADE_AFTER,
            SYNC_DEGRADE_AFTER_MIN,
            SYNC_DEGRADE_AFTER_MAX,
        ),
        # bus auth (issue 12)
        **_nats_credentials(env, nats_url),
        # TLS (issue 13)
        **_tls_files(env),
        tls_port=_int(env, "IM_TLS_PORT", 8443, 0, 65535),
        tls_reload_seconds=_float(env, "IM_TLS_RELOAD_SECONDS", 60.0, 0.1, 86400),
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


def _tls_files(env: Mapping[str, str]) -> dict[str, str | None]:
    """IM_TLS_CERT_FILE / IM_TLS_KEY_FILE, both or neither: a certificate without its key (or
    the reverse) is a broken mount, better refused at start than found by the first client."""
    cert = env.get("IM_TLS_CERT_FILE") or None
    key = env.get("IM_TLS_KEY_FILE") or None
    if (cert is None) != (key is None):
        raise ConfigError("IM_TLS_CERT_FILE and IM_TLS_KEY_FILE must be set together")
    return {"tls_cert_file": cert, "tls_key_file": key}


def _nats_credentials(env: Mapping[str, str], url: str | None) -> dict[str, str | None]:
    """IM_NATS_USER / IM_NATS_PASSWORD, both or neither.

    Separate variables rather than user:password@ in IM_NATS_URL: the URL is printed in errors
    and logs (and in ours above), the password never is, and it needs no URL escaping."""
    user = env.get("IM_NATS_USER") or None
    password = env.get("IM_NATS_PASSWORD") or None
    if (user is None) != (password is None):
        raise ConfigError("IM_NATS_USER and IM_NATS_PASSWORD must be set together")
    if url is not None and "@" in urlsplit(url).netloc:
        # Not echoed: the value holds a credential.
        raise ConfigError(
            "IM_NATS_URL must not carry credentials; set IM_NATS_USER and IM_NATS_PASSWORD"
        )
    return {"nats_user": user, "nats_password": password}


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
