"""Migrate a live SQLite database to a schema snapshot in place, keeping the data.

:func:`execute_plan` runs the operations planned by :mod:`fluxon.database.diff` with SQLite's
generalized ALTER TABLE procedure (https://www.sqlite.org/lang_altertable.html, section 7):
foreign keys off outside the transaction, ``BEGIN IMMEDIATE``, new table, ``INSERT ... SELECT``
of the common and renamed columns, drop, rename, recreate the indexes, ``PRAGMA
foreign_key_check``, a check that the result matches the snapshot, commit. Any failure rolls
back and names the rows or the constraint.

Reading schemas lives in :mod:`fluxon.database.introspect`, comparing them in
:mod:`fluxon.database.diff`.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from fluxon.database.diff import Operation, RebuildTable
from fluxon.database.expressions import quote
from fluxon.database.introspect import Schema, _check_expressions, introspect
from fluxon.errors import SchemaError

__all__ = ["execute_plan"]

log = logging.getLogger("fluxon.database.schema")

_SAMPLE_ROWS = 5
_CONSTRAINT_RE = re.compile(r"^(NOT NULL|UNIQUE|CHECK) constraint failed: (.+)$")
_ROWID = '"_fluxon_rowid"'


def execute_plan(conn: sqlite3.Connection, operations: Sequence[Operation], target: Schema,
                 record: Any = None) -> None:
    """Run ``operations`` in one transaction, check foreign keys, verify, record, commit.

    ``conn`` must be in autocommit mode (``isolation_level=None``): ``PRAGMA foreign_keys`` is a
    no-op inside a transaction, and it must be off so that dropping a rebuilt table neither
    cascades nor fails. ``record(conn)`` runs inside the transaction just before COMMIT. On any
    failure the transaction is rolled back and a :class:`SchemaError` names what blocked it.
    """
    foreign_keys_on = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA legacy_alter_table = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        failed: tuple[Operation, sqlite3.Error] | None = None
        violations: list[tuple] = []
        try:
            for op in operations:
                for statement in op.statements():
                    try:
                        conn.execute(statement)
                    except sqlite3.Error as exc:
                        failed = (op, exc)
                        raise
            violations = conn.execute("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise SchemaError(_describe_violations(conn, violations),
                                  details={"foreign_key_violations": [list(v) for v in violations[:20]],
                                           "count": len(violations)})
            reached = introspect(conn).signature()
            if reached != target.signature():
                raise SchemaError("the migration did not reach the snapshot's schema (a Fluxon bug); "
                                  "nothing was changed",
                                  details={"tables": sorted(set(reached) ^ set(target.signature()))})
            if record is not None:
                record(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if failed is not None:
                op, error = failed
                message, details = _explain_failure(conn, op, error)
                raise SchemaError(message, details=details) from exc
            if isinstance(exc, sqlite3.Error):
                raise SchemaError(f"migration failed: {exc}; the database is unchanged") from exc
            raise
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys_on else 'OFF'}")


def _describe_violations(conn: sqlite3.Connection, violations: list[tuple]) -> str:
    samples = ", ".join(f"{table} rowid {rowid} -> {parent}" for table, rowid, parent, _fk in violations[:5])
    return (f"{len(violations)} rows would violate foreign keys after the migration ({samples}); "
            "the database is unchanged")


def _rows_as_copied(op: Operation) -> str:
    """A FROM clause showing the source rows as the failed step saw them, under the target's names."""
    if isinstance(op, RebuildTable):
        columns = ", ".join(f"{expr or 'NULL'} AS {quote(name)}" for name, expr in op.copy)
        return f"(SELECT rowid AS {_ROWID}, {columns} FROM {quote(op.source or op.table)})"
    return f"(SELECT rowid AS {_ROWID}, * FROM {quote(op.source or op.table)})"


def _explain_failure(conn: sqlite3.Connection, op: Operation, error: sqlite3.Error) -> tuple[str, dict]:
    """After the rollback: the message and details naming the rows that blocked ``op``.

    Finding the rows is best effort (a CHECK constraint reported by name cannot be re-run);
    the failure itself is always reported.
    """
    details: dict[str, Any] = {"operation": op.describe(), "sqlite_error": str(error)}
    message = f"migration failed at '{op.describe()}': {error}"
    match = _CONSTRAINT_RE.match(str(error))
    if match and op.source:
        kind, subject = match.groups()
        details["constraint"] = match.group(0)
        rows = _rows_as_copied(op)
        try:
            if kind == "UNIQUE":
                cols = [quote(part.strip().split(".", 1)[-1]) for part in subject.split(",")]
                groups = conn.execute(
                    f"SELECT {', '.join(cols)}, group_concat({_ROWID}) FROM {rows} "
                    f"WHERE {' AND '.join(c + ' IS NOT NULL' for c in cols)} "
                    f"GROUP BY {', '.join(cols)} HAVING COUNT(*) > 1 LIMIT {_SAMPLE_ROWS}").fetchall()
                shown = [{"values": list(g[:-1]), "rowids": sorted(int(x) for x in str(g[-1]).split(","))}
                         for g in groups]
                details["blocking_rows"] = shown
                message += "; rows sharing a value: " + "; ".join(
                    f"{', '.join(map(repr, g['values']))} (rowids {', '.join(map(str, g['rowids']))})"
                    for g in shown)
            else:
                if kind == "NOT NULL":
                    where = f"{quote(subject.split('.', 1)[-1])} IS NULL"
                else:
                    checks = _check_expressions(op.sql, subject) if isinstance(op, RebuildTable) else [subject]
                    where = "NOT (" + " AND ".join(f"({expr})" for expr in checks) + ")"
                count = conn.execute(f"SELECT COUNT(*) FROM {rows} WHERE {where}").fetchone()[0]
                rowids = [r[0] for r in conn.execute(
                    f"SELECT {_ROWID} FROM {rows} WHERE {where} LIMIT {_SAMPLE_ROWS}")]
                details.update(blocking_rows=rowids, blocking_count=count)
                message += f"; {count} rows of {op.source} fail it (rowids {', '.join(map(str, rowids))})"
        except sqlite3.Error as exc:
            log.debug("could not find the blocking rows: %s", exc)
    return message + "; the database is unchanged", details
