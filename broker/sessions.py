"""Sessions owned by the broker: bound to a client's CURVE key, signed tokens, persisted in SQLite.

Token format (ASCII bytes, at most ``_MAX_TOKEN_BYTES``)::

    <sid>.<issued>.<mac>
    e.g. b"Hq3nXWc2fN0bBz1yLrTqkmd8.1764113000.kU2s...43 chars...Q"

- ``sid``: ``secrets.token_urlsafe(18)`` (24 characters, 144 random bits), the session id;
- ``issued``: the issue time in whole seconds (decimal, no leading zeros);
- ``mac``: urlsafe base64 (no padding) of HMAC-SHA256 over ``client key NUL sid.issued``,
  keyed with the deployment's session HMAC key combined with the purpose salt
  ``_TOKEN_SALT`` (as Django's ``signing`` salts every use of its secret).

The MAC binds the token to the client's CURVE public key: a token replayed under any
other key fails. In plain (development) mode every client key is ``""``, so tokens are
bearer tokens there.

Life of a session:

- first contact (empty token): in secure mode the latest session of the client's key, or a
  new one; in plain mode always a new one;
- ``login`` binds a user id and rotates the session (new sid and token, same data, like
  Django's ``cycle_key``); ``logout`` unbinds the user, clears the data (like Django's
  ``flush``, unless the view sent new data along) and rotates;
- after a rotation the previous token keeps resolving, for the same client key only, to
  the new session for ``rotation_grace_s``: requests a client pipelined before it saw
  the new token still succeed, and their replies carry the new token;
- a session expires ``idle_timeout_s`` after it was last seen, and ``absolute_lifetime_s``
  after it was created or last rotated (so a login starts a new lifetime).

Persistence: one SQLite file, or a table in PostgreSQL for a ``postgresql://`` path (WAL, ``synchronous=NORMAL``: a committed change survives the
broker being killed, though not a power cut), loaded at start. Creations, logins, logouts,
data changes and deletions are committed before :meth:`SessionStore.apply_changes` or
:meth:`SessionStore.resolve` returns, so anything the client was told survives ``kill -9``;
``last_seen`` is kept in memory and written by :meth:`SessionStore.flush` (and at most every
``_AUTO_FLUSH_INTERVAL_S`` by ``resolve``). Tokens are not stored; they are re-derived from
sid, issue time and key, so changing the private key invalidates every session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluxon.broker.guard import loads_bounded
from fluxon.broker.session_file import open_session_file, transaction
from fluxon.database.backends.urls import mask_url
from fluxon.errors import BadRequest, ConfigurationError, InvalidSession, Overloaded
from fluxon.security import RejectionLog

__all__ = ["Session", "SessionStore"]

log = logging.getLogger("fluxon.broker.sessions")

_TOKEN_SALT = b"fluxon.broker.sessions.SessionStore/token"
_MAX_TOKEN_BYTES = 256
_TOKEN_RE = re.compile(rb"\A([A-Za-z0-9_-]{24})\.(0|[1-9][0-9]{0,15})\.([A-Za-z0-9_-]{43})\Z")
_MAX_USER_ID_CHARS = 255
_AUTO_FLUSH_INTERVAL_S = 30.0
#: How often a full store may scan for expired sessions before it evicts (the scan is O(sessions)).
_ROOM_PURGE_INTERVAL_S = 1.0


@dataclass(eq=False)
class Session:
    """One client's session; the broker sends :meth:`context` to the worker with each request."""

    sid: str
    client_key: str
    user_id: int | str | None
    data: dict[str, Any]
    created_at: float
    last_seen: float
    token: bytes = field(repr=False)
    _issued: int = field(default=0, repr=False)
    _context_args: tuple[str, bool, bool] | None = field(default=None, repr=False)
    _context_json: bytes = field(default=b"", repr=False)

    def context(self, peer: str, trusted: bool, debug: bool) -> bytes:
        """The JSON session context for a worker; cached while the session and arguments stay the same."""
        args = (peer, trusted, debug)
        if args != self._context_args:
            self._context_json = json.dumps(
                {"sid": self.sid, "uid": self.user_id, "data": self.data, "peer": peer,
                 "key": self.client_key, "trusted": trusted, "debug": debug},
                separators=(",", ":")).encode()
            self._context_args = args
        return self._context_json

    def _changed(self) -> None:
        self._context_args = None


class _Successor:
    """Where a rotated session went: one object shared by every old token of a rotation chain,
    so a rotation moves all of them in O(1) (no scan of the aliases)."""

    __slots__ = ("sid",)

    def __init__(self) -> None:
        self.sid = ""


class SessionStore:
    """All sessions of one broker, in memory and (unless ``path`` is None) in a SQLite file.

    Call it from the broker's loop thread: the hot path takes no lock. Only :meth:`flush` may
    also run from another thread (it swaps the set of unsaved sessions and locks the file).
    """

    def __init__(self, path: str | os.PathLike | None, hmac_key: bytes, *,
                 idle_timeout_s: float = 14 * 86400, absolute_lifetime_s: float = 30 * 86400,
                 rotation_grace_s: float = 30.0, max_data_bytes: int = 64 * 1024,
                 max_sessions: int = 100_000, session_reserve: float = 0.0,
                 rotations_per_minute: int | None = None, max_changes_bytes: int = 1024 * 1024,
                 max_json_depth: int = 64, clock: Callable[[], float] = time.time) -> None:
        if len(hmac_key) < 16:
            raise ConfigurationError("the session HMAC key must have at least 16 bytes "
                                     "(use DeploymentKeys.session_hmac_key)")
        if idle_timeout_s <= 0 or absolute_lifetime_s <= 0:
            raise ConfigurationError("session timeouts must be positive")
        if max_sessions < 1:
            raise ConfigurationError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        #: Logged-in sessions kept at most: the rest of the cap stays free for new clients.
        self.max_logged_in = max(1, int(max_sessions * (1 - session_reserve)))
        self.rotations_per_minute = rotations_per_minute
        self.max_changes_bytes, self.max_json_depth = max_changes_bytes, max_json_depth
        raw_path = None if path is None else os.fspath(path)
        self.path = None if raw_path is None else mask_url(raw_path)  # what logs show
        self.idle_timeout_s = float(idle_timeout_s)
        self.absolute_lifetime_s = float(absolute_lifetime_s)
        self.rotation_grace_s = float(rotation_grace_s)
        self.max_data_bytes = max_data_bytes
        self._clock = clock
        self._mac_key = hmac.new(hmac_key, _TOKEN_SALT, hashlib.sha256).digest()
        self._by_sid: dict[str, Session] = {}
        self._by_token: dict[bytes, Session] = {}
        self._latest_by_key: dict[str, str] = {}
        # old token -> (where it went, client key, grace deadline), for requests pipelined across a rotation
        self._rotated: dict[bytes, tuple[_Successor, str, float]] = {}
        self._successor_of: dict[str, _Successor] = {}  # live sid -> the successor its old tokens share
        self._anonymous: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._rotation_budget: dict[str, list[float]] = {}  # client key -> [tokens, refilled at]
        self._room_purged_at = 0.0
        self._dirty: set[str] = set()
        self._rejections = RejectionLog()
        self._last_flush = clock()
        self._db_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if raw_path is not None:
            self._db = open_session_file(raw_path)
            self._load()

    # -- the hot path -------------------------------------------------------------------------

    def resolve(self, client_key: str, token: bytes) -> Session:
        """The session for this request; a new one on first contact.

        Raises :class:`InvalidSession` for a tampered, truncated, foreign, unknown or expired token.
        """
        now = self._clock()
        if not token:
            session = self._latest_session_of(client_key, now) if client_key else None
            if session is None:
                session = self._create(client_key, now)
        else:
            session = self._by_token.get(token)
            if session is None or session.client_key != client_key:
                session = self._resolve_slow(client_key, token, now)
            elif self._expired(session, now):
                self._drop(session, "expired")
                raise InvalidSession("the session has expired; send no token to start a new one")
        if session.user_id is None:
            self._anonymous.move_to_end(session.sid)  # eviction takes the least recently used first
        if now - session.last_seen >= 1.0:  # coarse: keeps the dirty set small at high rates
            session.last_seen = now
            self._dirty.add(session.sid)
            if now - self._last_flush >= _AUTO_FLUSH_INTERVAL_S:
                self.flush()
        return session

    def _resolve_slow(self, client_key: str, token: bytes, now: float) -> Session:
        """Cache miss: a rotated token in its grace period, or an invalid one (checked by MAC)."""
        rotated = self._rotated.get(token)
        if rotated is not None:
            successor, key, deadline = rotated
            session = self._by_sid.get(successor.sid)
            if key == client_key and now <= deadline and session is not None \
                    and not self._expired(session, now):
                return session
        reason = self._token_problem(client_key, token)
        self._rejections.warning(("session", client_key, reason), "refused session token from key=%s: %s",
                                 client_key or "(plain)", reason)
        raise InvalidSession(f"invalid session token: {reason}; send no token to start a new session")

    def _token_problem(self, client_key: str, token: bytes) -> str:
        if len(token) > _MAX_TOKEN_BYTES:
            return "too long"
        match = _TOKEN_RE.match(token)
        if match is None:
            return "malformed"
        sid, issued, mac = match.groups()
        if not hmac.compare_digest(mac, self._mac(client_key, sid.decode(), int(issued))):
            return "bad signature (tampered, or issued to another client key)"
        if self._clock() - int(issued) > self.absolute_lifetime_s:
            return "expired"
        return "unknown or expired session"

    # -- changes from the worker -----------------------------------------------------------------

    def apply_changes(self, session: Session, changes: bytes) -> Session:
        """Apply a worker's session changes (login/logout/data); returns the possibly rotated session.

        Changes to a session that was killed or expired meanwhile are dropped (with a log line).
        Raises :class:`BadRequest` when ``changes`` is malformed (or too large or deep), and
        :class:`Overloaded` when the client key rotated too often or logged-in sessions fill
        their share of the cap (``details["limit"]`` names the limit).
        """
        if not changes:
            return session
        login, logout, data = self._parse_changes(changes)
        current = self._by_sid.get(session.sid)
        if current is None:
            current = self._follow_rotation(session)
            if current is None:
                log.info("dropped changes to session %s…: it no longer exists", session.sid[:6])
                return session
        now = self._clock()
        if login is not None or logout:
            self._check_rotation(current, login)
            user_id = login if login is not None else None
            new_data = data if data is not None else (current.data if not logout else {})
            return self._rotate(current, user_id, new_data, now)
        if data is not None:
            current.data = data
            current.last_seen = now
            current._changed()
            self._write(current)
        return current

    def _parse_changes(self, changes: bytes) -> tuple[int | str | None, bool, dict[str, Any] | None]:
        body = loads_bounded(changes, max_bytes=self.max_changes_bytes, max_depth=self.max_json_depth,
                             what="session changes")
        if not isinstance(body, dict):
            raise BadRequest("session changes must be a JSON object")
        unknown = set(body) - {"login", "logout", "data"}
        if unknown:
            raise BadRequest(f"unknown session change keys: {sorted(unknown)}")
        login = body.get("login")
        logout = body.get("logout", False)
        if "login" in body and "logout" in body:
            raise BadRequest("session changes cannot both log in and log out")
        if "login" in body and (isinstance(login, bool) or not isinstance(login, (int, str))
                                or (isinstance(login, str) and not 0 < len(login) <= _MAX_USER_ID_CHARS)):
            raise BadRequest("a login user id must be an int or a non-empty str of at most 255 characters")
        if logout is not True and "logout" in body:
            raise BadRequest('"logout" must be true')
        data = body.get("data")
        if "data" in body:
            if not isinstance(data, dict):
                raise BadRequest("session data must be a JSON object")
            if len(json.dumps(data, separators=(",", ":"))) > self.max_data_bytes:
                raise BadRequest(f"session data exceeds {self.max_data_bytes} bytes")
        return login, bool(logout), data

    def _follow_rotation(self, session: Session) -> Session | None:
        rotated = self._rotated.get(session.token)
        if rotated is None:
            return None
        return self._by_sid.get(rotated[0].sid)

    def _check_rotation(self, session: Session, login: int | str | None) -> None:
        """Refuse a rotation past the key's rate (a token bucket) or a login past the logged-in share."""
        if login is not None and session.user_id is None and \
                len(self._by_sid) - len(self._anonymous) >= self.max_logged_in:
            raise Overloaded(f"logged-in sessions fill their share of the store ({self.max_logged_in})",
                             details={"limit": "session_reserve"})
        rate, key = self.rotations_per_minute, session.client_key
        if rate is None or not key:
            return
        now = time.monotonic()
        bucket = self._rotation_budget.setdefault(key, [float(rate), now])
        bucket[0] = min(float(rate), bucket[0] + (now - bucket[1]) * rate / 60.0)
        bucket[1] = now
        if bucket[0] < 1.0:
            raise Overloaded(f"too many logins/logouts from this client key (limit {rate} per minute)",
                             details={"limit": "rotations_per_minute"})
        bucket[0] -= 1.0

    def _rotate(self, old: Session, user_id: int | str | None, data: dict[str, Any], now: float) -> Session:
        """New sid and token for the same client (Django's ``cycle_key``); the old sid is gone.

        Every older token of the chain shares one :class:`_Successor`: moving it moves them all.
        """
        new = self._new_session(old.client_key, now, user_id=user_id, data=data)
        successor = self._successor_of.pop(old.sid, None) or _Successor()
        self._forget(old)
        successor.sid = new.sid
        self._successor_of[new.sid] = successor
        self._rotated[old.token] = (successor, old.client_key, now + self.rotation_grace_s)
        self._remember(new)
        self._write(new, delete_sid=old.sid)
        return new

    # -- administration --------------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Delete expired sessions (and stale rotation aliases); returns how many sessions went."""
        now = self._clock()
        expired = [s for s in self._by_sid.values() if self._expired(s, now)]
        for session in expired:
            self._forget(session)
        self._delete_rows([s.sid for s in expired])
        for alias, (_, _, deadline) in list(self._rotated.items()):
            if now > deadline:
                del self._rotated[alias]
        refilled_at = time.monotonic() - 60.0  # a bucket idle for a minute is full: nothing to keep
        for key in [k for k, (_, at) in self._rotation_budget.items() if at < refilled_at]:
            del self._rotation_budget[key]
        if expired:
            log.info("purged %d expired sessions", len(expired))
        return len(expired)

    def kill(self, sid: str) -> bool:
        """End session ``sid`` now (its token stops working); False if there is no such session."""
        session = self._by_sid.get(sid)
        if session is None:
            return False
        self._drop(session, "killed")
        return True

    def list_sessions(self) -> list[Session]:
        """Every live session, most recently seen first."""
        return sorted(self._by_sid.values(), key=lambda s: s.last_seen, reverse=True)

    def get(self, sid: str) -> Session | None:
        """The session with id ``sid``, or None."""
        return self._by_sid.get(sid)

    def __len__(self) -> int:
        return len(self._by_sid)

    def flush(self) -> None:
        """Write the ``last_seen`` times kept in memory to the file."""
        self._last_flush = self._clock()
        dirty, self._dirty = self._dirty, set()  # swap first: the loop thread may keep adding
        if self._db is None or not dirty:
            return
        rows = [(s.last_seen, s.sid) for sid in dirty if (s := self._by_sid.get(sid)) is not None]
        with self._db_lock:
            with self._transaction():
                self._db.executemany("UPDATE fluxon_sessions SET last_seen = ? WHERE sid = ?", rows)

    def close(self) -> None:
        """Flush and close the file; the store is unusable afterwards."""
        if self._db is not None:
            self.flush()
            with self._db_lock:
                self._db.close()
            self._db = None

    # -- internals --------------------------------------------------------------------------------

    def _mac(self, client_key: str, sid: str, issued: int) -> bytes:
        message = client_key.encode("ascii", "replace") + b"\0" + f"{sid}.{issued}".encode("ascii")
        digest = hmac.new(self._mac_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    def _token(self, client_key: str, sid: str, issued: int) -> bytes:
        return f"{sid}.{issued}.".encode("ascii") + self._mac(client_key, sid, issued)

    def _new_session(self, client_key: str, now: float, *, user_id: int | str | None = None,
                     data: dict[str, Any] | None = None) -> Session:
        sid = secrets.token_urlsafe(18)
        issued = int(now)
        return Session(sid=sid, client_key=client_key, user_id=user_id, data=dict(data or {}),
                       created_at=now, last_seen=now, token=self._token(client_key, sid, issued),
                       _issued=issued)

    def _create(self, client_key: str, now: float) -> Session:
        if len(self._by_sid) >= self.max_sessions:
            self._make_room(now)
        session = self._new_session(client_key, now)
        self._remember(session)
        self._write(session)
        return session

    def _make_room(self, now: float) -> None:
        """The store is full: purge expired sessions, then evict the least recently seen anonymous ones.

        A client that never presents its token (or mints a new key per connection) gets a new
        session per request; the bound keeps that from growing the broker without limit, and
        only anonymous sessions make way, the least recently used first, so nobody is logged
        out by it; logged-in sessions may take only ``max_logged_in`` of the cap. A batch of
        1% is evicted at once.
        """
        if now - self._room_purged_at >= _ROOM_PURGE_INTERVAL_S:
            self._room_purged_at = now
            if self.purge_expired() and len(self._by_sid) < self.max_sessions:
                return
        batch = max(1, self.max_sessions // 100)
        victims = [session for _, session in zip(range(batch), self._anonymous.values())]
        if not victims:
            raise Overloaded(f"the session store is full ({self.max_sessions} logged-in sessions)")
        for session in victims:
            self._forget(session)
        self._delete_rows([s.sid for s in victims])
        self._rejections.warning(("sessions", "evicted"), "session store full: evicted %d anonymous session(s)",
                                 len(victims))

    def _latest_session_of(self, client_key: str, now: float) -> Session | None:
        sid = self._latest_by_key.get(client_key)
        session = self._by_sid.get(sid) if sid is not None else None
        if session is not None and self._expired(session, now):
            self._drop(session, "expired")
            return None
        return session

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_seen > self.idle_timeout_s
                or now - session.created_at > self.absolute_lifetime_s)

    def _remember(self, session: Session) -> None:
        self._by_sid[session.sid] = session
        self._by_token[session.token] = session
        if session.user_id is None:
            self._anonymous[session.sid] = session
        if session.client_key:
            latest = self._by_sid.get(self._latest_by_key.get(session.client_key, ""))
            if latest is None or latest.created_at <= session.created_at:
                self._latest_by_key[session.client_key] = session.sid

    def _forget(self, session: Session) -> None:
        self._by_sid.pop(session.sid, None)
        self._by_token.pop(session.token, None)
        self._anonymous.pop(session.sid, None)
        self._dirty.discard(session.sid)
        successor = self._successor_of.pop(session.sid, None)
        if successor is not None:  # its old tokens lead nowhere now
            successor.sid = ""
        if self._latest_by_key.get(session.client_key) == session.sid:
            del self._latest_by_key[session.client_key]

    def _drop(self, session: Session, why: str) -> None:
        self._forget(session)
        self._delete_rows([session.sid])
        log.info("session %s… %s", session.sid[:6], why)

    # -- SQLite ------------------------------------------------------------------------------------

    def _transaction(self) -> Any:
        if self._db is None:
            raise ConfigurationError("the session store is closed")
        return transaction(self._db)

    def _load(self) -> None:
        now = self._clock()
        stale: list[str] = []
        rows = self._db.execute(  # type: ignore[union-attr]
            "SELECT sid, client_key, user_id, data, created_at, last_seen, issued FROM fluxon_sessions")
        for sid, client_key, user_id, data, created_at, last_seen, issued in rows:
            try:
                session = Session(sid=sid, client_key=client_key, user_id=json.loads(user_id),
                                  data=json.loads(data), created_at=created_at, last_seen=last_seen,
                                  token=self._token(client_key, sid, issued), _issued=issued)
            except (ValueError, TypeError):
                log.warning("session file: skipping an unreadable row")
                stale.append(sid)
                continue
            if self._expired(session, now):
                stale.append(sid)
            else:
                self._remember(session)
        self._delete_rows(stale)
        log.info("loaded %d sessions from %s", len(self._by_sid), self.path)

    def _write(self, session: Session, *, delete_sid: str | None = None) -> None:
        if self._db is None:
            return
        row = (session.sid, session.client_key, json.dumps(session.user_id),
               json.dumps(session.data, separators=(",", ":")), session.created_at,
               session.last_seen, session._issued)
        with self._db_lock:
            with self._transaction():
                if delete_sid is not None:
                    self._db.execute("DELETE FROM fluxon_sessions WHERE sid = ?", (delete_sid,))
                self._db.execute("INSERT OR REPLACE INTO fluxon_sessions VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def _delete_rows(self, sids: list[str]) -> None:
        if self._db is None or not sids:
            return
        with self._db_lock:
            with self._transaction():
                self._db.executemany("DELETE FROM fluxon_sessions WHERE sid = ?", [(s,) for s in sids])
