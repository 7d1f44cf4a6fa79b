"""What the sync and async clients share: everything that needs no I/O.

:class:`BaseClient` encodes requests, numbers them, keeps the session token the
broker hands out, turns replies into results or typed errors, and builds the
socket (CURVE or plain). The subclasses add only the I/O (see STYLE.md 6).
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import logging
import os
from typing import Any

import zmq

from fluxon import protocol
from fluxon.errors import (BadRequest, ConfigurationError, ConnectionError, FluxonError, InvalidSession,
                           SerializationError, Timeout, decode_error)
from fluxon.handshake import HandshakeWatch, describe_handshake_failure
from fluxon.keys import CurveKeyPair, generate_client_keypair, is_z85_key, load_client_keypair, read_public_key
from fluxon.security import configure_curve_client
from fluxon.serialization import DecodeLimits, dumps, loads_restricted, loads_trusted

__all__ = ["BaseClient", "ClientState", "USE_CLIENT_DEFAULT", "UseClientDefault"]

log = logging.getLogger("fluxon.client")

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _row_without_import(module: str, qualname: str, data: Any) -> Any:
    """A model instance in a reply, rebuilt as a :class:`~fluxon.database.rows.Row`.

    An unauthenticated reply names no module to import (the trusted path imports the model's).
    """
    from fluxon.database.rows import Row  # the ORM's import cost only for replies that hold rows
    if not isinstance(data, dict):
        raise BadRequest("a row in the reply does not hold a dict of values")
    row = Row(data)
    row.model_name = str(qualname)
    return row


#: What a restricted reply may name besides plain data: model instances, which arrive as Rows.
_REPLY_SUBSTITUTES = {("fluxon.database.rows", "rebuild_row"): _row_without_import,
                      ("fluxon.database.rows", "_make_row"): lambda name, data: _row_without_import("", name, data)}


class UseClientDefault:
    """Type of :data:`USE_CLIENT_DEFAULT`: "use the client's own setting", unlike an explicit ``None``."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


#: Pass as ``timeout`` to use the client's ``timeout_s`` (``None`` means: wait without limit).
USE_CLIENT_DEFAULT = UseClientDefault()


class ClientState(enum.Enum):
    """A client is opened on first use and cannot be reopened once closed."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: While no handshake has succeeded, the blocking client looks at its monitor this often.
HANDSHAKE_CHECK_S = 0.05


class _Link:
    """One DEALER plus its monitor, which tells "no broker / wrong key" apart from a slow reply
    (see :mod:`fluxon.handshake`)."""

    def __init__(self, sock: zmq.Socket, endpoint: str) -> None:
        self.sock = sock
        self.watch = HandshakeWatch(sock)
        sock.connect(endpoint)
        self.handshaken = False
        self.rcvtimeo_ms = -1  # the socket's ZMQ_RCVTIMEO (libzmq's default), kept by the blocking client

    @property
    def monitor(self) -> zmq.Socket:
        return self.watch.monitor

    def has_handshaken(self) -> bool:
        """True once a ZMTP (and CURVE) handshake with the broker has succeeded."""
        if not self.handshaken:
            self.watch.read_events()
            self.handshaken = self.watch.handshaken
        return self.handshaken

    def failed(self) -> bool:
        """True once the handshake has failed for good."""
        return not self.handshaken and self.watch.failed()

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.watch.close()
        self.sock.close(linger=0)


class BaseClient:
    """Shared, I/O-free part of :class:`ConnectionHandler` and :class:`AsyncConnectionHandler`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *,
                 server_key: str | bytes | None = None, server_key_file: str | os.PathLike | None = None,
                 client_key: CurveKeyPair | str | os.PathLike | None = None,
                 timeout_s: float | None = 10.0, trust_server: bool = False,
                 max_message_bytes: int = protocol.MAX_MESSAGE_BYTES) -> None:
        self.host = host
        self.port = int(port)
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self.endpoint = f"tcp://[{host}]:{self.port}" if ":" in host else f"tcp://{host}:{self.port}"
        if server_key_file is not None:
            if server_key is not None:
                raise ConfigurationError("give server_key= or server_key_file=, not both")
            server_key = read_public_key(server_key_file)
            if server_key is None:
                raise ConfigurationError(f"{os.fspath(server_key_file)!r} holds no Z85 public key "
                                         "(write it with `fluxon pubkey --key-file KEY > broker.pub`)")
        if isinstance(server_key, str):
            server_key = server_key.strip().encode("ascii", "replace")
        self._server_key = server_key
        if self._server_key is not None:
            if not is_z85_key(self._server_key):
                raise ConfigurationError("server_key must be the broker's 40-character Z85 public key "
                                         "(print it with `fluxon pubkey`)")
            if isinstance(client_key, CurveKeyPair):
                self._client_pair: CurveKeyPair | None = client_key
            elif client_key is not None:
                self._client_pair = load_client_keypair(client_key)
            else:
                self._client_pair = generate_client_keypair()
        else:
            if client_key is not None:
                raise ConfigurationError("client_key= needs server_key= (the broker's public key, from "
                                         "`fluxon pubkey`): a client key is only used with CURVE")
            if not (trust_server or _is_loopback(host)):
                raise ConfigurationError(
                    f"plain mode to {host!r}: replies would be unpickled from an unauthenticated, "
                    "unencrypted connection, which lets anyone on the path run code here. Pass "
                    "server_key= (the broker's public key, `fluxon pubkey`) or, if you really trust "
                    "the network, trust_server=True")
            self._client_pair = None
        #: Replies are fully unpickled only from a broker this client authenticated (or trusts):
        #: a plain-mode reply may come from whoever bound the port first.
        self._trust_replies = self._server_key is not None or trust_server
        self._reply_limits = DecodeLimits(max_payload_bytes=max(1, max_message_bytes))
        self._token = b""
        self._ids = itertools.count(1)
        self._state = ClientState.UNOPENED
        self._ctx: zmq.Context | None = None

    @property
    def secure(self) -> bool:
        """True when the client talks CURVE to the broker."""
        return self._server_key is not None

    @property
    def client_public_key(self) -> str | None:
        """This client's Z85 public key (what an allowlist holds), or ``None`` in plain mode."""
        return self._client_pair.public_text if self._client_pair else None

    @property
    def session_token(self) -> bytes:
        """The session token the broker gave this client last (empty before the first reply)."""
        return self._token

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint} secure={self.secure} state={self._state.name}>"

    # ------------------------------------------------------------------ shared logic

    def _check_open(self) -> None:
        if self._state is ClientState.CLOSED:
            raise ConfigurationError(f"this {type(self).__name__} has been closed and cannot send; "
                                     "create a new one")
        if self._state is ClientState.UNOPENED:
            self._ctx = zmq.Context()
            self._state = ClientState.OPENED

    def _timeout_for(self, timeout: float | None | UseClientDefault) -> float | None:
        value = self.timeout_s if isinstance(timeout, UseClientDefault) else timeout
        if value is not None and value <= 0:
            raise ConfigurationError(f"timeout must be positive or None, got {value!r}")
        return value

    def _encode(self, request_id: int, route: str, payload: Any, timeout_s: float | None) -> list:
        timeout_ms = 0 if timeout_s is None else min(int(timeout_s * 1000) + 1, 0xFFFFFFFF)
        return protocol.encode_client_request(request_id, route, dumps(payload), token=self._token,
                                              timeout_ms=timeout_ms)

    def _new_link(self) -> _Link:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        if self._server_key is not None:
            configure_curve_client(sock, self._server_key, self._client_pair)
        return _Link(sock, self.endpoint)

    @staticmethod
    def _decode(frames: list) -> protocol.ClientReply | None:
        """The reply, or ``None`` (logged) for a message that does not follow the protocol."""
        try:
            return protocol.decode_client_reply(frames)
        except FluxonError as exc:
            log.warning("dropped a malformed reply from the broker: %s", exc.message)
            return None

    def _result(self, reply: protocol.ClientReply) -> Any:
        """The view's result, or raise the typed error the broker or the worker sent."""
        if reply.token:
            self._token = bytes(reply.token)
        body = reply.body
        if reply.status == protocol.STATUS_OK:  # a large body stays in its frame: unpickled without a copy
            if not self._trust_replies:
                return self._loads_untrusted_reply(body)
            return loads_trusted(body if isinstance(body, bytes) else memoryview(body))
        error = decode_error(bytes(body))
        if isinstance(error, InvalidSession):
            # The broker no longer accepts our token (expired, or a broker without our session):
            # forget it, so that the next request starts a new session instead of failing again.
            log.info("session token refused (%s); the next request starts a new session", error.message)
            self._token = b""
        raise error

    def _loads_untrusted_reply(self, body: Any) -> Any:
        """A plain-mode reply, through the restricted decoder (plain data and model rows only)."""
        try:
            return loads_restricted(body if isinstance(body, bytes) else memoryview(body), self._reply_limits,
                                    substitutes=_REPLY_SUBSTITUTES)
        except BadRequest as exc:
            raise SerializationError(
                f"plain-mode reply refused by the restricted decoder: {exc.message}; replies from an "
                "unauthenticated broker are decoded as plain data only (pass server_key= for a secure "
                "connection, or trust_server=True to unpickle anything)", details=exc.details) from exc

    def _handshake_error(self, link: _Link) -> ConnectionError | None:
        """The error that names the key to check once the handshake has failed for good, else None."""
        if not link.failed():
            return None
        text = describe_handshake_failure(
            link.watch.failure, where=f"the handshake with the broker at {self.endpoint}", side="client",
            secure=self.secure, own_key=self.client_public_key,
            key_check="server_key is this broker's public key (`fluxon pubkey --key-file` of its deployment key)",
            plain_fix="pass server_key= (the broker's public key, `fluxon pubkey`)")
        return ConnectionError(text, details={"endpoint": self.endpoint, "handshake_event": link.watch.failure[0]})

    def _timeout_error(self, link: _Link, route: str, timeout_s: float | None) -> FluxonError:
        if link.has_handshaken():
            return Timeout(f"no reply to {route!r} within {timeout_s}s", details={"route": route})
        hint = ("; check that server_key is the broker's public key (`fluxon pubkey`) and that this "
                "client's key is allowed" if self.secure else "; is the broker running?")
        return ConnectionError(f"no connection to the broker at {self.endpoint} could be established "
                               f"within {timeout_s}s{hint}", details={"endpoint": self.endpoint})

    def _mark_closed(self) -> bool:
        """Switch to CLOSED; False when it already was."""
        if self._state is ClientState.CLOSED:
            return False
        self._state = ClientState.CLOSED
        return True
