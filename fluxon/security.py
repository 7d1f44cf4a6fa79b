"""CURVE on the broker's sockets and the ZAP handler that decides who may connect.

Each broker socket is a CURVE server with its own ZAP domain, and the one ZAP
handler of the broker's context applies one rule per domain:

    domain            socket      admits
    fluxon.frontend   frontend    any client key, or only the keys in --allow-clients DIR
    fluxon.backend    backend     only the worker public key derived from the private key
    fluxon.control    control     only the admin public key derived from the private key

Any other domain, and any mechanism other than CURVE, is refused. An admitted peer's
ZAP User-Id is its Z85 public key, which the broker reads per message with
``frame.get("User-Id")`` (and ``frame.get("Peer-Address")``) to bind sessions to keys.

Rejections are logged to ``fluxon.security`` with the domain, the peer address and
the (public) key; repeats of the same rejection are logged once per
``_REPEAT_LOG_INTERVAL_S`` so a client retrying its handshake cannot flood the log.

Note that ZAP runs once per connection (at the handshake), not per message: removing
a key from the allowlist stops new connections of that key, while a connection that
is already established stays up until it is closed.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth.thread
from zmq.utils import z85

from fluxon.errors import ConfigurationError
from fluxon.keys import CurveKeyPair, DeploymentKeys, is_z85_key, read_public_key

__all__ = [
    "FRONTEND_DOMAIN",
    "BACKEND_DOMAIN",
    "CONTROL_DOMAIN",
    "Authenticator",
    "KeyDirectory",
    "RejectionLog",
    "start_authenticator",
    "configure_curve_server",
    "configure_curve_client",
]

FRONTEND_DOMAIN = "fluxon.frontend"
BACKEND_DOMAIN = "fluxon.backend"
CONTROL_DOMAIN = "fluxon.control"

log = logging.getLogger("fluxon.security")

_REPEAT_LOG_INTERVAL_S = 10.0
_REPEAT_LOG_MAX_ENTRIES = 1024


class RejectionLog:
    """Warnings to ``fluxon.security``, each distinct rejection at most once per ``interval_s``.

    A hostile peer retrying the same refused handshake or token must not flood the log.
    """

    def __init__(self, interval_s: float = _REPEAT_LOG_INTERVAL_S,
                 max_entries: int = _REPEAT_LOG_MAX_ENTRIES) -> None:
        self.interval_s = interval_s
        self.max_entries = max_entries
        self._last: dict[tuple[str, ...], float] = {}

    def warning(self, ident: tuple[str, ...], message: str, *args: Any) -> None:
        """Log ``message % args`` unless the rejection ``ident`` was logged within the interval."""
        now = time.monotonic()
        last = self._last.get(ident)
        if last is not None and now - last < self.interval_s:
            return
        if len(self._last) >= self.max_entries:
            self._last.clear()
        self._last[ident] = now
        log.warning(message, *args)


class KeyDirectory:
    """The set of Z85 public keys held by the files of a folder, re-read when the folder changes.

    Every regular file not starting with ``.`` that holds a public key counts: a ZeroMQ
    certificate (``fluxon client-key`` writes ``NAME.pub``; a secret certificate also
    works, only its public key is read) or a file holding one bare Z85 key. Other files
    are skipped with a warning.

    Membership tests are cheap enough for every message: the folder is stat'ed at most
    every ``check_interval_s``; a changed folder (a file added, removed or renamed) is
    re-read at once, and every file is re-checked at least every ``rescan_interval_s``
    (which also catches a file edited in place). A change therefore takes effect within
    ``rescan_interval_s`` at worst, usually within ``check_interval_s``.
    """

    def __init__(self, path: str | os.PathLike, *, check_interval_s: float = 0.1,
                 rescan_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigurationError(f"key directory {str(self.path)!r} does not exist or is not a folder")
        mode = self.path.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("key directory %s is writable by group or others (mode %o): they can add keys; "
                        "chmod go-w it", self.path, stat.S_IMODE(mode))
        self.check_interval_s = check_interval_s
        self.rescan_interval_s = rescan_interval_s
        self._lock = threading.Lock()
        self._keys: frozenset[str] = frozenset()
        self._dir_stamp: tuple[int, int] | None = None
        self._file_stamps: dict[str, tuple[int, int, int]] = {}
        self._file_keys: dict[str, str | None] = {}
        self._next_check = 0.0
        self._next_rescan = 0.0
        self._refresh(time.monotonic())

    def __contains__(self, z85_public_key: object) -> bool:
        if isinstance(z85_public_key, bytes):
            z85_public_key = z85_public_key.decode("ascii", "replace")
        return z85_public_key in self.keys()

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyDirectory({str(self.path)!r}, {len(self._keys)} keys)"

    def keys(self) -> frozenset[str]:
        """The keys as of the last check (refreshing first if it is due)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._refresh(now)
        return self._keys

    def _refresh(self, now: float) -> None:
        with self._lock:
            if now < self._next_check:  # another thread refreshed meanwhile
                return
            try:
                st = self.path.stat()
                dir_stamp = (st.st_mtime_ns, st.st_ino)
            except OSError as exc:
                if self._keys or self._dir_stamp is not None:
                    log.warning("key directory %s is unreadable (%s); admitting no key from it",
                                self.path, type(exc).__name__)
                self._keys, self._dir_stamp, self._file_stamps, self._file_keys = frozenset(), None, {}, {}
                self._next_check = now + self.check_interval_s
                return
            if dir_stamp != self._dir_stamp or now >= self._next_rescan:
                self._scan()
                self._dir_stamp = dir_stamp
                self._next_rescan = now + self.rescan_interval_s
            self._next_check = now + self.check_interval_s

    def _scan(self) -> None:
        stamps: dict[str, tuple[int, int, int]] = {}
        file_keys: dict[str, str | None] = {}
        try:
            entries = list(os.scandir(self.path))
        except OSError as exc:
            log.warning("cannot list key directory %s: %s", self.path, type(exc).__name__)
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            stamps[entry.name] = stamp
            if self._file_stamps.get(entry.name) == stamp:
                file_keys[entry.name] = self._file_keys.get(entry.name)
                continue
            try:
                key = read_public_key(entry.path)
            except ConfigurationError:
                key = None
            if key is None:
                log.warning("key directory %s: %s holds no CURVE public key; skipped", self.path, entry.name)
            file_keys[entry.name] = key
        new_keys = frozenset(k for k in file_keys.values() if k is not None)
        if new_keys != self._keys:
            log.info("key directory %s: %d keys (%d added, %d removed)", self.path, len(new_keys),
                     len(new_keys - self._keys), len(self._keys - new_keys))
        self._file_stamps, self._file_keys, self._keys = stamps, file_keys, new_keys


class _KeyRule:
    """pyzmq credentials provider: ``callback(domain, z85_key) -> bool`` for one domain."""

    def __init__(self, admits: Callable[[str], bool], description: str) -> None:
        self._admits = admits
        self.description = description

    def callback(self, domain: str, z85_key: bytes) -> bool:
        return self._admits(z85_key.decode("ascii", "replace"))


class _ZapHandler(zmq.auth.thread.ThreadAuthenticator):
    """pyzmq's threaded ZAP handler, hardened: CURVE only, never dies, logs rejections once."""

    def __init__(self, context: zmq.Context) -> None:
        super().__init__(context=context, log=logging.getLogger("fluxon.security.zap"))
        self._peer_address = ""
        self._rejections = RejectionLog()

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) >= 6:
            domain = msg[2].decode("utf-8", "replace")
            self._peer_address = msg[3].decode("utf-8", "replace")
            if msg[5] != b"CURVE":
                self._log_rejection(domain, msg[5].decode("ascii", "replace"), "mechanism is not CURVE")
                self._send_zap_reply(msg[1], b"400", b"CURVE required")
                return
            if domain not in self.credentials_providers:
                self._log_rejection(domain, "", "unknown ZAP domain")
        try:
            await super().handle_zap_message(msg)
        except Exception:  # a failing rule must not kill the thread: every later handshake would hang
            log.exception("ZAP handler failed; refusing the connection")
            if len(msg) >= 2:
                try:
                    self._send_zap_reply(msg[1], b"500", b"Internal error")
                except zmq.ZMQError:
                    pass  # the reply was already sent

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        if not allowed and domain in self.credentials_providers:
            rule = self.credentials_providers[domain]
            self._log_rejection(domain, z85.encode(client_key).decode("ascii"),
                                f"key not admitted ({rule.description})")
        return allowed, reason

    def _log_rejection(self, domain: str, key: str, why: str) -> None:
        self._rejections.warning((domain, key, self._peer_address),
                                 "refused connection: domain=%s peer=%s key=%s: %s",
                                 domain or "(none)", self._peer_address or "?", key or "-", why)


class Authenticator:
    """The running ZAP handler of one broker context; :meth:`stop` ends it."""

    def __init__(self, context: zmq.Context, keys: DeploymentKeys, *,
                 allow_clients_dir: str | os.PathLike | None = None) -> None:
        self.allowlist = KeyDirectory(allow_clients_dir) if allow_clients_dir is not None else None
        worker_key, admin_key = keys.worker.public_text, keys.admin.public_text
        if self.allowlist is None:
            frontend = _KeyRule(lambda key: True, "any client key")
        else:
            allowlist = self.allowlist
            frontend = _KeyRule(lambda key: key in allowlist, f"allowlist {allowlist.path}")
        self._handler = _ZapHandler(context)
        self._handler.configure_curve_callback(FRONTEND_DOMAIN, frontend)
        self._handler.configure_curve_callback(BACKEND_DOMAIN, _KeyRule(lambda key: key == worker_key,
                                                                        "worker key only"))
        self._handler.configure_curve_callback(CONTROL_DOMAIN, _KeyRule(lambda key: key == admin_key,
                                                                        "admin key only"))
        try:
            self._handler.start()
        except zmq.ZMQError as exc:
            self._handler.stop()
            raise ConfigurationError("cannot start the ZAP handler: this zmq.Context already has one "
                                     f"({exc})") from exc

    def stop(self) -> None:
        """Stop the ZAP thread; CURVE sockets of the context can no longer authenticate anyone."""
        self._handler.stop()

    def is_alive(self) -> bool:
        """True while the ZAP thread runs."""
        return self._handler.is_alive()

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def start_authenticator(context: zmq.Context, keys: DeploymentKeys, *,
                        allow_clients_dir: str | os.PathLike | None = None) -> Authenticator:
    """Start the ZAP handler for ``context`` (call once per context, before binding CURVE sockets)."""
    return Authenticator(context, keys, allow_clients_dir=allow_clients_dir)


def configure_curve_server(sock: zmq.Socket, keypair: CurveKeyPair, domain: str) -> None:
    """Make ``sock`` a CURVE server with ``keypair`` whose peers ZAP checks under ``domain`` (before bind)."""
    if domain not in (FRONTEND_DOMAIN, BACKEND_DOMAIN, CONTROL_DOMAIN):
        raise ConfigurationError(f"unknown ZAP domain {domain!r}; use FRONTEND_DOMAIN, BACKEND_DOMAIN "
                                 "or CONTROL_DOMAIN")
    sock.curve_secretkey = keypair.secret
    sock.curve_publickey = keypair.public
    sock.curve_server = True
    sock.zap_domain = domain.encode("ascii")
    if hasattr(zmq, "ZAP_ENFORCE_DOMAIN"):  # a draft option: absent from most libzmq builds
        try:
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        except zmq.ZMQError:
            pass


def configure_curve_client(sock: zmq.Socket, server_public: bytes | str, client: CurveKeyPair) -> None:
    """Make ``sock`` a CURVE client of the server whose Z85 public key is ``server_public`` (before connect)."""
    if isinstance(server_public, str):
        server_public = server_public.strip().encode("ascii", "replace")
    if not is_z85_key(server_public):
        raise ConfigurationError("the server key must be the broker's 40-character Z85 public key "
                                 "(print it with `fluxon pubkey`)")
    sock.curve_serverkey = server_public
    sock.curve_publickey = client.public
    sock.curve_secretkey = client.secret
