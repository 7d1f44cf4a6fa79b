"""The broker's session file: one SQLite table, opened private (0600) in WAL mode.

A committed change survives the broker being killed (``synchronous=NORMAL``), though not a
power cut. The file and its ``-wal``/``-shm`` hold session data: they are created 0600
whatever the umask (see :mod:`fluxon.private_files`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from fluxon.database.backends.urls import is_postgres_url, mask_url
from fluxon.errors import ConfigurationError, InternalError
from fluxon.private_files import ensure_private_file

__all__ = ["open_session_file", "transaction"]

log = logging.getLogger("fluxon.broker.sessions")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fluxon_sessions (
    sid        TEXT PRIMARY KEY,
    client_key TEXT NOT NULL,
    user_id    TEXT NOT NULL,     -- JSON: null, a number or a string
    data       TEXT NOT NULL,     -- JSON object
    created_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    issued     INTEGER NOT NULL
)
"""


def open_session_file(path: str | os.PathLike) -> sqlite3.Connection:
    """Open (creating it 0600) the session file at ``path``; raises ConfigurationError.

    A ``postgresql://`` path opens the same table in PostgreSQL (:mod:`fluxon.broker.pg_sessions`).
    """
    try:
        if is_postgres_url(path):
            from fluxon.broker.pg_sessions import PgSessionConnection
            db = PgSessionConnection(os.fspath(path))
            db.execute(_SCHEMA)
            return db  # type: ignore[return-value]
        ensure_private_file(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigurationError(f"cannot open the session file {mask_url(os.fspath(path))!r}: {exc}") from exc
    return db


def transaction(db: sqlite3.Connection) -> _Transaction:
    """``with transaction(db):`` runs the block in ``BEGIN IMMEDIATE`` ... ``COMMIT``."""
    return _Transaction(db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); SQLite errors become InternalError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            log.error("session file: cannot begin a transaction: %s", exc)
            raise InternalError("the session store cannot write its file") from exc

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error as db_exc:
            log.error("session file: cannot commit: %s", db_exc)
            raise InternalError("the session store cannot write its file") from db_exc
        if isinstance(exc, sqlite3.Error):
            log.error("session file: write failed: %s", exc)
            raise InternalError("the session store cannot write its file") from exc
        return False
