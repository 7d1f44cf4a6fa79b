"""The broker's use of the session store: resolve per request, settle changes per reply.

The store itself (``fluxon.broker.sessions``, owned by the security area) keeps
sessions in memory and in SQLite. This bridge adds what only the broker knows:
the peer address, whether the client key is trusted (``--trusted-clients``), the
debug flag, and which token to send back (only a changed one).

Sessions persist by default (``BrokerConfig.sessions_path``, ``.fluxon/sessions.sqlite3``;
its folder is created). Plain mode has sessions too, signed with a random HMAC key
kept beside the session file (``<file>.key``, mode 0600) so that its tokens survive a
restart as secure ones do; with sessions in memory the key lives for one run. The
client key is then empty, so a plain session is reached only through its token.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fluxon.broker.config import BrokerConfig
from fluxon.broker.sessions import Session, SessionStore
from fluxon.database.backends.urls import is_postgres_url, mask_url
from fluxon.errors import ConfigurationError, Unauthorized
from fluxon.security import KeyDirectory

__all__ = ["SessionBridge"]

log = logging.getLogger("fluxon.broker")
_security_log = logging.getLogger("fluxon.security")


class SessionBridge:
    """Session bookkeeping for one broker run."""

    def __init__(self, store: SessionStore, config: BrokerConfig, trusted: KeyDirectory | None = None) -> None:
        self._store = store
        self._config = config
        self._trusted = trusted

    @classmethod
    def open(cls, config: BrokerConfig) -> SessionBridge:
        """Open the store named by ``config`` (memory only for ``":memory:"`` or None), creating its folder."""
        path = config.sessions_file
        remote = path is not None and is_postgres_url(path)
        if path is not None and not remote:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(f"cannot create the folder of the session file {path!r}: {exc}") from exc
        if path is not None:
            log.info("sessions persist in %s", mask_url(path))
        if config.keys is not None:
            hmac_key = config.keys.session_hmac_key
        elif path is None or remote:
            # A plain broker has no deployment secret to derive its token key from; beside a session
            # file it keeps one in FILE.key. A PostgreSQL store has no such file: its plain-mode
            # tokens last as long as the broker process (secure mode derives the key, so they persist).
            hmac_key = os.urandom(32)
        else:
            hmac_key = _plain_hmac_key(Path(path + ".key"))
        trusted = KeyDirectory(config.trusted_clients_dir) if config.trusted_clients_dir is not None else None
        limits = config.limits
        store = SessionStore(path, hmac_key, idle_timeout_s=config.session_idle_timeout_s,
                             absolute_lifetime_s=config.session_lifetime_s, max_sessions=config.max_sessions,
                             session_reserve=limits.session_reserve, rotations_per_minute=limits.rotations_per_minute,
                             max_changes_bytes=limits.max_changes_bytes, max_json_depth=limits.max_json_depth)
        return cls(store, config, trusted)

    def __len__(self) -> int:
        return len(self._store)

    def resolve(self, client_key: str, token: bytes, peer: str) -> tuple[Session, bytes]:
        """The client's session and the context JSON for the worker; raises InvalidSession.

        In secure mode every frontend connection passed ZAP, so a message without a client
        key means the metadata could not be read: refuse it rather than treat the session
        token as a bearer token (which is what an empty key means in plain mode).
        """
        if not client_key and self._config.secure:
            _security_log.warning("refused a request without an authenticated client key (peer %s)",
                                  peer or "unknown")
            raise Unauthorized("the connection carries no authenticated client key")
        session = self._store.resolve(client_key, token)
        trusted = bool(client_key) and self._trusted is not None and client_key in self._trusted
        return session, session.context(peer, trusted, self._config.debug)

    def settle(self, session: Session, presented_token: bytes, changes: bytes) -> bytes:
        """Apply the worker's changes; the token to send back (empty when the client's is still valid)."""
        if changes:
            session = self._store.apply_changes(session, changes)
        return session.token if session.token != presented_token else b""

    def purge(self) -> None:
        """Drop expired sessions (periodically, never per request)."""
        removed = self._store.purge_expired()
        if removed:
            log.info("purged %d expired session(s)", removed)

    def flush(self) -> None:
        """Persist last-seen times and data."""
        self._store.flush()

    def list_sessions(self) -> list[dict[str, Any]]:
        """Every session as a row for the control socket (no tokens)."""
        return [{"sid": s.sid, "user_id": s.user_id, "client_key": s.client_key or None,
                 "created_at": s.created_at, "last_seen": s.last_seen}
                for s in self._store.list_sessions()]

    def kill(self, sid: str) -> bool:
        """End one session; False when there is no such session."""
        return self._store.kill(sid)

    def close(self) -> None:
        """Flush and close the store (graceful stop)."""
        try:
            self._store.flush()
        finally:
            self._store.close()


def _plain_hmac_key(path: Path) -> bytes:
    """The plain-mode token key kept in ``path`` (created with mode 0600 on first use)."""
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
        log.warning("%s does not hold a 32-byte key; writing a new one (plain sessions restart)", path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot read the plain-mode session key {str(path)!r}: {exc}") from exc
    key = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
    except OSError as exc:
        raise ConfigurationError(f"cannot write the plain-mode session key {str(path)!r}: {exc}") from exc
    return key
