"""Telling a refused CURVE handshake apart from a slow or absent peer, for every connecting side.

libzmq reports handshakes on a socket's monitor: a CURVE server that cannot decrypt the
HELLO (the client has the wrong server key) drops the connection mid-handshake
(``EVENT_HANDSHAKE_FAILED_NO_DETAIL``, again at every reconnect); plain against CURVE is a
mechanism mismatch (``FAILED_PROTOCOL``) or, when the server drops the HELLO first, a drop
as well; a key the server's ZAP handler refuses is ``FAILED_AUTH``. Without watching them,
a client with the wrong key just waits for its timeout (forever with ``timeout_s=None``)
and the message names no cause. The client, ``fluxon ctl`` and the worker use this module.
"""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

__all__ = ["HANDSHAKE_FAILED_EVENTS", "HandshakeWatch", "describe_handshake_failure"]

#: The monitor events of a failed handshake.
HANDSHAKE_FAILED_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                           | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
#: A connection dropped mid-handshake this many times in a row is a refused key, not a restart.
_DROPS_BEFORE_FAILING = 2


class HandshakeWatch:
    """The monitor of one connecting socket: has a handshake succeeded, or failed for good?"""

    def __init__(self, sock: zmq.Socket) -> None:
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED_EVENTS)
        self.handshaken = False
        self.failure: tuple[int, int] | None = None  # (event, value) that ended all hope of a handshake
        self._drops = 0

    def read_events(self) -> None:
        """Take the monitor's waiting events: a success, or a failure that repeats."""
        try:
            while True:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
                kind, value = event["event"], event["value"]
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.handshaken, self.failure, self._drops = True, None, 0
                elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    self._drops += 1
                    if self._drops >= _DROPS_BEFORE_FAILING and self.failure is None:
                        self.failure = (kind, value)
                else:  # the most telling event: kept over the drops that follow it
                    self.failure = (kind, value)
        except zmq.Again:
            pass

    def failed(self) -> bool:
        """True once the handshake has failed for good (and none has succeeded since)."""
        self.read_events()
        return self.failure is not None and not self.handshaken

    def close(self) -> None:
        self.monitor.close(linger=0)


def describe_handshake_failure(failure: tuple[int, int], *, where: str, side: str, secure: bool,
                               key_check: str, plain_fix: str, own_key: str | None = None) -> str:
    """The message for a failed handshake: which side is plain, or which key to check.

    ``where``: "the handshake with the broker at tcp://..."; ``side``: "client", "console";
    ``key_check``: what to verify ("server_key is this broker's public key ..."); ``plain_fix``:
    what a plain side must do against a CURVE broker.
    """
    kind, value = failure
    if not secure:  # whatever the event (a mismatch, or the broker closing first): plain vs CURVE
        return f"{where} failed: the broker requires CURVE; {plain_fix}"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # the broker's ZAP handler said no
        check = "it is allowed (the broker's --allow-clients folder)" if side == "client" else key_check
        return f"{where} failed: the broker refused this {side}'s key" + (
            f" ({own_key})" if own_key else "") + f"; check that {check}"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return f"{where} failed: this {side} uses CURVE but the broker is plain (--insecure)"
    # A CURVE server drops a HELLO it cannot decrypt, and a plain broker any CURVE HELLO.
    return (f"{where} failed: the broker did not accept the key exchange; check that {key_check} "
            "and that the broker is not running --insecure")
