"""What every database backend provides: quoting, column types, DDL pieces, error translation.

One backend object per kind of database (Django's ``backends/base`` is the model): the
models, the expression compiler and the query API never ask which database they talk to;
whatever differs between SQLite and PostgreSQL is a method or a flag here. Both backends
quote identifiers the standard way (double quotes, embedded quotes doubled), which is
what psycopg's ``sql.Identifier`` writes too, so compiled query text is shared.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any

from fluxon.database.expressions import quote
from fluxon.database.fields import AutoField, Field
from fluxon.errors import ConfigurationError, DatabaseError

__all__ = ["Backend", "Features"]


@dataclass(frozen=True)
class Features:
    """What a backend can do; code that needs a capability asks for the flag, not the name."""

    #: ``INSERT ... RETURNING`` gives the new primary key (else the driver's lastrowid)
    returning_insert: bool = False
    #: ALTER TABLE and CREATE TABLE run inside a transaction that a failure rolls back whole
    transactional_ddl: bool = False
    #: tables change with ALTER TABLE in place (SQLite rebuilds them instead)
    alter_in_place: bool = False
    #: rows stream from the server in batches (a server-side cursor)
    server_side_cursors: bool = False
    #: several hosts can share the database
    networked: bool = False


class Backend:
    """The SQLite flavour of every operation; :class:`PostgresBackend` overrides what differs."""

    name = "sqlite"
    features = Features()

    def quote(self, identifier: str) -> str:
        """An identifier, quoted and escaped (identifiers come from models, never requests)."""
        return quote(identifier)

    def column_type(self, field: Field) -> str:
        """The column type of ``field`` in CREATE TABLE."""
        return field.sql_type

    def primary_key_clause(self, field: Field) -> str:
        """What follows the type for a primary key column."""
        return "PRIMARY KEY AUTOINCREMENT" if isinstance(field, AutoField) else "PRIMARY KEY"

    def column_check(self, field: Field) -> str | None:
        """The CHECK constraint of a column (without the keyword), if any."""
        return field.ddl_check()

    def literal(self, value: Any) -> str:
        """A constant from a model definition as an SQL literal (for DEFAULT clauses)."""
        if value is None:
            return "NULL"
        if value is True or value is False:
            return self._boolean_literal(value)
        if isinstance(value, (int, float, decimal.Decimal)):
            return repr(value) if isinstance(value, float) else str(value)
        if isinstance(value, bytes):
            return self._bytes_literal(value)
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        raise ConfigurationError(f"cannot write {value!r} as an SQL literal")

    def _boolean_literal(self, value: bool) -> str:
        return "1" if value else "0"

    def _bytes_literal(self, value: bytes) -> str:
        return "X'" + value.hex() + "'"

    def upsert_clause(self, conflict: list[str], update: list[str]) -> str:
        """What follows an INSERT to update (or, with no columns, keep) a conflicting row."""
        target = ", ".join(map(self.quote, conflict))
        if not update:
            return f" ON CONFLICT ({target}) DO NOTHING"
        return f" ON CONFLICT ({target}) DO UPDATE SET " + ", ".join(
            f"{self.quote(c)} = excluded.{self.quote(c)}" for c in update)

    def returning_clause(self, columns: list[str]) -> str:
        """``RETURNING`` the given columns of the written rows."""
        return " RETURNING " + ", ".join(map(self.quote, columns))

    def translate_error(self, exc: Exception) -> DatabaseError:
        """The Fluxon error for a driver error (raise it ``from exc``)."""
        from fluxon.database.connection import translate_error
        return translate_error(exc)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
