"""Fluxon's wire protocols: every constant, header layout, encoder and decoder.

Three protocols share one shape. A message is the ROUTER envelope (the routing
id, added and stripped by ZeroMQ, never seen here), then ONE header frame that
holds a struct-packed header followed by the body, plus an optional second
frame carrying a large body (> ``LARGE_BODY_BYTES``) so it is never copied into
the header frame. When the second frame is present the header frame carries no
inline body. All integers are big-endian ("network order").

=============  ==========  =====================================================
protocol       id          peers
=============  ==========  =====================================================
client         ``FLX1``    client DEALER  <-> broker frontend ROUTER
worker         ``FLXW1``   worker DEALER  <-> broker backend ROUTER
control        ``FLXC1``   admin DEALER   <-> broker control ROUTER
=============  ==========  =====================================================

The id carries the version: a peer speaking ``FLX2`` is refused as an unknown
protocol version. Example, a client REQUEST for route ``"ping"`` with an empty
token and payload ``b"P"`` (one frame)::

    b"FLX1" 0x01 | request_id u64 | timeout_ms u32 | route_len u8 | token_len u16 | b"ping" | b"P"

Decoders raise :class:`fluxon.errors.ProtocolError` (and nothing else) on any
malformed input: wrong frame count, unknown protocol id or version, unknown
command, truncated header, lengths that do not add up, oversize. When the
header got far enough to name the request or job, the error's ``details``
carry ``request_id`` / ``job_id`` so the receiver can send an error reply.
``docs/protocol.md`` documents each message frame by frame.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, Union

import zmq

from fluxon.errors import ProtocolError
from fluxon.types import Body, Frame, Frames, JobId, JSONObject, RequestId

__all__ = [
    # constants
    "CLIENT_PROTOCOL", "WORKER_PROTOCOL", "CONTROL_PROTOCOL",
    "STATUS_OK", "STATUS_ERROR",
    "LARGE_BODY_BYTES", "MAX_MESSAGE_BYTES", "MAX_ROUTE_BYTES", "MAX_TOKEN_BYTES",
    "CLIENT_REQUEST", "CLIENT_REPLY",
    "W_READY", "W_REQUEST", "W_REPLY", "W_HEARTBEAT", "W_DISCONNECT", "W_ADMIN", "W_ADMIN_REPLY",
    "W_SHUTDOWN",
    "C_COMMAND", "C_RESULT",
    # decoded messages
    "ClientRequest", "ClientReply",
    "WorkerReady", "WorkerRequest", "WorkerReply", "Heartbeat", "Disconnect", "Shutdown", "Admin", "AdminReply",
    "WorkerMessage", "ControlCommand", "ControlResult",
    # client protocol
    "encode_client_request", "decode_client_request", "encode_client_reply", "decode_client_reply",
    # worker protocol
    "encode_worker_ready", "encode_worker_request", "encode_worker_reply", "encode_heartbeat",
    "encode_disconnect", "encode_shutdown", "encode_admin", "encode_admin_reply", "decode_worker_message",
    # sending and receiving
    "send_frames", "recv_frames", "receive_waiting",
    # control protocol
    "encode_control_command", "decode_control_command", "encode_control_result", "decode_control_result",
]

# --------------------------------------------------------------------------- constants

CLIENT_PROTOCOL = b"FLX1"
WORKER_PROTOCOL = b"FLXW1"
CONTROL_PROTOCOL = b"FLXC1"

STATUS_OK = 0
STATUS_ERROR = 1
_STATUSES = (STATUS_OK, STATUS_ERROR)

#: Bodies longer than this travel in a frame of their own (no copy into the header frame).
LARGE_BODY_BYTES = 64 * 1024
#: Default upper bound of one message (all frames); sockets also set zmq.MAXMSGSIZE.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_ROUTE_BYTES = 255
MAX_TOKEN_BYTES = 1024

# client protocol commands
CLIENT_REQUEST = 0x01
CLIENT_REPLY = 0x02

# worker protocol commands
W_READY = 0x01
W_REQUEST = 0x02
W_REPLY = 0x03
W_HEARTBEAT = 0x04
W_DISCONNECT = 0x05
W_ADMIN = 0x06
W_ADMIN_REPLY = 0x07
W_SHUTDOWN = 0x08

# control protocol commands
C_COMMAND = 0x01
C_RESULT = 0x02

# Header layouts (protocol id and command included, body follows).
_CLIENT_REQUEST = struct.Struct("!4sBQIBH")    # id, cmd, request_id, timeout_ms, route_len, token_len
_CLIENT_REPLY = struct.Struct("!4sBQBH")       # id, cmd, request_id, status, token_len
_CLIENT_REQUEST_SIZE, _CLIENT_REPLY_SIZE = _CLIENT_REQUEST.size, _CLIENT_REPLY.size
_W_BARE = struct.Struct("!5sB")                # id, cmd (HEARTBEAT, DISCONNECT, SHUTDOWN)
_W_BARE_SIZE = _W_BARE.size
_W_READY = struct.Struct("!5sBH")              # id, cmd, credit ; then JSON info
_W_REQUEST = struct.Struct("!5sBQBI")          # id, cmd, job_id, route_len, context_len
_W_REPLY = struct.Struct("!5sBQBI")            # id, cmd, job_id, status, changes_len
_W_REQUEST_SIZE, _W_REPLY_SIZE = _W_REQUEST.size, _W_REPLY.size
_W_ADMIN = struct.Struct("!5sBQ")              # id, cmd, job_id ; then JSON op
_W_ADMIN_REPLY = struct.Struct("!5sBQB")       # id, cmd, job_id, status ; then JSON result
_C_COMMAND = struct.Struct("!5sBQ")            # id, cmd, command_id ; then JSON {"command","args"}
_C_RESULT = struct.Struct("!5sBQB")            # id, cmd, command_id, status ; then JSON body

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF

# --------------------------------------------------------------------------- decoded messages
# Plain slotted dataclasses, not frozen ones: a frozen dataclass sets each field through
# object.__setattr__ (0.62 against 0.17 µs for five fields), and every request decodes four.


@dataclass(slots=True)
class ClientRequest:
    """REQUEST, client -> broker."""
    request_id: RequestId
    timeout_ms: int
    route: str
    token: bytes
    payload: Body


@dataclass(slots=True)
class ClientReply:
    """REPLY, broker -> client. ``token`` is non-empty only when the session token changed."""
    request_id: RequestId
    status: int
    token: bytes
    body: Body


@dataclass(slots=True)
class WorkerReady:
    """READY, worker -> broker: ``credit`` requests at once, ``info`` = pid, host, app, idempotent routes."""
    credit: int
    info: JSONObject


@dataclass(slots=True)
class WorkerRequest:
    """REQUEST, broker -> worker. ``context`` is the session context as JSON bytes."""
    job_id: JobId
    route: str
    context: bytes
    payload: Body


@dataclass(slots=True)
class WorkerReply:
    """REPLY, worker -> broker. ``changes`` is session-change JSON, or empty."""
    job_id: JobId
    status: int
    changes: bytes
    body: Body


@dataclass(slots=True)
class Heartbeat:
    """HEARTBEAT, both directions."""


@dataclass(slots=True)
class Disconnect:
    """DISCONNECT ("goodbye"), both directions."""


@dataclass(slots=True)
class Shutdown:
    """SHUTDOWN, broker -> worker: the deployment is stopping; finish in-flight work and exit.

    Unlike DISCONNECT (after which a worker reconnects, so it survives a broker restart),
    this is the console's ``stop``: the worker says goodbye and its process exits 0.
    """


@dataclass(slots=True)
class Admin:
    """ADMIN, broker -> worker: one schema operation, e.g. ``{"op": "saveschema"}``."""
    job_id: JobId
    op: JSONObject


@dataclass(slots=True)
class AdminReply:
    """ADMIN_REPLY, worker -> broker: the operation's result as plain data, or the error dict."""
    job_id: JobId
    status: int
    result: Any


WorkerMessage = Union[WorkerReady, WorkerRequest, WorkerReply, Heartbeat, Disconnect, Shutdown, Admin,
                      AdminReply]


@dataclass(slots=True)
class ControlCommand:
    """COMMAND, admin -> broker control socket."""
    command_id: int
    command: str
    args: JSONObject


@dataclass(slots=True)
class ControlResult:
    """RESULT, broker -> admin: ``data`` is the result, or the error dict when status is STATUS_ERROR."""
    command_id: int
    status: int
    data: Any


# --------------------------------------------------------------------------- shared helpers


def _as_bytes(frame: Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    if isinstance(frame, (memoryview, bytearray)):
        return bytes(frame)
    raise ProtocolError(f"a frame must be bytes, not {type(frame).__name__}")


def _frame_len(frame: Frame) -> int:
    if not isinstance(frame, (bytes, memoryview, bytearray, zmq.Frame)):
        raise ProtocolError(f"a frame must be bytes, not {type(frame).__name__}")
    return len(frame)


def _split_body(body: Body, header: bytes) -> list[Frame]:
    """The frames of one message: the body inline when small, in its own frame when large."""
    if isinstance(body, bytes) and len(body) <= LARGE_BODY_BYTES:
        return [header + body]
    return [header, body]


def _check_frames(frames: Frames, protocol: bytes, what: str) -> bytes:
    """Count the frames, check the total size and the protocol id; return the header frame."""
    if type(frames) is list and len(frames) == 1:  # the usual message: one bytes frame (fast path)
        head = frames[0]
        if type(head) is bytes and len(head) <= MAX_MESSAGE_BYTES and head.startswith(protocol):
            return head
    return _check_frames_fully(frames, protocol, what)


def _check_frames_fully(frames: Frames, protocol: bytes, what: str) -> bytes:
    """:func:`_check_frames` for every shape of input, with the error that names what is wrong."""
    if not isinstance(frames, (list, tuple)) or not 1 <= len(frames) <= 2:
        count = len(frames) if isinstance(frames, (list, tuple)) else "?"
        raise ProtocolError(f"{what}: expected 1 or 2 frames, got {count}")
    head = _as_bytes(frames[0])
    total = len(head) + (_frame_len(frames[1]) if len(frames) == 2 else 0)
    if total > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{what}: message of {total} bytes exceeds {MAX_MESSAGE_BYTES}")
    if head[:len(protocol)] != protocol:
        got = head[:len(protocol)]
        if got[:3] == protocol[:3]:
            raise ProtocolError(f"{what}: unsupported protocol version {got!r} (expected {protocol!r})")
        raise ProtocolError(f"{what}: unknown protocol id {got!r} (expected {protocol!r})")
    return head


def _body(frames: Frames, head: bytes, offset: int, what: str, ids: dict[str, int]) -> Body:
    """The body: the rest of the header frame, or the second frame (then nothing may be inline)."""
    if len(frames) == 2:
        if len(head) != offset:
            raise ProtocolError(f"{what}: {len(head) - offset} stray bytes after the header "
                                "of a two-frame message", details=ids)
        return frames[1]
    return head[offset:]


def _unpack(layout: struct.Struct, head: bytes, what: str) -> tuple:
    if len(head) < layout.size:
        raise ProtocolError(f"{what}: truncated header ({len(head)} of {layout.size} bytes)")
    return layout.unpack_from(head)


def _check_status(status: int, what: str, ids: dict[str, int]) -> None:
    if status not in _STATUSES:
        raise ProtocolError(f"{what}: unknown status {status}", details=ids)


def _utf8(data: bytes, what: str, **ids: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what}: route is not UTF-8", details=ids) from exc


def _json_object(data: Body, what: str, ids: dict[str, int]) -> Any:
    try:
        return json.loads(_as_bytes(data))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"{what}: body is not valid JSON", details=ids) from exc


def _dump_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def _route_bytes(route: str) -> bytes:
    data = route.encode("utf-8")
    if len(data) > MAX_ROUTE_BYTES:
        raise ProtocolError(f"route name is {len(data)} bytes; the limit is {MAX_ROUTE_BYTES}")
    return data


def _check_u(value: int, limit: int, name: str) -> None:
    if not 0 <= value <= limit:
        raise ProtocolError(f"{name}={value} does not fit the protocol field")


def send_frames(sock: zmq.Socket, frames: list[Frame], flags: int = 0) -> None:
    """Send one encoded message on a DEALER: a small one with a single ``send``, a large one zero-copy.

    pyzmq's ``send_multipart`` costs about 0.8 µs more than ``send`` for a one-frame
    message; the two-frame form carries a large body that should not be copied.
    """
    if len(frames) == 1:
        sock.send(frames[0], flags)
    else:
        sock.send_multipart(frames, flags, copy=False)


_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: cheaper
_Received = TypeVar("_Received")


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list[Frame]:
    """Receive the rest of one message: the first frame as bytes, any further frame zero-copy.

    Each frame is received with ``copy=False`` so that it carries its own "more" flag:
    ``recv_multipart`` asks ``getsockopt(RCVMORE)`` per frame, which costs more (pyzmq
    builds an option enum per call) than the Frame plus one copy of a small header
    (1.07 vs 1.61 µs per frame). A large body stays a :class:`zmq.Frame`.
    """
    frame = sock.recv(flags, copy=False)
    frames: list[Frame] = [frame.bytes]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame)
    return frames



def _recv_frames_now(sock: zmq.Socket) -> list[Frame]:
    return recv_frames(sock, _NOBLOCK)


def receive_waiting(sock: zmq.Socket, receive: Callable[[zmq.Socket], _Received] = _recv_frames_now, *,
                    ask_at: int = 1, limit: int = 0,
                    at_limit: Callable[[zmq.Socket], None] | None = None) -> Iterator[_Received]:
    """Yield ``receive(sock)`` for every message waiting on ``sock``; ``receive`` must not block.

    How a drain learns that nothing is left decides its cost: a ``ZMQ_EVENTS`` query is a
    ``poll()`` plus a ``getpid()`` in libzmq (about 1.5 µs), a successful receive makes no
    system call, and a ``zmq.Again`` costs about two queries (pyzmq builds the exception with
    an import and ``strerror``; at one request in flight that cold path cost more than
    anything else). So ``ZMQ_EVENTS`` is asked once, before receive number ``ask_at`` (1: a
    lone message, usual at low load, ends the drain there; 0: right after a send, where the
    usual answer is "nothing"), and otherwise the drain receives until ``zmq.Again``. Either
    ending makes libzmq process the socket's pending commands, which re-arms its
    edge-triggered ``zmq.FD``. With ``limit``, at most that many are received and then
    ``at_limit(sock)`` is called (the caller still has messages to take later).
    """
    count = 0
    while True:
        if count == ask_at and not sock.getsockopt(_EVENTS) & _POLLIN:
            return
        if count == limit and limit:
            if at_limit is not None:
                at_limit(sock)
            return
        try:
            message = receive(sock)
        except zmq.Again:
            return
        count += 1
        yield message


# --------------------------------------------------------------------------- client protocol


def encode_client_request(request_id: RequestId, route: str, payload: Body, *,
                          token: bytes = b"", timeout_ms: int = 0) -> list[Frame]:
    """Frames of a client REQUEST (without envelope)."""
    _check_u(request_id, _U64_MAX, "request_id")
    _check_u(timeout_ms, _U32_MAX, "timeout_ms")
    route_b = _route_bytes(route)
    if len(token) > MAX_TOKEN_BYTES:
        raise ProtocolError(f"session token is {len(token)} bytes; the limit is {MAX_TOKEN_BYTES}")
    header = _CLIENT_REQUEST.pack(CLIENT_PROTOCOL, CLIENT_REQUEST, request_id, timeout_ms,
                                  len(route_b), len(token)) + route_b + token
    return _split_body(payload, header)


def decode_client_request(frames: Frames) -> ClientRequest:
    """Decode a client REQUEST; :class:`ProtocolError` on anything malformed."""
    what = "client request"
    head = _check_frames(frames, CLIENT_PROTOCOL, what)
    _, cmd, request_id, timeout_ms, route_len, token_len = _unpack(_CLIENT_REQUEST, head, what)
    start = _CLIENT_REQUEST_SIZE
    offset = start + route_len + token_len
    if cmd != CLIENT_REQUEST or token_len > MAX_TOKEN_BYTES or len(head) < offset:
        ids = {"request_id": request_id}
        if cmd != CLIENT_REQUEST:
            raise ProtocolError(f"{what}: unknown command 0x{cmd:02x}", details=ids)
        if token_len > MAX_TOKEN_BYTES:
            raise ProtocolError(f"{what}: token of {token_len} bytes exceeds {MAX_TOKEN_BYTES}", details=ids)
        raise ProtocolError(f"{what}: lengths do not add up (header frame {len(head)} bytes, "
                            f"fields need {offset})", details=ids)
    route = _utf8(head[start:start + route_len], what, request_id=request_id)
    body = head[offset:] if len(frames) == 1 else _body(frames, head, offset, what, {"request_id": request_id})
    return ClientRequest(request_id, timeout_ms, route, head[start + route_len:offset], body)


def encode_client_reply(request_id: RequestId, status: int, body: Body, *,
                        token: bytes = b"") -> list[Frame]:
    """Frames of a broker REPLY to a client (without envelope)."""
    _check_u(request_id, _U64_MAX, "request_id")
    if status not in _STATUSES:
        raise ProtocolError(f"unknown status {status}")
    if len(token) > MAX_TOKEN_BYTES:
        raise ProtocolError(f"session token is {len(token)} bytes; the limit is {MAX_TOKEN_BYTES}")
    header = _CLIENT_REPLY.pack(CLIENT_PROTOCOL, CLIENT_REPLY, request_id, status, len(token)) + token
    return _split_body(body, header)


def decode_client_reply(frames: Frames) -> ClientReply:
    """Decode a broker REPLY on the client; :class:`ProtocolError` on anything malformed."""
    what = "client reply"
    head = _check_frames(frames, CLIENT_PROTOCOL, what)
    _, cmd, request_id, status, token_len = _unpack(_CLIENT_REPLY, head, what)
    offset = _CLIENT_REPLY_SIZE + token_len
    if cmd != CLIENT_REPLY or status not in _STATUSES or token_len > MAX_TOKEN_BYTES or len(head) < offset:
        ids = {"request_id": request_id}
        if cmd != CLIENT_REPLY:
            raise ProtocolError(f"{what}: unknown command 0x{cmd:02x}", details=ids)
        _check_status(status, what, ids)
        if token_len > MAX_TOKEN_BYTES:
            raise ProtocolError(f"{what}: token of {token_len} bytes exceeds {MAX_TOKEN_BYTES}", details=ids)
        raise ProtocolError(f"{what}: lengths do not add up", details=ids)
    body = head[offset:] if len(frames) == 1 else _body(frames, head, offset, what, {"request_id": request_id})
    return ClientReply(request_id, status, head[_CLIENT_REPLY_SIZE:offset], body)


# --------------------------------------------------------------------------- worker protocol


def encode_worker_ready(credit: int, info: JSONObject) -> list[Frame]:
    """READY: the worker runs ``credit`` requests at once; ``info`` = pid, host, concurrency, app, idempotent."""
    if not 1 <= credit <= _U16_MAX:
        raise ProtocolError(f"credit={credit} must be between 1 and {_U16_MAX}")
    return [_W_READY.pack(WORKER_PROTOCOL, W_READY, credit) + _dump_json(info)]


def encode_worker_request(job_id: JobId, route: str, context: bytes, payload: Body) -> list[Frame]:
    """REQUEST broker -> worker: ``context`` is the session context JSON (bytes, passed through)."""
    _check_u(job_id, _U64_MAX, "job_id")
    _check_u(len(context), _U32_MAX, "context length")
    route_b = _route_bytes(route)
    header = _W_REQUEST.pack(WORKER_PROTOCOL, W_REQUEST, job_id, len(route_b), len(context)) + route_b + context
    return _split_body(payload, header)


def encode_worker_reply(job_id: JobId, status: int, body: Body, *, changes: bytes = b"") -> list[Frame]:
    """REPLY worker -> broker: ``changes`` is session-change JSON, empty when nothing changed."""
    _check_u(job_id, _U64_MAX, "job_id")
    if status not in _STATUSES:
        raise ProtocolError(f"unknown status {status}")
    header = _W_REPLY.pack(WORKER_PROTOCOL, W_REPLY, job_id, status, len(changes)) + changes
    return _split_body(body, header)


_HEARTBEAT_FRAMES = (_W_BARE.pack(WORKER_PROTOCOL, W_HEARTBEAT),)
_DISCONNECT_FRAMES = (_W_BARE.pack(WORKER_PROTOCOL, W_DISCONNECT),)
_SHUTDOWN_FRAMES = (_W_BARE.pack(WORKER_PROTOCOL, W_SHUTDOWN),)


def encode_heartbeat() -> list[Frame]:
    """HEARTBEAT, either direction."""
    return list(_HEARTBEAT_FRAMES)


def encode_disconnect() -> list[Frame]:
    """DISCONNECT ("goodbye"), either direction."""
    return list(_DISCONNECT_FRAMES)


def encode_shutdown() -> list[Frame]:
    """SHUTDOWN, broker -> worker: finish in-flight work, say goodbye and exit (the console's ``stop``)."""
    return list(_SHUTDOWN_FRAMES)


def encode_admin(job_id: JobId, op: JSONObject) -> list[Frame]:
    """ADMIN broker -> worker: one schema operation as JSON."""
    _check_u(job_id, _U64_MAX, "job_id")
    return [_W_ADMIN.pack(WORKER_PROTOCOL, W_ADMIN, job_id) + _dump_json(op)]


def encode_admin_reply(job_id: JobId, status: int, result: Any) -> list[Frame]:
    """ADMIN_REPLY worker -> broker: the result as plain data (or the error dict)."""
    _check_u(job_id, _U64_MAX, "job_id")
    if status not in _STATUSES:
        raise ProtocolError(f"unknown status {status}")
    return [_W_ADMIN_REPLY.pack(WORKER_PROTOCOL, W_ADMIN_REPLY, job_id, status) + _dump_json(result)]


def _decode_ready(frames: Frames, head: bytes, what: str) -> WorkerReady:
    if len(frames) != 1:
        raise ProtocolError(f"{what}: READY must be one frame")
    _, _, credit = _unpack(_W_READY, head, what)
    if credit < 1:
        raise ProtocolError(f"{what}: READY with zero credit")
    info = _json_object(head[_W_READY.size:], what, {})
    if not isinstance(info, dict):
        raise ProtocolError(f"{what}: READY info must be a JSON object")
    return WorkerReady(credit, info)


def _decode_w_request(frames: Frames, head: bytes, what: str) -> WorkerRequest:
    _, _, job_id, route_len, context_len = _unpack(_W_REQUEST, head, what)
    start = _W_REQUEST_SIZE
    offset = start + route_len + context_len
    if len(head) < offset:
        raise ProtocolError(f"{what}: lengths do not add up", details={"job_id": job_id})
    route = _utf8(head[start:start + route_len], what, job_id=job_id)
    body = head[offset:] if len(frames) == 1 else _body(frames, head, offset, what, {"job_id": job_id})
    return WorkerRequest(job_id, route, head[start + route_len:offset], body)


def _decode_w_reply(frames: Frames, head: bytes, what: str) -> WorkerReply:
    _, _, job_id, status, changes_len = _unpack(_W_REPLY, head, what)
    offset = _W_REPLY_SIZE + changes_len
    if status not in _STATUSES or len(head) < offset:
        _check_status(status, what, {"job_id": job_id})
        raise ProtocolError(f"{what}: lengths do not add up", details={"job_id": job_id})
    body = head[offset:] if len(frames) == 1 else _body(frames, head, offset, what, {"job_id": job_id})
    return WorkerReply(job_id, status, head[_W_REPLY_SIZE:offset], body)


def _decode_bare(frames: Frames, head: bytes, what: str, message: Heartbeat | Disconnect | Shutdown):
    if len(frames) != 1 or len(head) != _W_BARE.size:
        raise ProtocolError(f"{what}: {type(message).__name__.upper()} carries no body")
    return message


def _decode_admin(frames: Frames, head: bytes, what: str) -> Admin:
    if len(frames) != 1:
        raise ProtocolError(f"{what}: ADMIN must be one frame")
    _, _, job_id = _unpack(_W_ADMIN, head, what)
    ids = {"job_id": job_id}
    op = _json_object(head[_W_ADMIN.size:], what, ids)
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise ProtocolError(f"{what}: ADMIN body must be a JSON object with an 'op' string", details=ids)
    return Admin(job_id, op)


def _decode_admin_reply(frames: Frames, head: bytes, what: str) -> AdminReply:
    if len(frames) != 1:
        raise ProtocolError(f"{what}: ADMIN_REPLY must be one frame")
    _, _, job_id, status = _unpack(_W_ADMIN_REPLY, head, what)
    ids = {"job_id": job_id}
    _check_status(status, what, ids)
    return AdminReply(job_id, status, _json_object(head[_W_ADMIN_REPLY.size:], what, ids))


_HEARTBEAT = Heartbeat()
_DISCONNECT = Disconnect()
_SHUTDOWN = Shutdown()


def decode_worker_message(frames: Frames) -> WorkerMessage:
    """Decode any worker-protocol message (either direction) into its dataclass."""
    what = "worker message"
    head = _check_frames(frames, WORKER_PROTOCOL, what)
    if len(head) < _W_BARE_SIZE:
        _unpack(_W_BARE, head, what)  # raises: truncated header
    cmd = head[_W_BARE_SIZE - 1]
    if cmd == W_REPLY:
        return _decode_w_reply(frames, head, what)
    if cmd == W_REQUEST:
        return _decode_w_request(frames, head, what)
    if cmd == W_HEARTBEAT:
        return _decode_bare(frames, head, what, _HEARTBEAT)
    if cmd == W_READY:
        return _decode_ready(frames, head, what)
    if cmd == W_DISCONNECT:
        return _decode_bare(frames, head, what, _DISCONNECT)
    if cmd == W_SHUTDOWN:
        return _decode_bare(frames, head, what, _SHUTDOWN)
    if cmd == W_ADMIN:
        return _decode_admin(frames, head, what)
    if cmd == W_ADMIN_REPLY:
        return _decode_admin_reply(frames, head, what)
    raise ProtocolError(f"{what}: unknown command 0x{cmd:02x}")


# --------------------------------------------------------------------------- control protocol


def encode_control_command(command_id: int, command: str, args: JSONObject | None = None) -> list[Frame]:
    """COMMAND admin -> broker: ``{"command": command, "args": args}`` as JSON."""
    _check_u(command_id, _U64_MAX, "command_id")
    body = _dump_json({"command": command, "args": dict(args or {})})
    return [_C_COMMAND.pack(CONTROL_PROTOCOL, C_COMMAND, command_id) + body]


def decode_control_command(frames: Frames) -> ControlCommand:
    """Decode a control COMMAND; :class:`ProtocolError` on anything malformed."""
    what = "control command"
    head = _check_frames(frames, CONTROL_PROTOCOL, what)
    if len(frames) != 1:
        raise ProtocolError(f"{what}: must be one frame")
    _, cmd, command_id = _unpack(_C_COMMAND, head, what)
    ids = {"command_id": command_id}
    if cmd != C_COMMAND:
        raise ProtocolError(f"{what}: unknown command 0x{cmd:02x}", details=ids)
    body = _json_object(head[_C_COMMAND.size:], what, ids)
    if not isinstance(body, dict) or not isinstance(body.get("command"), str):
        raise ProtocolError(f"{what}: body must be a JSON object with a 'command' string", details=ids)
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(f"{what}: 'args' must be a JSON object", details=ids)
    return ControlCommand(command_id, body["command"], args)


def encode_control_result(command_id: int, status: int, data: Any) -> list[Frame]:
    """RESULT broker -> admin: ``data`` as JSON (the error dict when status is STATUS_ERROR)."""
    _check_u(command_id, _U64_MAX, "command_id")
    if status not in _STATUSES:
        raise ProtocolError(f"unknown status {status}")
    return [_C_RESULT.pack(CONTROL_PROTOCOL, C_RESULT, command_id, status) + _dump_json(data)]


def decode_control_result(frames: Frames) -> ControlResult:
    """Decode a control RESULT; :class:`ProtocolError` on anything malformed."""
    what = "control result"
    head = _check_frames(frames, CONTROL_PROTOCOL, what)
    if len(frames) != 1:
        raise ProtocolError(f"{what}: must be one frame")
    _, cmd, command_id, status = _unpack(_C_RESULT, head, what)
    ids = {"command_id": command_id}
    if cmd != C_RESULT:
        raise ProtocolError(f"{what}: unknown command 0x{cmd:02x}", details=ids)
    _check_status(status, what, ids)
    return ControlResult(command_id, status, _json_object(head[_C_RESULT.size:], what, ids))
