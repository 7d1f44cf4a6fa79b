"""PostgreSQL connections: one psycopg pool per database and process, transactions per thread.

Outside ``atomic()`` each statement borrows a pooled connection (in autocommit mode) for
just that statement, so a worker's threads share ``pool_size`` connections. ``atomic()``
keeps one connection for the thread until the outermost block ends: ``BEGIN``, then
``pg_advisory_xact_lock`` so that atomic blocks run one at a time, as SQLite's
``BEGIN IMMEDIATE`` makes them; a read-modify-write inside ``atomic()`` therefore never
loses an update and never fails with a serialization conflict on either backend.
Nested blocks are savepoints.

A connection broken by a server restart raises ``DatabaseError`` for the statement that
hit it; the pool then checks its idle connections, drops the broken ones and opens new
ones, so the next requests succeed as soon as the server is back.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import ContextDecorator, contextmanager
from typing import Any

from fluxon.database.backends.postgresql import PostgresBackend, register_loaders
from fluxon.database.backends.urls import mask_url
from fluxon.errors import DatabaseError

__all__ = ["PgConnections", "PgAtomic", "ATOMIC_LOCK_KEY"]

log = logging.getLogger("fluxon.database")

#: the advisory lock every outermost atomic() block takes ("flux" in ASCII)
ATOMIC_LOCK_KEY = 0x666C7578

_BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({ATOMIC_LOCK_KEY})"

_ALL: "weakref.WeakSet[PgConnections]" = weakref.WeakSet()


class _ThreadState(threading.local):
    conn: Any = None
    depth: int = 0


class PgConnections:
    """The pool of one PostgreSQL database in this process, opened on first use."""

    def __init__(self, url: str, backend: PostgresBackend, *, pool_size: int = 4,
                 pool_timeout_s: float = 5.0, statement_timeout_s: float | None = None,
                 connect_kwargs: dict[str, Any] | None = None) -> None:
        self._url = url
        self.backend = backend
        self.pool_size = max(1, int(pool_size))
        self.pool_timeout_s = pool_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self._connect_kwargs = dict(connect_kwargs or {})
        self._pool: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._state = _ThreadState()
        _ALL.add(self)

    @property
    def masked_url(self) -> str:
        return mask_url(self._url)

    @property
    def state(self) -> _ThreadState:
        return self._state

    def _configure(self, conn: Any) -> None:
        register_loaders(conn.adapters)
        conn.execute("SET TIME ZONE 'UTC'")
        if self.statement_timeout_s is not None:
            conn.execute(f"SET statement_timeout = {int(self.statement_timeout_s * 1000)}")

    def pool(self) -> Any:
        """The pool, opened on first use (and afresh in a forked child)."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                from psycopg_pool import ConnectionPool
                self._pid = os.getpid()
                self._pool = ConnectionPool(
                    self._url, min_size=1, max_size=self.pool_size, open=True, num_workers=2,
                    timeout=self.pool_timeout_s, configure=self._configure,
                    kwargs={"autocommit": True, **self._connect_kwargs},
                    name=f"fluxon-{self.masked_url}")
            return self._pool

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        """This thread's transaction connection, or a pooled one for one statement."""
        conn = self._state.conn
        if conn is not None:
            yield conn
            return
        pool = self.pool()
        try:
            conn = pool.getconn()
        except Exception as exc:  # PoolTimeout, PoolClosed: no connection within the timeout
            raise DatabaseError(f"no PostgreSQL connection within {self.pool_timeout_s}s "
                                f"({self.masked_url}): {type(exc).__name__}",
                                details={"pg_error": type(exc).__name__}) from None
        try:
            yield conn
        finally:
            self.give_back(conn)

    def give_back(self, conn: Any) -> None:
        """Return a connection to the pool; a broken one makes the pool check all idle ones."""
        broken = conn.broken or conn.closed
        try:
            self.pool().putconn(conn)
        except Exception:  # the pool closed meanwhile: nothing to return it to
            log.debug("connection not returned to a closed pool", exc_info=True)
            return
        if broken:
            log.warning("a PostgreSQL connection broke (%s); checking the pool", self.masked_url)
            threading.Thread(target=self._check, name="fluxon-pg-check", daemon=True).start()

    def _check(self) -> None:
        try:
            self.pool().check()
        except Exception:
            log.debug("pool check failed", exc_info=True)

    def close_all(self) -> None:
        """Close the pool (at shutdown); a later use opens a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._state = _ThreadState()
        if pool is not None and self._pid == os.getpid():
            pool.close()

    def _after_fork(self) -> None:
        # The pool's threads do not exist in the child: leave it to the parent.
        self._pool = None
        self._state = _ThreadState()
        self._lock = threading.Lock()


def _reset_after_fork() -> None:
    for connections in list(_ALL):
        connections._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class PgAtomic(ContextDecorator):
    """``with db.atomic():`` a transaction serialized with every other atomic() block."""

    def __init__(self, connections: PgConnections) -> None:
        self.connections = connections
        self._savepoints: list[str | None] = []

    def _recreate_cm(self) -> "PgAtomic":
        return PgAtomic(self.connections)

    def __enter__(self) -> "PgAtomic":
        import psycopg
        connections = self.connections
        state = connections.state
        if state.depth == 0:
            pool = connections.pool()
            try:
                conn = pool.getconn()
            except Exception as exc:
                raise DatabaseError(f"no PostgreSQL connection within {connections.pool_timeout_s}s "
                                    f"({connections.masked_url})",
                                    details={"pg_error": type(exc).__name__}) from None
            try:
                conn.execute(_BEGIN_LOCKED)  # one round trip: simple protocol, no parameters
            except psycopg.Error as exc:
                _rollback_quietly(conn)
                connections.give_back(conn)
                raise connections.backend.translate_error(exc) from exc
            state.conn = conn
            self._savepoints.append(None)
        else:
            name = f"fluxon_sp_{state.depth}"
            try:
                state.conn.execute(f'SAVEPOINT "{name}"')
            except psycopg.Error as exc:
                raise connections.backend.translate_error(exc) from exc
            self._savepoints.append(name)
        state.depth += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        import psycopg
        connections = self.connections
        state = connections.state
        conn = state.conn
        state.depth -= 1
        name = self._savepoints.pop()
        try:
            if name is None:
                state.conn = None
                try:
                    conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
                finally:
                    if exc_type is None and conn.info.transaction_status != 0:
                        _rollback_quietly(conn)
                    connections.give_back(conn)
            else:
                if exc_type is not None:
                    conn.execute(f'ROLLBACK TO SAVEPOINT "{name}"')
                conn.execute(f'RELEASE SAVEPOINT "{name}"')
        except psycopg.Error as error:
            if exc_type is None:
                raise connections.backend.translate_error(error) from error
            log.warning("rolling back after %s failed too: %s", exc_type.__name__, error)


def _rollback_quietly(conn: Any) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:
        log.debug("rollback on a broken connection failed", exc_info=True)
