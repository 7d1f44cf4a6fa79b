"""SQLite's constraint failures as typed ``IntegrityError`` subclasses naming table and fields.

SQLite words them so::

    UNIQUE constraint failed: User.email              -> UniqueViolation(table="User", fields=["email"])
    NOT NULL constraint failed: User.email            -> NotNullViolation
    CHECK constraint failed: "age" >= 0               -> CheckViolation (table from the statement)
    FOREIGN KEY constraint failed                     -> ForeignKeyViolation

The foreign-key message names nothing, so the table and columns are looked up on the same
connection (``PRAGMA foreign_key_list``): for an INSERT or UPDATE, the statement's foreign
keys whose parent row is missing; for a DELETE refused by ``PROTECT``/``RESTRICT``, the
table still referring to the rows (``table``), with ``referenced_table`` the one deleted from.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from fluxon.database.expressions import quote
from fluxon.errors import (
    CheckViolation, ForeignKeyViolation, IntegrityError, NotNullViolation, UniqueViolation,
)

__all__ = ["integrity_error"]

log = logging.getLogger("fluxon.database")

_IDENT = r'"((?:[^"]|"")+)"'
_STATEMENT_RE = re.compile(
    r"^\s*(?P<verb>INSERT|REPLACE|UPDATE|DELETE)\b(?:\s+OR\s+\w+)?\s*(?:INTO|FROM)?\s*" + _IDENT,
    re.IGNORECASE)
_INSERT_COLUMNS_RE = re.compile(r"^[^(]*\((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<values>[^)]*)\)",
                                re.IGNORECASE)
_QUOTED_RE = re.compile(_IDENT)
_WORD_RE = re.compile(_IDENT + r"|\b([A-Za-z_][A-Za-z0-9_]*)\b")
_KINDS = (("UNIQUE constraint failed: ", UniqueViolation),
          ("NOT NULL constraint failed: ", NotNullViolation),
          ("CHECK constraint failed: ", CheckViolation))
_REFUSING = {"RESTRICT", "NO ACTION"}
_FOLLOWING = {"CASCADE", "SET NULL", "SET DEFAULT"}


def _unquote(text: str) -> str:
    return text.replace('""', '"')


def _statement_target(sql: str | None) -> tuple[str, str] | tuple[None, None]:
    match = _STATEMENT_RE.match(sql or "")
    if match is None:
        return None, None
    return match.group("verb").upper(), _unquote(match.group(2))


def integrity_error(exc: sqlite3.IntegrityError, details: dict[str, Any], *,
                    conn: sqlite3.Connection | None = None, sql: str | None = None,
                    params: Any = None) -> IntegrityError:
    """The most specific ``IntegrityError`` for ``exc``, naming table and fields."""
    text = str(exc)
    verb, target = _statement_target(sql)
    for prefix, kind in _KINDS:
        if text.startswith(prefix):
            rest = text[len(prefix):]
            if kind is CheckViolation:
                details.update(table=target, fields=_check_columns(conn, target, rest),
                               constraint=rest)
            else:
                names = [part.strip().rpartition(".") for part in rest.split(",")]
                details.update(table=names[0][0] or target, fields=[n[2] for n in names])
            return kind(text, details=details)
    if text.startswith("FOREIGN KEY constraint failed") and conn is not None and target:
        try:
            if verb == "DELETE":
                rest = sql[_STATEMENT_RE.match(sql).end():]  # type: ignore[union-attr]
                return _refused_delete(conn, target, rest, tuple(params or ()), details)
            return _missing_parent(conn, verb, target, sql or "", params, details)
        except sqlite3.Error:   # the explanation is a courtesy; the violation stands
            log.debug("could not name the foreign key that failed", exc_info=True)
    if text.startswith("FOREIGN KEY constraint failed"):
        details.update(table=target, fields=[])
        return ForeignKeyViolation(text, details=details)
    return IntegrityError(text, details=details)


def _check_columns(conn: sqlite3.Connection | None, table: str | None, expression: str) -> list[str]:
    """The columns a CHECK expression names (SQLite quotes them or not, by version)."""
    names = [_unquote(q or w) for q, w in _WORD_RE.findall(expression)]
    if conn is not None and table:
        try:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(table)})")}
        except sqlite3.Error:
            columns = set(names)
        names = [name for name in names if name in columns]
    return list(dict.fromkeys(names))


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, str, str]]:
    """``(column, parent table, parent column, on_delete)`` for each foreign key of ``table``."""
    rows = conn.execute(f"PRAGMA foreign_key_list({quote(table)})").fetchall()
    return [(row[3], row[2], row[4], str(row[6]).upper()) for row in rows]


def _missing_parent(conn: sqlite3.Connection, verb: str, table: str, sql: str, params: Any,
                    details: dict[str, Any]) -> ForeignKeyViolation:
    keys = _foreign_keys(conn, table)
    values: dict[str, Any] = {}
    match = _INSERT_COLUMNS_RE.match(sql) if verb in ("INSERT", "REPLACE") else None
    if match and params is not None:
        columns = [_unquote(c) for c in _QUOTED_RE.findall(match.group("columns"))]
        marks = [v.strip() for v in match.group("values").split(",")]
        if all(mark == "?" for mark in marks) and len(marks) == len(columns):
            values = dict(zip(columns, list(params)[:len(columns)]))
    elif verb == "UPDATE":
        head = sql.split(" WHERE ", 1)[0]
        mentioned = {_unquote(c) for c in _QUOTED_RE.findall(head)}
        keys = [key for key in keys if key[0] in mentioned]
    missing = []
    for column, parent, parent_column, _ in keys:
        if column in values:
            value = values[column]
            if value is None or conn.execute(
                    f"SELECT 1 FROM {quote(parent)} WHERE {quote(parent_column or 'rowid')} = ? "
                    "LIMIT 1", (value,)).fetchone():
                continue
        missing.append((column, parent))
    missing = missing or [(column, parent) for column, parent, _, _ in keys]
    fields = [column for column, _ in missing]
    parents = sorted({parent for _, parent in missing})
    details.update(table=table, fields=fields, referenced_table=parents[0] if len(parents) == 1 else parents)
    return ForeignKeyViolation(
        f"FOREIGN KEY constraint failed: {table}.{', '.join(fields) or '?'} refers to a missing "
        f"{' or '.join(parents) or 'row'}", details=details)


def _refused_delete(conn: sqlite3.Connection, table: str, where: str, params: tuple,
                    details: dict[str, Any]) -> ForeignKeyViolation:
    """The table whose PROTECT/RESTRICT key refused deleting rows of ``table`` (or of a table
    the delete cascades to): the rows about to go are ``SELECT ... FROM table`` + the
    statement's own WHERE, and each cascade step nests that as a subquery."""
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    edges = {name: _foreign_keys(conn, name) for name in tables}
    seen, queue = {table}, [(table, where, params)]
    while queue:
        parent, parent_where, parent_params = queue.pop(0)
        for child, keys in edges.items():
            for column, referenced, parent_column, on_delete in keys:
                if referenced != parent:
                    continue
                rows = (f"SELECT {quote(parent_column or 'rowid')} FROM {quote(parent)}"
                        f"{parent_where}")
                child_where = f" WHERE {quote(column)} IN ({rows})"
                if on_delete in _REFUSING and conn.execute(
                        f"SELECT 1 FROM {quote(child)}{child_where} LIMIT 1", parent_params
                ).fetchone():
                    details.update(table=child, fields=[column], referenced_table=parent)
                    return ForeignKeyViolation(
                        f"FOREIGN KEY constraint failed: cannot delete from {parent}: rows of "
                        f"{child} still refer to it ({child}.{column}, on_delete={on_delete})",
                        details=details)
                if on_delete in _FOLLOWING and child not in seen:
                    seen.add(child)
                    queue.append((child, child_where, parent_params))
    details.update(table=table, fields=[], referenced_table=table)
    return ForeignKeyViolation(f"FOREIGN KEY constraint failed deleting from {table}",
                               details=details)
