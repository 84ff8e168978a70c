"""The sans-I/O wire protocol: which client frames are valid, which error code each invalid one
gets, and that every server frame is valid JSON that carries the body byte for byte."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from im_server import conversations as c
from im_server import protocol as p
from im_server.errors import ErrorCode, FrameError


def _frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


def _fails(data: str | bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        p.parse_request(data)
    return info.value


# --- every client frame type, valid -------------------------------------------------------


def test_hello_with_every_field() -> None:
    req = p.parse_request(
        _frame(type="hello", v=1, token="tok", device="phone", resume={"d:alice:bob": 3})
    )
    assert req == p.Hello(1, "tok", "phone", {"d:alice:bob": 3})


def test_hello_defaults_version_device_and_resume() -> None:
    assert p.parse_request(_frame(type="hello", token="tok")) == p.Hello(1, "tok", None, {})


def test_send_to_a_user_and_to_a_conversation() -> None:
    to = p.parse_request(_frame(type="send", cid="c1", to="bob", body={"text": "hi"}))
    assert to == p.Send("c1", None, "bob", '{"text":"hi"}')
    conv = p.parse_request(_frame(type="send", cid="c2", conv="g:abc", body=None))
    assert conv == p.Send("c2", "g:abc", None, "null")


def test_send_body_keeps_unicode_and_nesting() -> None:
    body = {"text": "héllo 世界 🎉", "nested": [1, {"deep": [True, None, 2.5, "\u0000"]}]}
    req = p.parse_request(_frame(type="send", cid="c", to="bob", body=body))
    assert isinstance(req, p.Send)
    assert orjson.loads(req.body) == body


def test_sync_with_fields_and_with_defaults() -> None:
    full = p.parse_request(_frame(type="sync", rid="r1", conv="d:a:b", after_seq=7, limit=500))
    assert full == p.Sync("r1", "d:a:b", 7, 500)
    assert p.parse_request(_frame(type="sync", conv="d:a:b")) == p.Sync(None, "d:a:b", 0, 100)


def test_read_convs_typing_ping() -> None:
    assert p.parse_request(_frame(type="read", rid="r", conv="g:x", seq=0)) == p.Read("r", "g:x", 0)
    assert p.parse_request(_frame(type="convs", rid="r2")) == p.Convs("r2")
    assert p.parse_request(_frame(type="typing", conv="g:x")) == p.Typing("g:x")
    assert p.parse_request(_frame(type="ping")) == p.Ping(None)
    assert p.parse_request(_frame(type="ping", rid="p1")) == p.Ping("p1")


def test_watch_deduplicates_users_in_order() -> None:
    req = p.parse_request(_frame(type="watch", rid="w", users=["bob", "alice", "bob"]))
    assert req == p.Watch("w", ("bob", "alice"))


def test_group_frames() -> None:
    create = p.parse_request(_frame(type="group_create", title="team", members=["bob", "carol"]))
    assert create == p.GroupCreate(None, "team", ("bob", "carol"))
    assert p.parse_request(_frame(type="group_create")) == p.GroupCreate(None, "", ())
    add = p.parse_request(_frame(type="group_add", rid="a", conv="g:1", user="dave"))
    assert add == p.GroupAdd("a", "g:1", "dave")
    rm = p.parse_request(_frame(type="group_remove", conv="g:1", user="dave"))
    assert rm == p.GroupRemove(None, "g:1", "dave")
    assert p.parse_request(_frame(type="group_members", conv="g:1")) == p.GroupMembers(None, "g:1")


def test_every_client_frame_type_is_covered_above() -> None:
    # A new frame type must get a test here (and an entry in _TYPE_OF below).
    assert set(_TYPE_OF.values()) == p.CLIENT_FRAME_TYPES
    assert p.FRAME_TYPE_OF == _TYPE_OF  # what the server counts each parsed frame as


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["", "{", "{'type': 'ping'}", "nope", b"\xff\xfe", '{"a":1}x'])
def test_bad_json(data: str | bytes) -> None:
    err = _fails(data)
    assert err.code is ErrorCode.BAD_JSON
    assert not err.retryable


@pytest.mark.parametrize("data", ["[]", "1", '"ping"', "null", "true", '[{"type":"ping"}]'])
def test_frame_that_is_not_an_object(data: str) -> None:
    assert _fails(data).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("data", ["{}", '{"type":null}', '{"type":1}', '{"type":["ping"]}'])
def test_missing_or_non_string_type(data: str) -> None:
    err = _fails(data)
    assert err.code is ErrorCode.BAD_FRAME
    assert "type" in err.message


def test_unknown_type_echoes_rid_and_cid() -> None:
    err = _fails(_frame(type="launch_missiles", rid="r9", cid="c9"))
    assert err.code is ErrorCode.UNKNOWN_TYPE
    assert "launch_missiles" in err.message
    assert p.error_ref(err) == {"rid": "r9", "cid": "c9"}


def test_unknown_type_message_is_bounded() -> None:
    err = _fails(_frame(type="x" * 10_000))
    assert err.code is ErrorCode.UNKNOWN_TYPE
    assert len(err.message) < 100


def test_error_ref_drops_non_string_and_overlong_refs() -> None:
    assert p.error_ref(_fails(_frame(type="nope", rid=5, cid="c" * 65))) == {}
    assert p.error_ref(ValueError("x")) == {}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "hello"}, "token"),
        ({"type": "hello", "token": ""}, "token"),
        ({"type": "hello", "token": 5}, "token"),
        ({"type": "hello", "token": "t", "v": True}, "v"),
        ({"type": "hello", "token": "t", "resume": {"d:a:b": -1}}, "resume"),
        ({"type": "hello", "token": "t", "resume": {"d:a:b": True}}, "resume"),
        ({"type": "hello", "token": "t", "resume": {"bad conv": 1}}, "resume"),
        ({"type": "hello", "token": "t", "resume": [1]}, "resume"),
        ({"type": "send", "to": "bob", "body": 1}, "cid"),
        ({"type": "send", "cid": "c", "to": "bob"}, "body"),
        ({"type": "send", "cid": 1, "to": "bob", "body": 1}, "cid"),
        ({"type": "sync"}, "conv"),
        ({"type": "sync", "conv": 5}, "conv"),
        ({"type": "sync", "conv": "g:x", "after_seq": -1}, "after_seq"),
        ({"type": "sync", "conv": "g:x", "after_seq": "3"}, "after_seq"),
        ({"type": "sync", "conv": "g:x", "after_seq": 1.5}, "after_seq"),
        ({"type": "sync", "conv": "g:x", "limit": True}, "limit"),
        ({"type": "sync", "conv": "g:x", "limit": 0}, "limit"),
        ({"type": "sync", "conv": "g:x", "limit": 501}, "limit"),
        ({"type": "sync", "conv": "g:x", "rid": 7}, "rid"),
        ({"type": "read", "conv": "g:x"}, "seq"),
        ({"type": "read", "conv": "g:x", "seq": False}, "seq"),
        ({"type": "read", "conv": "g:x", "seq": -5}, "seq"),
        ({"type": "typing"}, "conv"),
        ({"type": "watch"}, "users"),
        ({"type": "watch", "users": "bob"}, "users"),
        ({"type": "watch", "users": ["bob", 3]}, "users"),
        ({"type": "watch", "users": ["bob"] * 1001}, "users"),
        ({"type": "group_create", "members": ["not a user"]}, "members"),
        ({"type": "group_create", "title": "t" * 201}, "title"),
        ({"type": "group_add", "conv": "g:x"}, "user"),
        ({"type": "group_add", "user": "bob"}, "conv"),
        ({"type": "group_remove", "conv": "g:x", "user": ""}, "user"),
        ({"type": "group_members"}, "conv"),
        ({"type": "ping", "rid": ""}, "rid"),
        ({"type": "ping", "rid": "r" * 65}, "rid"),
    ],
)
def test_missing_or_wrong_typed_field_names_the_field(fields: dict[str, Any], field: str) -> None:
    err = _fails(orjson.dumps(fields))
    assert err.code is ErrorCode.BAD_FRAME
    assert f"'{field}'" in err.message
    assert fields["type"] in err.message


def test_field_error_keeps_the_cid_so_the_client_can_match_it() -> None:
    err = _fails(_frame(type="send", cid="c42", to="bob"))
    assert p.error_ref(err) == {"cid": "c42"}
    err = _fails(_frame(type="sync", rid="r42", conv="g:x", limit=9999))
    assert p.error_ref(err) == {"rid": "r42"}


def test_send_needs_exactly_one_of_conv_and_to() -> None:
    both = _fails(_frame(type="send", cid="c1", conv="g:x", to="bob", body=1))
    neither = _fails(_frame(type="send", cid="c2", body=1))
    for err in (both, neither):
        assert err.code is ErrorCode.BAD_FRAME
        assert "'conv'" in err.message
    assert p.error_ref(both) == {"cid": "c1"}


@pytest.mark.parametrize("user", ["", "bob smith", "bob/x", "b:ob", "é", "a" * 65, "bob\n"])
def test_send_to_a_bad_user_id(user: str) -> None:
    err = _fails(_frame(type="send", cid="c", to=user, body=1))
    assert err.code is ErrorCode.BAD_FRAME
    assert "'to'" in err.message


@pytest.mark.parametrize("conv", ["", "g x", "g:abc\n", "c" * 141, "g/x"])
def test_bad_conversation_id(conv: str) -> None:
    err = _fails(_frame(type="sync", conv=conv))
    assert err.code is ErrorCode.BAD_FRAME
    assert "'conv'" in err.message


def test_cid_length_limit() -> None:
    ok = p.parse_request(_frame(type="send", cid="c" * 64, to="bob", body=1))
    assert isinstance(ok, p.Send)
    err = _fails(_frame(type="send", cid="c" * 65, to="bob", body=1))
    assert err.code is ErrorCode.BAD_FRAME
    assert "'cid'" in err.message


def test_largest_accepted_user_id_is_64_characters() -> None:
    req = p.parse_request(_frame(type="send", cid="c", to="u" * 64, body=1))
    assert isinstance(req, p.Send) and req.to == "u" * 64


@pytest.mark.parametrize("v", [0, 2, 999])
def test_hello_with_another_protocol_version(v: int) -> None:
    err = _fails(_frame(type="hello", v=v, token="t"))
    assert err.code is ErrorCode.BAD_VERSION
    assert str(v) in err.message


def test_send_body_nested_deeper_than_the_encoder_allows_is_a_frame_error() -> None:
    # Valid JSON (the parser accepts 300 levels), but the body cannot be re-encoded: the client
    # must get a bad_frame for its cid, not an exception that kills the session.
    body = "[" * 300 + "]" * 300
    data = '{"type":"send","cid":"deep","to":"bob","body":' + body + "}"
    err = _fails(data)
    assert err.code is ErrorCode.BAD_FRAME
    assert p.error_ref(err) == {"cid": "deep"}


# --- helpers -------------------------------------------------------------------------------


def test_direct_conv_id_is_the_same_for_both_orders() -> None:
    assert c.direct_conv_id("alice", "bob") == c.direct_conv_id("bob", "alice") == "d:alice:bob"
    assert c.direct_conv_id("Bob", "alice") == "d:Bob:alice"  # byte order, not case-folded
    assert c.direct_conv_id("alice", "alice") == "d:alice:alice"
    assert c.direct_members("d:alice:bob") == ("alice", "bob")
    assert c.direct_members("g:abc") is None
    assert c.direct_members("d:a:b:c") is None


# --- server frames -------------------------------------------------------------------------

_BODY = {"text": 'héllo "quoted" \\ 世界 🎉', "n": [1, 2.5, None, {"k": {"deep": [True]}}]}
_BODY_TEXT = orjson.dumps(_BODY).decode()


def test_msg_carries_the_body_byte_for_byte() -> None:
    frame = p.msg("d:alice:bob", 7, "alice", 1234, _BODY_TEXT)
    assert frame.endswith('"body":' + _BODY_TEXT + "}")
    assert orjson.loads(frame) == {
        "type": "msg",
        "conv": "d:alice:bob",
        "seq": 7,
        "from": "alice",
        "ts": 1234,
        "body": _BODY,
    }


def test_msg_escapes_names() -> None:
    # Ids are validated elsewhere, but the encoder must not depend on that.
    frame = p.msg('c"1', 1, 'a"\\b', 0, "null")
    assert orjson.loads(frame)["conv"] == 'c"1'
    assert orjson.loads(frame)["from"] == 'a"\\b'


def test_batch_with_and_without_rid() -> None:
    items = [p.msg_item(1, "alice", 10, _BODY_TEXT), p.msg_item(2, "bob", 11, '"x"')]
    frame = p.batch("r1", "g:x", items, True, 9)
    assert _BODY_TEXT in frame
    assert orjson.loads(frame) == {
        "type": "batch",
        "conv": "g:x",
        "rid": "r1",
        "msgs": [
            {"seq": 1, "from": "alice", "ts": 10, "body": _BODY},
            {"seq": 2, "from": "bob", "ts": 11, "body": "x"},
        ],
        "more": True,
        "last_seq": 9,
    }
    empty = orjson.loads(p.batch(None, "g:x", [], False, 0))
    assert empty == {"type": "batch", "conv": "g:x", "msgs": [], "more": False, "last_seq": 0}


def test_error_frame() -> None:
    frame = orjson.loads(
        p.error(
            ErrorCode.RATE_LIMITED,
            "slow down ✋",
            retryable=True,
            ref={"cid": "c1"},
            retry_after_ms=250,
        )
    )
    assert frame == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down ✋",
        "retryable": True,
        "cid": "c1",
        "retry_after_ms": 250,
    }
    plain = orjson.loads(p.error(ErrorCode.BAD_JSON, "x"))
    assert plain == {"type": "error", "code": "bad_json", "message": "x", "retryable": False}


def test_ack_frame() -> None:
    assert orjson.loads(p.ack("c1", "d:a:b", 3, 99)) == {
        "type": "ack",
        "cid": "c1",
        "conv": "d:a:b",
        "seq": 3,
        "ts": 99,
    }
    assert orjson.loads(p.ack("c1", "d:a:b", 3, 99, duplicate=True))["duplicate"] is True


def test_other_server_frames_are_json_objects_with_a_type() -> None:
    frames = [
        p.welcome("alice", "s1", 5, "n1"),
        p.reply("pong", "r1"),
        p.reply("convs", None, convs=[]),
        p.reconnect(100),
        p.typing("g:x", "alice"),
        p.presence("alice", "online"),
    ]
    types = [orjson.loads(f)["type"] for f in frames]
    assert types == ["welcome", "pong", "convs", "reconnect", "typing", "presence"]
    assert orjson.loads(frames[1]) == {"type": "pong", "rid": "r1"}
    assert "rid" not in orjson.loads(frames[2])


# --- property: nothing but FrameError escapes parse_request --------------------------------

_TYPE_OF: dict[type, str] = {
    p.Hello: "hello",
    p.Send: "send",
    p.Sync: "sync",
    p.Read: "read",
    p.Convs: "convs",
    p.Typing: "typing",
    p.Watch: "watch",
    p.GroupCreate: "group_create",
    p.GroupAdd: "group_add",
    p.GroupRemove: "group_remove",
    p.GroupMembers: "group_members",
    p.Ping: "ping",
}
_text = st.text(st.characters(codec="utf-8"), max_size=30)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
# Every field some client frame has ("type" apart); test_fuzz draws from them too.
FIELD_NAMES = [
    "v",
    "token",
    "device",
    "resume",
    "cid",
    "conv",
    "to",
    "body",
    "rid",
    "after_seq",
    "limit",
    "seq",
    "users",
    "title",
    "members",
    "user",
]
_field_names = st.sampled_from(["type", *FIELD_NAMES])
_types = st.sampled_from(sorted(p.CLIENT_FRAME_TYPES)) | _text
_objects = st.builds(
    lambda t, extra: {**extra, "type": t},
    _types,
    st.dictionaries(_field_names | _text, _json, max_size=6),
)
_frames = (
    _objects.map(lambda o: orjson.dumps(o).decode())
    | _json.map(lambda o: orjson.dumps(o).decode())
    | st.text(max_size=200)
    | st.binary(max_size=200)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames)
def test_parse_request_raises_only_frame_error(data: str | bytes) -> None:
    try:
        req = p.parse_request(data)
    except FrameError as exc:
        assert exc.code in set(ErrorCode)
        ref = p.error_ref(exc)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in ref.items())
        # Whatever went wrong can be turned into an error frame.
        assert orjson.loads(p.error(exc.code, exc.message, ref=ref))["type"] == "error"
        return
    # A frame that parses is a JSON object whose type names the request it became.
    assert _TYPE_OF[type(req)] == orjson.loads(data)["type"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["alice", "bob"]), _json)
def test_valid_send_body_round_trips(to: str, body: Any) -> None:
    req = p.parse_request(_frame(type="send", cid="c", to=to, body=body))
    assert isinstance(req, p.Send)
    assert orjson.loads(req.body) == body
    pushed = orjson.loads(p.msg(c.direct_conv_id("me", to), 1, "me", 0, req.body))
    assert pushed["body"] == body
