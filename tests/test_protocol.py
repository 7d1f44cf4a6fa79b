"""The wire protocol: round trips, every malformed-input class, and a decoder fuzz property."""

from __future__ import annotations

import struct

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxon import protocol as p
from fluxon.errors import ProtocolError

BIG = b"x" * (p.LARGE_BODY_BYTES + 1)


@pytest.mark.parametrize("payload", [b"", b"small", BIG])
@pytest.mark.parametrize("token", [b"", b"t" * p.MAX_TOKEN_BYTES])
def test_client_request_round_trip(payload: bytes, token: bytes) -> None:
    frames = p.encode_client_request(2**64 - 1, "héllo.route", payload, token=token, timeout_ms=1500)
    assert len(frames) == (2 if payload is BIG else 1)
    msg = p.decode_client_request(frames)
    assert msg == p.ClientRequest(2**64 - 1, 1500, "héllo.route", token, payload)


@pytest.mark.parametrize("status", [p.STATUS_OK, p.STATUS_ERROR])
@pytest.mark.parametrize("body", [b"", b"{}", BIG])
def test_client_reply_round_trip(status: int, body: bytes) -> None:
    msg = p.decode_client_reply(p.encode_client_reply(7, status, body, token=b"new-token"))
    assert msg == p.ClientReply(7, status, b"new-token", body)


def test_large_body_frame_is_passed_through_uncopied() -> None:
    frame = zmq.Frame(BIG)
    frames = p.encode_worker_request(3, "r", b"{}", frame)
    assert frames[1] is frame
    assert p.decode_worker_message(frames).payload is frame


@pytest.mark.parametrize("frames, expected", [
    (p.encode_worker_ready(16, {"pid": 1, "idempotent": ["a"]}), p.WorkerReady(16, {"pid": 1, "idempotent": ["a"]})),
    (p.encode_worker_request(9, "route", b'{"sid":null}', b"payload"),
     p.WorkerRequest(9, "route", b'{"sid":null}', b"payload")),
    (p.encode_worker_request(9, "route", b"", BIG), p.WorkerRequest(9, "route", b"", BIG)),
    (p.encode_worker_reply(9, p.STATUS_OK, b"body", changes=b'{"logout":true}'),
     p.WorkerReply(9, p.STATUS_OK, b'{"logout":true}', b"body")),
    (p.encode_worker_reply(9, p.STATUS_ERROR, BIG), p.WorkerReply(9, p.STATUS_ERROR, b"", BIG)),
    (p.encode_heartbeat(), p.Heartbeat()),
    (p.encode_disconnect(), p.Disconnect()),
    (p.encode_shutdown(), p.Shutdown()),
    (p.encode_admin(5, {"op": "updateschema", "number": 3}), p.Admin(5, {"op": "updateschema", "number": 3})),
    (p.encode_admin_reply(5, p.STATUS_OK, {"saved": "schema_00001.sql"}),
     p.AdminReply(5, p.STATUS_OK, {"saved": "schema_00001.sql"})),
])
def test_worker_messages_round_trip(frames, expected) -> None:
    assert p.decode_worker_message(frames) == expected


def test_control_round_trip() -> None:
    cmd = p.decode_control_command(p.encode_control_command(11, "status", {"verbose": True}))
    assert cmd == p.ControlCommand(11, "status", {"verbose": True})
    res = p.decode_control_result(p.encode_control_result(11, p.STATUS_OK, {"workers": 2}))
    assert res == p.ControlResult(11, p.STATUS_OK, {"workers": 2})


def _client_header(**fields) -> bytes:
    values = dict(proto=p.CLIENT_PROTOCOL, cmd=p.CLIENT_REQUEST, rid=1, timeout=0, route_len=1, token_len=0)
    values.update(fields)
    return struct.pack("!4sBQIBH", *values.values())


@pytest.mark.parametrize("frames, message", [
    ([], "expected 1 or 2 frames"),
    ([b"a", b"b", b"c"], "expected 1 or 2 frames"),
    ([b"GARBAGE!"], "unknown protocol id"),
    ([b"FLX2" + b"\x01" * 20], "unsupported protocol version"),
    ([p.CLIENT_PROTOCOL + b"\x01\x00"], "truncated header"),
    ([_client_header(cmd=0x7F) + b"r"], "unknown command"),
    ([_client_header(route_len=200) + b"r"], "lengths do not add up"),
    ([_client_header(token_len=p.MAX_TOKEN_BYTES + 1) + b"r"], "exceeds"),
    ([_client_header() + b"\xff"], "not UTF-8"),
    ([_client_header() + b"r" + b"inline", b"frame"], "stray bytes"),
    ([b"FLX1", "not bytes"], "must be bytes"),
])
def test_client_request_malformed(frames, message) -> None:
    with pytest.raises(ProtocolError, match=message):
        p.decode_client_request(frames)


def test_malformed_error_carries_request_id_when_known() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode_client_request([_client_header(rid=42, route_len=9)])
    assert info.value.details == {"request_id": 42}


def test_oversize_message_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(ProtocolError, match="exceeds"):
        p.decode_client_request(p.encode_client_request(1, "r", b"x" * 2000))


@pytest.mark.parametrize("frames, message", [
    ([p.WORKER_PROTOCOL + b"\x63"], "unknown command"),
    ([p.WORKER_PROTOCOL + b"\x01\x00"], "truncated header"),
    ([p.WORKER_PROTOCOL + b"\x01\x00\x01[1]"], "JSON object"),
    ([p.WORKER_PROTOCOL + b"\x01\x00\x01{bad"], "not valid JSON"),
    ([p.WORKER_PROTOCOL + b"\x01\x00\x00{}"], "zero credit"),
    ([p.encode_heartbeat()[0] + b"x"], "carries no body"),
    (p.encode_admin(1, {"op": "x"}) + [b"extra"], "one frame"),
    ([struct.pack("!5sBQ", p.WORKER_PROTOCOL, p.W_ADMIN, 1) + b'{"no":"op"}'], "'op' string"),
    ([struct.pack("!5sBQBI", p.WORKER_PROTOCOL, p.W_REPLY, 1, 5, 0)], "unknown status"),
    ([struct.pack("!5sBQBI", p.WORKER_PROTOCOL, p.W_REPLY, 1, 0, 99)], "lengths do not add up"),
    ([b"FLXW9\x01"], "unsupported protocol version"),
])
def test_worker_message_malformed(frames, message) -> None:
    with pytest.raises(ProtocolError, match=message):
        p.decode_worker_message(frames)


@pytest.mark.parametrize("frames, message", [
    ([struct.pack("!5sBQ", p.CONTROL_PROTOCOL, p.C_COMMAND, 1) + b'"status"'], "'command' string"),
    ([struct.pack("!5sBQ", p.CONTROL_PROTOCOL, p.C_COMMAND, 1) + b'{"command":"x","args":[]}'], "'args'"),
    ([struct.pack("!5sBQ", p.CONTROL_PROTOCOL, 9, 1) + b"{}"], "unknown command"),
    (p.encode_control_command(1, "status") + [b"x"], "one frame"),
])
def test_control_command_malformed(frames, message) -> None:
    with pytest.raises(ProtocolError, match=message):
        p.decode_control_command(frames)


def test_encoders_refuse_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ProtocolError):
        p.encode_client_request(1, "r" * 256, b"")
    with pytest.raises(ProtocolError):
        p.encode_client_request(-1, "r", b"")
    with pytest.raises(ProtocolError):
        p.encode_client_reply(1, 7, b"")
    with pytest.raises(ProtocolError):
        p.encode_worker_ready(0, {})


_frame = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda proto, rest: proto + rest,
              st.sampled_from([p.CLIENT_PROTOCOL, p.WORKER_PROTOCOL, p.CONTROL_PROTOCOL, b"FLX9"]),
              st.binary(max_size=64)),
    st.builds(lambda proto, cmd, rest: proto + bytes([cmd]) + rest,
              st.sampled_from([p.CLIENT_PROTOCOL, p.WORKER_PROTOCOL, p.CONTROL_PROTOCOL]),
              st.integers(0, 9), st.binary(max_size=64)),
)
_DECODERS = [p.decode_client_request, p.decode_client_reply, p.decode_worker_message,
             p.decode_control_command, p.decode_control_result]


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(_frame, max_size=4))
def test_decoders_raise_only_protocol_error(frames: list[bytes]) -> None:
    for decode in _DECODERS:
        try:
            decode(frames)
        except ProtocolError:
            pass
