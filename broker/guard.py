"""What keeps one message from stopping the broker loop: bounded JSON, bounded frames, a guard.

- :func:`loads_bounded` parses JSON from a worker only after its size and nesting depth were
  checked on the bytes (a 980-deep list must not reach the recursive parser or encoder).
- :class:`FrameReceiver` receives one ROUTER message with at most ``max_frames`` frames; the
  surplus of a longer message is drained frame by frame (copy=False, never kept), a bounded
  number per loop round, so even millions of empty frames cannot freeze the loop.
- :class:`MessageGuard` is what the loop does with an exception a handler did not expect
  (``RecursionError`` and ``MemoryError`` included): count it, log it (throttled), go on.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from typing import Any

import zmq

from fluxon.errors import BadRequest

__all__ = ["FrameReceiver", "MessageGuard", "ThrottledLog", "TooManyFrames", "error_code", "json_depth_exceeds",
           "loads_bounded"]

log = logging.getLogger("fluxon.broker")

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Surplus frames drained per loop round before the other sockets get their turn.
_SURPLUS_PER_ROUND = 20_000
_NOBLOCK = int(zmq.NOBLOCK)
#: Lines a flood-prone log (drops, closed connections) writes per window; the rest are summarised.
_LOG_LIMIT = 20
_LOG_WINDOW_S = 10.0
#: Error bodies larger than this are forwarded without reading their code.
_MAX_ERROR_BYTES = 256 * 1024


def json_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """True when the JSON text ``data`` nests arrays/objects deeper than ``max_depth``.

    Strings are cut out first (a bracket inside one does not nest); then each pass removes
    the innermost ``[]`` pairs, so the number of passes is the depth: at most
    ``max_depth + 1`` passes over the bytes, each done in C.
    """
    brackets = _STRING.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # unbalanced: not JSON; refuse a long run of them unparsed
            return len(brackets) > max_depth
        brackets = shorter
    return bool(brackets)


def loads_bounded(data: bytes, *, max_bytes: int, max_depth: int, what: str) -> Any:
    """``json.loads`` of a worker's ``data`` after size and depth checks; raises :class:`BadRequest`."""
    if len(data) > max_bytes:
        raise BadRequest(f"{what} exceed {max_bytes} bytes", details={"limit": "max_changes_bytes"})
    if json_depth_exceeds(data, max_depth):
        raise BadRequest(f"{what} nest deeper than {max_depth} levels", details={"limit": "max_json_depth"})
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"{what} are not JSON: {exc}") from exc


class TooManyFrames(Exception):
    """A message had more than ``max_frames`` frames (raised once its surplus is drained)."""


def _metadata(frame: zmq.Frame, secure: bool) -> tuple[str, str]:
    """The ZAP User-Id (client public key, secure mode only) and peer address of a received frame."""
    key = peer = ""
    try:
        if secure:
            key = frame.get("User-Id") or ""
        peer = frame.get("Peer-Address") or ""
    except zmq.ZMQError:  # no such property on this transport (ipc, inproc)
        pass
    return key, peer


class FrameReceiver:
    """Receives one ROUTER message of at most ``max_frames`` frames after its envelope.

    :meth:`receive` returns (routing id, frames or None, client key, peer address): the
    first frame as bytes, the others as zmq.Frame (as :func:`fluxon.protocol.recv_frames`);
    with ``metadata`` the envelope's ZAP User-Id and Peer-Address are read too. A longer
    message is drained (:meth:`drain`), then :class:`TooManyFrames` is raised; when this
    round's drain budget runs out in the middle of one, ``zmq.Again`` is raised and the
    next call of :meth:`drain` goes on with it, before any other message of the socket.
    """

    def __init__(self, max_frames: int, *, metadata: bool = False, secure: bool = False) -> None:
        self.max_frames = max_frames
        self.metadata, self.secure = metadata, secure
        self.draining = False
        self.drained = 0
        self.source_key = ""  # the client key of the message being drained, for the refusal log

    def receive(self, sock: zmq.Socket) -> tuple[bytes, list | None, str, str]:
        """The next message (see the class docstring)."""
        envelope = sock.recv(_NOBLOCK, copy=False)
        rid = envelope.bytes
        if not envelope.more:
            return rid, None, "", ""
        key, peer = _metadata(envelope, self.secure) if self.metadata else ("", "")
        frame = sock.recv(_NOBLOCK, copy=False)
        frames: list = [frame.bytes]
        while frame.more:
            if len(frames) >= self.max_frames:
                self.draining, self.drained, self.source_key = True, len(frames) + 1, key
                self.drain(sock)
            frame = sock.recv(_NOBLOCK, copy=False)
            frames.append(frame)
        return rid, frames, key, peer

    def drain(self, sock: zmq.Socket) -> None:
        """Drop surplus frames of the message being drained (a bounded number per call).

        Raises TooManyFrames when the message ended, zmq.Again when frames are left.
        """
        recv = sock.recv
        for _ in range(_SURPLUS_PER_ROUND):
            self.drained += 1
            if not recv(_NOBLOCK, copy=False).more:
                self.draining = False
                raise TooManyFrames(f"a message of {self.drained} frames (limit {self.max_frames})")
        raise zmq.Again()


class ThrottledLog:
    """At most _LOG_LIMIT lines per _LOG_WINDOW_S, then one summary line: input from the network
    (garbage, connection churn) must not be able to fill the broker's log."""

    def __init__(self, what: str, level: int = logging.WARNING) -> None:
        self.what, self.level = what, level
        self.window_start, self.count = 0.0, 0

    def log(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.window_start > _LOG_WINDOW_S:
            if self.count > _LOG_LIMIT:
                log.log(self.level, "%d more %s in the last %.0f s", self.count - _LOG_LIMIT, self.what,
                        _LOG_WINDOW_S)
            self.window_start, self.count = now, 0
        self.count += 1
        if self.count <= _LOG_LIMIT:
            log.log(self.level, message, *args)


def error_code(body: Any, max_depth: int, max_bytes: int = _MAX_ERROR_BYTES) -> str:
    """The code of a worker's error reply (JSON, never a pickle), for the status counters.

    The body is forwarded to the client as it is; only its code is read here, from a body
    within ``max_bytes`` and ``max_depth`` (else it counts as ``unparsed_error``).
    """
    data = bytes(body)
    if len(data) > max_bytes or json_depth_exceeds(data, max_depth):
        return "unparsed_error"
    try:
        code = json.loads(data).get("code")
    except (ValueError, AttributeError, TypeError, RecursionError):
        return "malformed_error"
    return code if isinstance(code, str) and len(code) <= 64 else "malformed_error"


class MessageGuard:
    """The loop's last line: an unexpected exception is counted, logged (throttled) and survived."""

    def __init__(self, counts: Counter[str], throttled_log: Any) -> None:
        self.counts = counts
        self._log = throttled_log

    def caught(self, where: str, exc: BaseException) -> None:
        """Record ``exc`` raised while handling a message or a housekeeping step ``where``."""
        self.counts["guarded_" + type(exc).__name__] += 1
        self._log.log("broker survived %s in %s: %.200s", type(exc).__name__, where, exc)
