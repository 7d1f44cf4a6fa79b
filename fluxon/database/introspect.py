"""Read a SQLite schema through PRAGMAs, from a live file or from a snapshot's statements.

Both sides are read the same way, through PRAGMAs (``table_xinfo``, ``foreign_key_list``,
``index_list``/``index_xinfo``, ``table_list``): the snapshot by executing its statements into an
in-memory database (:func:`load_statements`), the live file directly (:func:`introspect`). The
result is a :class:`Schema` of frozen values, so two schemas compare with ``==``.

The snapshot's CREATE text rides along on each table and index: it is the only place where CHECK
constraints, collations and AUTOINCREMENT show, and it is the DDL a new or rebuilt table is
created from. The helpers at the end tokenize that text (quotes, comments and nesting aware);
nothing here regex-parses the live ``sqlite_master``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fluxon.database.expressions import quote
from fluxon.errors import SchemaError

__all__ = [
    "HISTORY_TABLE",
    "Column",
    "ForeignKey",
    "Index",
    "Table",
    "Schema",
    "introspect",
    "load_statements",
]

HISTORY_TABLE = "fluxon_schema_history"
_TEMP_PREFIX = "_fluxon_new_"
_CONSTRAINT_KEYWORDS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


# --------------------------------------------------------------------------- the schema model

@dataclass(frozen=True)
class Column:
    """One column as ``PRAGMA table_xinfo`` reports it."""
    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int
    hidden: int


@dataclass(frozen=True)
class ForeignKey:
    """One (possibly composite) foreign key as ``PRAGMA foreign_key_list`` reports it."""
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str | None, ...]
    on_update: str
    on_delete: str
    match: str


@dataclass(frozen=True)
class Index:
    """An index; ``sql`` (snapshot text, when known) does not take part in equality."""
    name: str
    table: str
    unique: bool
    columns: tuple[tuple[str | None, int, str], ...]   # (column or None for an expression, desc, collation)
    partial: bool
    sql: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Table:
    """A table: columns in order, foreign keys, and the unique/primary-key constraints.

    ``constraints`` holds the shapes of the automatic indexes behind UNIQUE and PRIMARY KEY
    constraints (their ``sqlite_autoindex`` names depend on order, so only the shape counts).
    ``indexes`` holds the named indexes created by CREATE INDEX.
    """
    name: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...]
    constraints: tuple[tuple[bool, tuple], ...]
    indexes: dict[str, Index]
    sql: str | None = field(default=None, compare=False)
    options: tuple[str, ...] = ()   # "without rowid", "strict"

    def column(self, name: str) -> Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    @property
    def column_names(self) -> list[str]:
        return [col.name for col in self.columns]

    def shape(self) -> tuple:
        """Everything that matters for equality except the table's own name and its indexes."""
        return (self.columns, self.foreign_keys, self.constraints, self.options)


@dataclass
class Schema:
    """Tables by name, in snapshot (dependency) order for a snapshot."""
    tables: dict[str, Table]

    def signature(self) -> dict[str, Any]:
        """A plain, comparable description (tests and verification compare these)."""
        return {name: (table.shape(), sorted(table.indexes.values(), key=lambda i: i.name))
                for name, table in sorted(self.tables.items())}


def _user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid").fetchall()
    return [name for (name,) in rows
            if not name.startswith("sqlite_") and name != HISTORY_TABLE and not name.startswith(_TEMP_PREFIX)]


def _normalize_type(declared: str) -> str:
    return " ".join(declared.upper().split())


def introspect(conn: sqlite3.Connection, sql_by_name: dict[str, str] | None = None) -> Schema:
    """Read the schema of ``conn`` through PRAGMAs; ``sql_by_name`` attaches snapshot text."""
    sql_by_name = sql_by_name or {}
    tables: dict[str, Table] = {}
    for name in _user_tables(conn):
        q = quote(name)
        columns = tuple(
            Column(row[1], _normalize_type(row[2] or ""), bool(row[3]), row[4], row[5], row[6])
            for row in conn.execute(f"PRAGMA table_xinfo({q})"))
        fks: dict[int, list] = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({q})"):
            fks.setdefault(row[0], []).append(row)
        foreign_keys = tuple(sorted(
            (ForeignKey(tuple(r[3] for r in rows), rows[0][2], tuple(r[4] for r in rows),
                        rows[0][5], rows[0][6], rows[0][7])
             for rows in (sorted(group, key=lambda r: r[1]) for group in fks.values())),
            key=repr))
        constraints = []
        indexes: dict[str, Index] = {}
        for _seq, index_name, unique, origin, partial in conn.execute(f"PRAGMA index_list({q})"):
            cols = tuple((row[2], row[3], row[4])
                         for row in conn.execute(f"PRAGMA index_xinfo({quote(index_name)})") if row[5])
            if origin == "c":
                indexes[index_name] = Index(index_name, name, bool(unique), cols, bool(partial),
                                            sql_by_name.get(index_name))
            else:
                constraints.append((bool(unique), cols))
        tables[name] = Table(name, columns, foreign_keys, tuple(sorted(constraints, key=repr)),
                             indexes, sql_by_name.get(name), _table_options(conn, name))
    return Schema(tables)


def _table_options(conn: sqlite3.Connection, name: str) -> tuple[str, ...]:
    """WITHOUT ROWID and STRICT, from PRAGMA table_list (SQLite 3.37+; older: unknown, empty)."""
    try:
        row = conn.execute(f"PRAGMA table_list({quote(name)})").fetchone()
    except sqlite3.Error:
        return ()
    if row is None:
        return ()
    return tuple(option for option, on in (("without rowid", row[4]), ("strict", row[5])) if on)


def load_statements(statements: Sequence[str]) -> tuple[Schema, dict[str, str]]:
    """Execute snapshot statements into an in-memory database and introspect it.

    Returns the schema (with each table's and index's own CREATE text attached) and the
    statement text by object name. Only CREATE TABLE and CREATE INDEX statements are allowed.
    """
    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        sql_by_name: dict[str, str] = {}
        seen: set[str] = set()
        for statement in statements:
            try:
                mem.execute(statement)
            except sqlite3.Error as exc:
                raise SchemaError(f"snapshot statement failed: {exc}: {statement[:200]}") from exc
            created = [(kind, name) for kind, name in
                       mem.execute("SELECT type, name FROM sqlite_master WHERE sql IS NOT NULL")
                       if name not in seen and not name.startswith("sqlite_")]
            if len(created) != 1 or created[0][0] not in ("table", "index"):
                raise SchemaError("a snapshot may hold only CREATE TABLE and CREATE INDEX statements, "
                                  f"one object each: {statement[:200]}")
            seen.add(created[0][1])
            sql_by_name[created[0][1]] = statement
        reserved = [name for name in sql_by_name if name == HISTORY_TABLE or name.startswith(_TEMP_PREFIX)]
        if reserved:
            raise SchemaError(f"snapshot uses reserved table names: {', '.join(reserved)}")
        schema = introspect(mem, sql_by_name)
        order = [name for name in sql_by_name if name in schema.tables]
        return Schema({name: schema.tables[name] for name in order}), sql_by_name
    finally:
        mem.close()


# --------------------------------------------------------------------------- CREATE text helpers

def _scan_tokens(sql: str) -> list[tuple[str, int, int]]:
    """Split SQL into (token, start, end): identifiers/keywords, quoted names, strings, punctuation."""
    tokens = []
    i, n = 0, len(sql)
    closers = {'"': '"', "`": "`", "[": "]", "'": "'"}
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in closers:
            close = closers[ch]
            j = i + 1
            while j < n:
                if sql[j] == close:
                    if close != "]" and j + 1 < n and sql[j + 1] == close:
                        j += 2
                        continue
                    break
                j += 1
            tokens.append((sql[i:j + 1], i, j + 1))
            i = j + 1
        elif ch.isalnum() or ch == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            tokens.append((sql[i:j], i, j))
            i = j
        else:
            tokens.append((ch, i, i + 1))
            i += 1
    return tokens


def _unquote(token: str) -> str:
    if token[:1] in ('"', "`") and token[-1:] == token[:1]:
        return token[1:-1].replace(token[0] * 2, token[0])
    if token[:1] == "[" and token[-1:] == "]":
        return token[1:-1]
    return token


def _create_table_parts(sql: str) -> tuple[int, int, list[str]]:
    """Where the table name sits in a CREATE TABLE text, and its top-level definitions."""
    tokens = _scan_tokens(sql)
    pos = 0
    words = [t[0].upper() for t in tokens]
    while pos < len(words) and words[pos] in ("CREATE", "TEMP", "TEMPORARY", "TABLE", "IF", "NOT", "EXISTS"):
        pos += 1
    if pos >= len(tokens):
        raise SchemaError(f"not a CREATE TABLE statement: {sql[:200]}")
    name_start, name_end = tokens[pos][1], tokens[pos][2]
    if pos + 2 < len(tokens) and tokens[pos + 1][0] == ".":   # schema-qualified name
        name_end = tokens[pos + 2][2]
        pos += 2
    depth, start, parts = 0, None, []
    for token, t_start, t_end in tokens[pos + 1:]:
        if token == "(":
            depth += 1
            if depth == 1:
                start = t_end
                continue
        elif token == ")":
            depth -= 1
            if depth == 0:
                parts.append(sql[start:t_start].strip())
                break
        elif token == "," and depth == 1:
            parts.append(sql[start:t_start].strip())
            start = t_end
    return name_start, name_end, parts


def _rename_in_create(sql: str, new_name: str) -> str:
    """The CREATE TABLE text with the table's own name replaced (self-references are kept)."""
    name_start, name_end, _ = _create_table_parts(sql)
    return sql[:name_start] + quote(new_name) + sql[name_end:]


def _renamed_token(token: str, mapping: dict[str, str]) -> str:
    name = _unquote(token)
    if name not in mapping or token[:1] == "'":
        return token
    new = mapping[name]
    return {'"': quote(new), "`": f"`{new}`", "[": f"[{new}]"}.get(token[:1], new)


def _normalized(text: str, renamed: dict[str, str] | None = None,
                parent_columns: dict[str, dict[str, str]] | None = None) -> str:
    """Tokens joined by single spaces, with the names the migration renames replaced.

    Two texts that differ only in layout, or in names a rename changes (SQLite rewrites
    every reference), normalize to the same string. ``renamed`` maps names anywhere in the
    text; ``parent_columns`` maps (new) table -> {old column: new column} inside the column
    list of a ``REFERENCES table (...)`` clause.
    """
    renamed, parent_columns = renamed or {}, parent_columns or {}
    tokens = [token for token, _start, _end in _scan_tokens(text)]
    out = []
    i = 0
    while i < len(tokens):
        token = _renamed_token(tokens[i], renamed)
        out.append(token)
        i += 1
        if token.upper() == "REFERENCES" and i < len(tokens):
            parent = renamed.get(_unquote(tokens[i]), _unquote(tokens[i]))
            out.append(_renamed_token(tokens[i], renamed))
            i += 1
            if i < len(tokens) and tokens[i] == "(":
                while i < len(tokens) and tokens[i] != ")":
                    out.append(_renamed_token(tokens[i], parent_columns.get(parent, {})))
                    i += 1
    return " ".join(out)


def _definitions(sql: str, renamed: dict[str, str] | None = None,
                 parent_columns: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The normalized column and constraint definitions of a CREATE TABLE text."""
    return [_normalized(part, renamed, parent_columns) for part in _create_table_parts(sql)[2]]


def _check_expressions(sql: str, subject: str) -> list[str]:
    """The CHECK expressions SQLite means by ``CHECK constraint failed: <subject>``.

    SQLite names a column's CHECK by the column, a named constraint by its name, and an unnamed
    table CHECK by its expression text.
    """
    for part in _create_table_parts(sql)[2]:
        tokens = _scan_tokens(part)
        if not tokens or _unquote(tokens[0][0]) != subject and not (
                tokens[0][0].upper() == "CONSTRAINT" and len(tokens) > 1 and _unquote(tokens[1][0]) == subject):
            continue
        found, depth, start = [], 0, None
        for i, (token, t_start, t_end) in enumerate(tokens):
            if start is None and token.upper() == "CHECK" and i + 1 < len(tokens) and tokens[i + 1][0] == "(":
                start = tokens[i + 1][2]
            elif start is not None and token == "(":
                depth += 1
            elif start is not None and token == ")":
                depth -= 1
                if depth == 0:
                    found.append(part[start:t_start])
                    start = None
        return found
    return [subject]


def _column_definition(sql: str, column: str) -> str | None:
    """The text defining ``column`` in a CREATE TABLE statement, or None."""
    for part in _create_table_parts(sql)[2]:
        tokens = _scan_tokens(part)
        if tokens and tokens[0][0].upper() not in _CONSTRAINT_KEYWORDS and _unquote(tokens[0][0]) == column:
            return part
    return None
