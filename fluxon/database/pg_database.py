"""``PostgresDatabase``: the same API as ``SqliteDatabase``, on a PostgreSQL server.

    db = PostgresDatabase("postgresql://app@db.internal:5432/app", models=[User, Course])
    db.create_tables()
    user_id = db.User.insert({db.User.username: "ada", db.User.password: "pw"})

Each process opens one psycopg pool of ``pool_size`` connections (a worker sizes it from
``--concurrency``); see :mod:`fluxon.database.backends.pg_connections` for how
transactions, broken connections and concurrent ``atomic()`` blocks behave.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fluxon.database.backends.pg_connections import PgAtomic, PgConnections
from fluxon.database.backends.postgresql import PostgresBackend
from fluxon.database.backends.urls import is_postgres_url, mask_url
from fluxon.database.manipulation import Database
from fluxon.errors import ConfigurationError

__all__ = ["PostgresDatabase"]

_READ_HEADS = ("SELECT", "WITH", "SHOW", "EXPLAIN", "VALUES", "TABLE")


class _Result:
    """A finished statement: its rows (if it returned any) and how many rows it touched."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list, rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchall(self) -> list:
        return self.rows


class PostgresDatabase(Database):
    """One PostgreSQL database; binds models exactly as :class:`SqliteDatabase` does.

    ``url``: ``postgresql://user@host:5432/dbname`` (libpq options such as ``sslmode`` or
    ``passfile`` may follow ``?``). ``password_file``: a file holding the password, so it
    is neither in the URL nor in argv. ``pool_size``: connections kept by this process.
    ``pool_timeout_s``: how long a statement waits for a connection before
    ``DatabaseError``. ``statement_timeout_s``: the server cancels longer statements.
    """

    backend = PostgresBackend()

    def __init__(self, url: str, models: Any = None, *, password_file: str | os.PathLike | None = None,
                 pool_size: int = 4, pool_timeout_s: float = 5.0,
                 statement_timeout_s: float | None = None) -> None:
        if not is_postgres_url(url):
            raise ConfigurationError(f"PostgresDatabase needs a postgresql:// URL, not {mask_url(str(url))!r}")
        extra: dict[str, Any] = {}
        if password_file is not None:
            try:
                extra["password"] = Path(password_file).read_text().strip()
            except OSError as exc:
                raise ConfigurationError(f"cannot read the database password file {password_file}: "
                                         f"{exc.strerror}") from None
        self.url = mask_url(url)
        self._connections = PgConnections(url, self.backend, pool_size=pool_size,
                                          pool_timeout_s=pool_timeout_s,
                                          statement_timeout_s=statement_timeout_s,
                                          connect_kwargs=extra)
        super().__init__(models)

    @property
    def display_name(self) -> str:
        return self.url

    @property
    def pool_size(self) -> int:
        return self._connections.pool_size

    # -- connections and transactions ----------------------------------------------------
    def atomic(self) -> PgAtomic:
        """``with db.atomic():`` one transaction, run one at a time like SQLite's; nested: savepoints."""
        return PgAtomic(self._connections)

    def in_transaction(self) -> bool:
        return self._connections.state.conn is not None

    def close(self) -> None:
        """Nothing to give back outside a transaction (statements borrow and return)."""

    def close_all(self) -> None:
        self._connections.close_all()

    def _run(self, sql: str, params: Any) -> _Result:
        import psycopg
        if params:
            sql, params = self.backend.prepare(sql), tuple(params)
        else:
            params = None
        with self._connections.borrow() as conn:
            try:
                cursor = conn.execute(sql, params)
                rows = cursor.fetchall() if cursor.description is not None else []
                return _Result(rows, cursor.rowcount)
            except psycopg.Error as exc:
                raise self.backend.translate_error(exc) from exc

    def _read(self, sql: str, params: Any) -> list:
        return self._run(sql, params).rows

    def _write(self, sql: str, params: Any) -> _Result:
        return self._run(sql, params)

    def _insert_returning_key(self, sql: str, params: list, pk: Any) -> Any:
        rows = self._run(sql + " RETURNING " + self.backend.quote(pk.column), params).rows
        return rows[0][0]

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list:
        """Run programmer-written SQL (``?`` placeholders, as on SQLite); returns fetched rows."""
        return self._run(sql, tuple(params)).rows

    def stream(self, sql: str, params: Iterable[Any] = (), *, batch_size: int = 2000) -> Iterator[tuple]:
        """Rows of a SELECT from a server-side cursor, ``batch_size`` at a time.

        Inside ``atomic()`` it uses the transaction's connection; outside, it holds one
        pooled connection (in its own transaction) until the iteration ends.
        """
        import psycopg
        params = tuple(params)
        text = self.backend.prepare(sql) if params else sql
        with self._connections.borrow() as conn:
            own = self._connections.state.conn is None
            try:
                if own:
                    conn.execute("BEGIN")
                with conn.cursor(name=f"fluxon_stream_{id(self):x}") as cursor:
                    cursor.itersize = batch_size
                    cursor.execute(text, params or None)
                    yield from cursor
                if own:
                    conn.execute("COMMIT")
            except psycopg.Error as exc:
                raise self.backend.translate_error(exc) from exc
            finally:
                if own and conn.info.transaction_status != 0:
                    conn.execute("ROLLBACK")
