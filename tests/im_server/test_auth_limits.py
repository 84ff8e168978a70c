"""Tokens, the per-connection rate limiter and settings from the environment: pure units."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from im_server import auth
from im_server.config import ConfigError, Settings, from_env
from im_server.errors import AuthError, ErrorCode
from im_server.limits import TokenBucket

SECRET = "s3cret-" * 10  # 70 bytes: long enough for HS512 too, no key-length warning


def _refused(token: str, secret: str = SECRET) -> AuthError:
    with pytest.raises(AuthError) as info:
        auth.verify(secret, token)
    return info.value


def _raw(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _future() -> int:
    return int(time.time()) + 600


# --- JWT -----------------------------------------------------------------------------------


def test_mint_then_verify_returns_the_user() -> None:
    for user in ("alice", "Bob.Smith@example.com", "u_1-2", "x" * 64):
        assert auth.verify(SECRET, auth.mint(SECRET, user)) == user


def test_minted_token_carries_sub_iat_and_exp() -> None:
    token = auth.mint(SECRET, "alice", ttl_seconds=120, now=1_000_000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "alice", "iat": 1_000_000, "exp": 1_000_120}


def test_expired_token_is_token_expired() -> None:
    token = auth.mint(SECRET, "alice", ttl_seconds=60, now=time.time() - 3600)
    err = _refused(token)
    assert err.code is ErrorCode.TOKEN_EXPIRED
    assert not err.retryable


def test_token_signed_with_another_secret_is_refused() -> None:
    err = _refused(auth.mint("another-secret-" * 3, "alice"))
    assert err.code is ErrorCode.AUTH_FAILED


def test_unsigned_alg_none_token_is_refused() -> None:
    # An attacker-made token: the "none" algorithm takes no key (the stubs want one).
    token = jwt.encode({"sub": "alice", "exp": _future()}, None, algorithm="none")  # type: ignore[arg-type, unused-ignore]
    assert _refused(token).code is ErrorCode.AUTH_FAILED


def test_token_with_another_algorithm_is_refused_even_with_the_right_secret() -> None:
    token = _raw({"sub": "alice", "exp": _future()}, alg="HS512")
    assert _refused(token).code is ErrorCode.AUTH_FAILED


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 4_000_000_000},  # no sub
        {"sub": "alice"},  # no exp: a token must not live forever
    ],
)
def test_token_without_sub_or_exp_is_refused(claims: dict[str, Any]) -> None:
    err = _refused(_raw(claims))
    assert err.code is ErrorCode.AUTH_FAILED


@pytest.mark.parametrize("sub", ["", "bob smith", "b:ob", "a" * 65, "alice\n", "élise"])
def test_token_whose_subject_is_not_a_user_id_is_refused(sub: str) -> None:
    err = _refused(_raw({"sub": sub, "exp": _future()}))
    assert err.code is ErrorCode.AUTH_FAILED


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 500])
def test_garbage_token_is_refused(token: str) -> None:
    assert _refused(token).code is ErrorCode.AUTH_FAILED


@pytest.mark.parametrize("user", ["", "bob smith", "a" * 65, "alice\n"])
def test_mint_refuses_a_bad_user_id(user: str) -> None:
    with pytest.raises(ValueError, match="user id"):
        auth.mint(SECRET, user)


def test_mint_refuses_a_non_positive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        auth.mint(SECRET, "alice", ttl_seconds=0)


# --- token bucket --------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [b.take(100.0) for _ in range(3)] == [0, 0, 0]
    # Empty: the next token is 1/rate = 500 ms away.
    assert b.take(100.0) == 500
    assert b.take(100.25) == 250  # half a token refilled
    assert b.take(100.5) == 0  # a whole token: taken
    assert b.take(100.5) == 500


def test_bucket_refill_is_capped_at_the_burst() -> None:
    b = TokenBucket(rate=10.0, burst=4, now=0.0)
    for _ in range(4):
        assert b.take(0.0) == 0
    # A long idle period refills to the burst, not beyond.
    assert [b.take(1000.0) for _ in range(5)] == [0, 0, 0, 0, 100]


def test_bucket_wait_is_at_least_one_millisecond() -> None:
    b = TokenBucket(rate=1_000_000.0, burst=1, now=0.0)
    assert b.take(0.0) == 0
    assert b.take(0.0) == 1


def test_bucket_sustained_rate() -> None:
    # Times are multiples of 1/8 s, exact in binary floating point.
    b = TokenBucket(rate=4.0, burst=1, now=0.0)
    # One take every 250 ms is exactly the rate: all allowed, for a long time.
    assert all(b.take(i * 0.25) == 0 for i in range(1, 400))
    # Twice the rate: every other take is refused.
    b2 = TokenBucket(rate=4.0, burst=1, now=0.0)
    assert [b2.take(i * 0.125) for i in range(1, 7)] == [0, 125, 0, 125, 0, 125]


# --- settings from the environment ---------------------------------------------------------

_BASE = {"IM_DATABASE_URL": "postgresql://u:p@localhost:5432/im", "IM_JWT_SECRET": "x" * 16}


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(_BASE)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _config_error(**changes: str | None) -> str:
    with pytest.raises(ConfigError) as info:
        from_env(_env(**changes))
    return str(info.value)


def test_minimal_environment_gives_the_documented_defaults() -> None:
    s = from_env(_BASE)
    assert s == Settings(database_url=_BASE["IM_DATABASE_URL"], jwt_secret="x" * 16)
    assert s.max_frame == 64 * 1024
    assert s.admin_token is None and s.nats_url is None


def test_every_setting_is_read() -> None:
    s = from_env(
        _env(
            IM_NATS_URL="nats://127.0.0.1:4222",
            IM_ADMIN_TOKEN="a" * 16,
            IM_NODE_ID="n7",
            IM_MAX_FRAME="2048",
            IM_RATE_PER_SEC="5.5",
            IM_RATE_BURST="9",
            IM_MAX_SESSIONS_PER_USER="3",
            IM_HELLO_TIMEOUT="0.5",
        )
    )
    assert (s.nats_url, s.admin_token, s.node_id) == ("nats://127.0.0.1:4222", "a" * 16, "n7")
    assert (s.max_frame, s.rate_per_sec, s.rate_burst) == (2048, 5.5, 9)
    assert (s.max_sessions_per_user, s.hello_timeout) == (3, 0.5)


def test_empty_optional_values_mean_unset() -> None:
    s = from_env(_env(IM_NATS_URL="", IM_ADMIN_TOKEN="", IM_MAX_FRAME=""))
    assert s.nats_url is None and s.admin_token is None and s.max_frame == 64 * 1024


@pytest.mark.parametrize("value", [None, "", "mysql://u@h/db", "localhost:5432"])
def test_missing_or_non_postgres_database_url_names_the_variable(value: str | None) -> None:
    assert "IM_DATABASE_URL" in _config_error(IM_DATABASE_URL=value)


@pytest.mark.parametrize("value", [None, "", "x" * 15])
def test_missing_or_short_jwt_secret_names_the_variable(value: str | None) -> None:
    assert "IM_JWT_SECRET" in _config_error(IM_JWT_SECRET=value)


@pytest.mark.parametrize("value", ["big", "1.5", "10", str(1 << 40)])
def test_bad_max_frame_names_the_variable_and_the_value(value: str) -> None:
    msg = _config_error(IM_MAX_FRAME=value)
    assert "IM_MAX_FRAME" in msg
    assert value in msg


@pytest.mark.parametrize("value", ["http://nats:4222", "localhost:4222", "nats:/x"])
def test_bad_nats_url_names_the_variable(value: str) -> None:
    msg = _config_error(IM_NATS_URL=value)
    assert "IM_NATS_URL" in msg and value in msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IM_ADMIN_TOKEN", "short"),
        ("IM_RATE_PER_SEC", "fast"),
        ("IM_RATE_PER_SEC", "0"),
        ("IM_RATE_BURST", "0"),
        ("IM_MAX_SESSIONS_PER_USER", "-1"),
        ("IM_HELLO_TIMEOUT", "nan?"),
    ],
)
def test_other_bad_settings_name_the_variable(name: str, value: str) -> None:
    assert name in _config_error(**{name: value})


def test_nats_credentials_come_from_their_own_variables() -> None:
    s = from_env(
        _env(IM_NATS_URL="nats://127.0.0.1:4222", IM_NATS_USER="im", IM_NATS_PASSWORD="pw")
    )
    assert (s.nats_url, s.nats_user, s.nats_password) == ("nats://127.0.0.1:4222", "im", "pw")
    assert (from_env(_BASE).nats_user, from_env(_BASE).nats_password) == (None, None)


@pytest.mark.parametrize("given", [{"IM_NATS_USER": "im"}, {"IM_NATS_PASSWORD": "pw"}])
def test_nats_user_and_password_go_together(given: dict[str, str]) -> None:
    msg = _config_error(**given)
    assert "IM_NATS_USER" in msg and "IM_NATS_PASSWORD" in msg and "pw" not in msg


def test_credentials_in_the_nats_url_are_refused_without_echoing_them() -> None:
    msg = _config_error(IM_NATS_URL="nats://im:hunter2@127.0.0.1:4222")
    assert "IM_NATS_URL" in msg and "IM_NATS_PASSWORD" in msg and "hunter2" not in msg
