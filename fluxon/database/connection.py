"""SQLite connections: one per thread and per process, pragmas, transactions, error translation.

Every connection runs in WAL mode with ``foreign_keys=ON`` and a busy timeout, and in
autocommit mode at the driver level: Fluxon issues ``BEGIN IMMEDIATE`` itself for
writes, so a writer takes the write lock up front (waiting for it under the busy
timeout) instead of failing with "database is locked" when upgrading a read lock.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from contextlib import ContextDecorator
from typing import Any

from fluxon.database.violations import integrity_error
from fluxon.errors import ConfigurationError, DatabaseError
from fluxon.private_files import prepare_private_database

__all__ = ["ConnectionManager", "Atomic", "translate_error", "open_connection"]

log = logging.getLogger("fluxon.database")

_MANAGERS: "weakref.WeakSet[ConnectionManager]" = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []   # connections of the parent after fork: never used, never closed


#: What a missing table or column usually means: the database is not on the models' snapshot.
_SCHEMA_HINT = (" (the database is not on the schema of the models: `fluxon schema list APP` shows the "
                "snapshots, `fluxon schema apply N APP` or the console's `updateschema N` migrates it)")


def translate_error(exc: sqlite3.Error, *, conn: sqlite3.Connection | None = None,
                    sql: str | None = None, params: Any = None) -> DatabaseError:
    """The Fluxon error for a sqlite3 error (raise it ``from exc`` to keep the original).

    Constraint failures become the ``IntegrityError`` subclass naming table and fields;
    given the connection and statement, a foreign-key failure is looked up to name them.
    A missing table or column carries the hint to migrate.
    """
    details: dict[str, Any] = {"sqlite_error": type(exc).__name__}
    code = getattr(exc, "sqlite_errorname", None)
    if code:
        details["sqlite_code"] = code
    if isinstance(exc, sqlite3.IntegrityError):
        return integrity_error(exc, details, conn=conn, sql=sql, params=params)
    message = str(exc)
    if message.startswith(("no such table", "no such column")):
        message += _SCHEMA_HINT
        details["hint"] = "schema"
    return DatabaseError(message, details=details)


class _Connection(sqlite3.Connection):
    """A plain sqlite3 connection that can be weakly referenced (by its manager)."""


def open_connection(path: str, *, timeout_s: float = 30.0, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A new connection with Fluxon's pragmas (WAL, foreign keys, busy timeout)."""
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
    if path != ":memory:" and not path.startswith("file:"):
        try:  # SQLite creates the file but not its folder
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the folder of the database {path!r}: {exc}") from exc
    try:
        prepare_private_database(path)  # 0600 whatever the umask; its -wal/-shm follow its mode
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None,
                               cached_statements=512, factory=_Connection)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        if path != ":memory:" and not path.startswith("file::memory:"):
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", path, mode)
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise translate_error(exc) from exc
    except OSError as exc:  # the private file could not be created (a missing folder, permissions)
        raise DatabaseError(f"cannot create database {path}: {exc}") from exc
    return conn


class _ThreadState(threading.local):
    conn: sqlite3.Connection | None = None
    depth: int = 0


class ConnectionManager:
    """Hands each thread of each process its own connection to one database file."""

    def __init__(self, path: str, *, timeout_s: float = 30.0, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.synchronous = synchronous
        self._state = _ThreadState()
        # Weak: a thread that ends takes its connection with it (closed when collected).
        self._all: "weakref.WeakSet[sqlite3.Connection]" = weakref.WeakSet()
        self._lock = threading.Lock()
        _MANAGERS.add(self)

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = self._state.conn
        if conn is None:
            conn = open_connection(self.path, timeout_s=self.timeout_s, synchronous=self.synchronous)
            self._state.conn = conn
            with self._lock:
                self._all.add(conn)
        return conn

    @property
    def state(self) -> _ThreadState:
        return self._state

    def close(self) -> None:
        """Close this thread's connection (a later use opens a new one)."""
        conn = self._state.conn
        if conn is not None:
            self._state.conn = None
            self._state.depth = 0
            with self._lock:
                self._all.discard(conn)
            conn.close()

    def close_all(self) -> None:
        """Close every thread's connection (call when no other thread uses the database)."""
        with self._lock:
            conns, self._all = list(self._all), weakref.WeakSet()
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                log.debug("connection of another thread left to its thread", exc_info=True)
        self._state = _ThreadState()

    def _after_fork(self) -> None:
        # A connection must not cross fork(); the child starts afresh.
        _INHERITED.extend(self._all)
        self._all = weakref.WeakSet()
        self._state = _ThreadState()
        self._lock = threading.Lock()


def _reset_after_fork() -> None:
    for manager in list(_MANAGERS):
        manager._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class Atomic(ContextDecorator):
    """``with db.atomic():`` a transaction (BEGIN IMMEDIATE), or a savepoint when nested."""

    def __init__(self, manager: ConnectionManager) -> None:
        self.manager = manager
        self._savepoints: list[str | None] = []

    def _recreate_cm(self) -> "Atomic":
        # As a decorator, each call (and each thread) gets its own transaction state.
        return Atomic(self.manager)

    def __enter__(self) -> "Atomic":
        manager = self.manager
        conn = manager.get()
        state = manager.state
        try:
            if state.depth == 0:
                if conn.in_transaction:
                    raise DatabaseError("a transaction is already open on this connection "
                                        "outside of atomic()")
                conn.execute("BEGIN IMMEDIATE")
                self._savepoints.append(None)
            else:
                name = f"fluxon_sp_{state.depth}"
                conn.execute(f'SAVEPOINT "{name}"')
                self._savepoints.append(name)
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        state.depth += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        manager = self.manager
        conn = manager.get()
        manager.state.depth -= 1
        name = self._savepoints.pop()
        try:
            if name is None:
                if exc_type is None:
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.Error:
                        conn.execute("ROLLBACK")
                        raise
                elif conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                if exc_type is not None:
                    conn.execute(f'ROLLBACK TO "{name}"')
                conn.execute(f'RELEASE "{name}"')
        except sqlite3.Error as error:
            if exc_type is None:
                raise translate_error(error) from error
            log.warning("rolling back after %s failed too: %s", exc_type.__name__, error)
