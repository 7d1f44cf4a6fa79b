"""The broker's session table in PostgreSQL (``fluxon broker --sessions-db postgresql://...``).

:class:`~fluxon.broker.sessions.SessionStore` keeps its sessions in memory and writes
them through a small set of statements; :class:`PgSessionConnection` runs those same
statements on PostgreSQL, so the store needs no second code path. Several brokers
pointed at one database share the table (each loads it at start). SQLite's
``INSERT OR REPLACE`` becomes ``INSERT ... ON CONFLICT (sid) DO UPDATE``, its ``REAL``
columns ``DOUBLE PRECISION``, and driver errors surface as ``sqlite3.Error`` so the
store's own error handling (InternalError, never a crash) applies unchanged.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from fluxon.database.backends.urls import mask_url

__all__ = ["PgSessionConnection"]

log = logging.getLogger("fluxon.broker.sessions")

_UPSERT = ("INSERT INTO fluxon_sessions VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (sid) DO UPDATE SET "
           "client_key = EXCLUDED.client_key, user_id = EXCLUDED.user_id, data = EXCLUDED.data, "
           "created_at = EXCLUDED.created_at, last_seen = EXCLUDED.last_seen, issued = EXCLUDED.issued")


def _statement(sql: str) -> str:
    text = sql.strip()
    if text.upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    if text.upper().startswith("INSERT OR REPLACE INTO FLUXON_SESSIONS"):
        return _UPSERT
    if text.upper().startswith("CREATE TABLE"):
        text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", re.sub(r"\bINTEGER\b", "BIGINT", text))
    return text.replace("?", "%s")


class PgSessionConnection:
    """The part of ``sqlite3.Connection`` the session store uses, on a PostgreSQL connection."""

    def __init__(self, url: str) -> None:
        import psycopg
        self._psycopg = psycopg
        self.url = mask_url(url)
        self._url = url
        self._conn = self._connect()

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self._url, autocommit=True)
        except self._psycopg.Error as exc:
            raise sqlite3.OperationalError(f"cannot connect to {self.url}: {type(exc).__name__}") from None

    def _run(self, call: Any) -> Any:
        try:
            return call()
        except self._psycopg.Error as exc:
            raise sqlite3.OperationalError(f"{self.url}: {str(exc).strip()}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        text = _statement(sql)
        if text.startswith("PRAGMA"):
            return _Empty()
        if text == "BEGIN" and (self._conn.closed or self._conn.broken):
            log.warning("session store: reconnecting to %s", self.url)
            self._conn = self._connect()  # a transaction starts: a new connection is safe here
        return self._run(lambda: self._conn.execute(text, tuple(params) or None))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            text = _statement(sql)
            self._run(lambda: self._conn.cursor().executemany(text, rows))

    def close(self) -> None:
        self._conn.close()


class _Empty:
    def fetchone(self) -> None:
        return None

    def __iter__(self):
        return iter(())
