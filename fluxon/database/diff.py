"""Compare two schemas and plan the migration as a list of operation values.

:func:`diff_schemas` turns the differences between the live schema and a snapshot's into
:class:`Operation` values, in execution order. Each describes itself in plain words (so a plan
can be printed before anything runs), produces its own SQL, and says in ``loss`` which data it
destroys. Hinted renames that are a table's only change become ALTER TABLE RENAME COLUMN, and
trailing new columns that SQLite accepts become ALTER TABLE ADD COLUMN; both avoid copying the
table. Everything else is a :class:`RebuildTable` (SQLite's generalized ALTER TABLE,
https://www.sqlite.org/lang_altertable.html, section 7), whose CREATE text always comes from the
snapshot, never from the live ``sqlite_master``.

What the differ cannot see (as peewee's ``schema_diff.py`` documents its own blind spots):

- CHECK constraints, column collations and AUTOINCREMENT are invisible to the PRAGMAs. They are
  caught only by comparing the target snapshot's text with the text of the snapshot the database
  records it is on; a database without a recorded snapshot is compared structurally only.
- A renamed column or table without a rename hint looks like a drop plus an add.
- The WHERE clause of a partial index is compared through the snapshots' text only.
- Triggers and views are not part of snapshots and are neither created nor preserved.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from fluxon.database.expressions import quote
from fluxon.database.introspect import (_TEMP_PREFIX, Column, Index, Schema, Table, _column_definition,
                                        _definitions, _normalized, _rename_in_create, _scan_tokens)
from fluxon.errors import DestructiveMigration

__all__ = [
    "Renames",
    "Operation",
    "CreateTable",
    "DropTable",
    "RenameTable",
    "RenameColumn",
    "AddColumn",
    "RebuildTable",
    "CreateIndex",
    "DropIndex",
    "diff_schemas",
]

_NON_CONSTANT_DEFAULTS = {"CURRENT_TIME", "CURRENT_DATE", "CURRENT_TIMESTAMP"}
_LENGTH_RE = re.compile(r"^\s*([A-Za-z ]+?)\s*\(\s*(\d+)\s*\)\s*$")


def _literal(text: str) -> str:
    """An SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Renames:
    """Rename hints collected from snapshots: undirected pairs, so they work both ways."""
    tables: set[frozenset[str]] = field(default_factory=set)
    columns: set[tuple[str, frozenset[str]]] = field(default_factory=set)

    def add_table(self, new: str, old: str) -> None:
        self.tables.add(frozenset((new, old)))

    def add_column(self, table: str, new: str, old: str) -> None:
        self.columns.add((table, frozenset((new, old))))

    def table_pair(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.tables

    def column_pair(self, tables: Iterable[str], a: str, b: str) -> bool:
        pair = frozenset((a, b))
        return any((table, pair) in self.columns for table in tables)


# --------------------------------------------------------------------------- operations

@dataclass
class Operation:
    """One step of a migration: a value that describes itself and produces its SQL.

    ``loss`` explains, in plain words, which data the step destroys (None when it keeps all
    data); such steps need ``force``. ``warnings`` name rows that will block the step or
    values it will change.
    """
    kind: ClassVar[str] = "operation"
    table: str
    loss: str | None = field(default=None, kw_only=True)
    warnings: list[str] = field(default_factory=list, kw_only=True)
    source: str | None = field(default=None, kw_only=True)   # the live table's name before any rename

    def describe(self) -> str:
        raise NotImplementedError

    def statements(self) -> list[str]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "table": self.table, "description": self.describe(),
                "destructive": self.loss is not None, "loss": self.loss, "warnings": list(self.warnings)}


@dataclass
class CreateTable(Operation):
    kind: ClassVar[str] = "create_table"
    sql: str = ""

    def describe(self) -> str:
        return f"create table {self.table}"

    def statements(self) -> list[str]:
        return [self.sql]


@dataclass
class DropTable(Operation):
    kind: ClassVar[str] = "drop_table"
    rows: int = 0

    def describe(self) -> str:
        return f"drop table {self.table} ({self.rows} rows)"

    def statements(self) -> list[str]:
        return [f"DROP TABLE {quote(self.table)}"]


@dataclass
class RenameTable(Operation):
    kind: ClassVar[str] = "rename_table"
    old: str = ""

    def describe(self) -> str:
        return f"rename table {self.old} to {self.table}"

    def statements(self) -> list[str]:
        return [f"ALTER TABLE {quote(self.old)} RENAME TO {quote(self.table)}"]


@dataclass
class RenameColumn(Operation):
    kind: ClassVar[str] = "rename_column"
    old: str = ""
    new: str = ""

    def describe(self) -> str:
        return f"rename column {self.table}.{self.old} to {self.new}"

    def statements(self) -> list[str]:
        return [f"ALTER TABLE {quote(self.table)} RENAME COLUMN {quote(self.old)} TO {quote(self.new)}"]


@dataclass
class AddColumn(Operation):
    kind: ClassVar[str] = "add_column"
    column: str = ""
    definition: str = ""

    def describe(self) -> str:
        return f"add column {self.table}.{self.column} ({self.definition})"

    def statements(self) -> list[str]:
        return [f"ALTER TABLE {quote(self.table)} ADD COLUMN {self.definition}"]


@dataclass
class RebuildTable(Operation):
    """SQLite's generalized ALTER TABLE: new table, copy, drop old, rename, recreate indexes.

    ``copy`` pairs each target column with the SQL expression that fills it from the old
    table (None: the column's default applies).
    """
    kind: ClassVar[str] = "rebuild_table"
    sql: str = ""
    copy: list[tuple[str, str | None]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    index_sql: list[str] = field(default_factory=list)
    autoincrement: bool = False
    positional: bool = False   # the copy is column i -> column i: SELECT * lets SQLite copy records whole

    @property
    def temp_name(self) -> str:
        return _TEMP_PREFIX + self.table

    def describe(self) -> str:
        indexes = f"; recreate {len(self.index_sql)} indexes" if self.index_sql else ""
        return f"rebuild table {self.table}: " + "; ".join(self.changes) + indexes

    def statements(self) -> list[str]:
        filled = [(column, expr) for column, expr in self.copy if expr is not None]
        targets = ", ".join(quote(column) for column, _ in filled)
        sources = ", ".join(expr for _, expr in filled)
        statements = [_rename_in_create(self.sql, self.temp_name)]
        if self.positional:   # SQLite's transfer optimization copies records without decoding them
            statements.append(f"INSERT INTO {quote(self.temp_name)} SELECT * FROM {quote(self.table)}")
        elif filled:
            statements.append(f"INSERT INTO {quote(self.temp_name)} ({targets}) "
                              f"SELECT {sources} FROM {quote(self.table)}")
        if self.autoincrement:   # keep the old high-water mark so AUTOINCREMENT never reuses an id
            temp = _literal(self.temp_name)
            statements += [
                f"INSERT INTO sqlite_sequence (name, seq) SELECT {temp}, MAX(seq) FROM sqlite_sequence "
                f"WHERE name IN ({_literal(self.table)}, {temp}) HAVING COUNT(*) > 0",
                f"DELETE FROM sqlite_sequence WHERE name = {temp} AND rowid <> "
                f"(SELECT MAX(rowid) FROM sqlite_sequence WHERE name = {temp})"]
        statements += [f"DROP TABLE {quote(self.table)}",
                       f"ALTER TABLE {quote(self.temp_name)} RENAME TO {quote(self.table)}",
                       *self.index_sql]
        return statements


@dataclass
class CreateIndex(Operation):
    kind: ClassVar[str] = "create_index"
    name: str = ""
    sql: str = ""

    def describe(self) -> str:
        return f"create index {self.name} on {self.table}"

    def statements(self) -> list[str]:
        return [self.sql]


@dataclass
class DropIndex(Operation):
    kind: ClassVar[str] = "drop_index"
    name: str = ""

    def describe(self) -> str:
        return f"drop index {self.name} on {self.table}"

    def statements(self) -> list[str]:
        return [f"DROP INDEX {quote(self.name)}"]


# --------------------------------------------------------------------------- the differ

def _count(conn: sqlite3.Connection, table: str, where: str = "1") -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {quote(table)} WHERE {where}").fetchone()[0]


def _length_limit(declared: str) -> tuple[str, int] | None:
    match = _LENGTH_RE.match(declared)
    return (match.group(1).strip(), int(match.group(2))) if match else None


def _addable(column: Column, definition: str | None, constrained: set[str]) -> bool:
    """Whether ALTER TABLE ADD COLUMN can add this column (SQLite's documented restrictions)."""
    default = (column.default or "").strip()
    return (definition is not None and column.pk == 0 and column.hidden == 0
            and column.name not in constrained
            and not (column.notnull and column.default is None)
            and not default.startswith("(") and default.upper() not in _NON_CONSTANT_DEFAULTS)


def _constrained_columns(table: Table) -> set[str]:
    return {col for _unique, cols in table.constraints for col, _desc, _coll in cols if col}


class _TableDiff:
    """How one live table maps onto its target: column sources, drops, renames, additions."""

    def __init__(self, live: Table, target: Table, renames: Renames) -> None:
        self.live, self.target = live, target
        live_names, target_names = live.column_names, set(target.column_names)
        self.source: dict[str, str | None] = {}
        for col in target.columns:
            if col.name in live_names:
                self.source[col.name] = col.name
                continue
            candidates = [old for old in live_names if old not in target_names
                          and renames.column_pair((live.name, target.name), col.name, old)]
            self.source[col.name] = candidates[0] if len(candidates) == 1 else None
        used = set(self.source.values())
        self.dropped = [name for name in live_names if name not in used]
        self.renamed = [(new, old) for new, old in self.source.items() if old is not None and old != new]
        self.added = [col for col in target.columns if self.source[col.name] is None]

    def appends_only(self) -> bool:
        """True when the target is the live table plus trailing columns ADD COLUMN can add."""
        live, target = self.live, self.target
        n = len(live.columns)
        if self.renamed or self.dropped or target.columns[:n] != live.columns:
            return False
        added_names = {col.name for col in self.added}
        kept_fks = tuple(fk for fk in target.foreign_keys if not set(fk.columns) <= added_names)
        constrained = _constrained_columns(target)
        return (kept_fks == live.foreign_keys and target.constraints == live.constraints
                and target.sql is not None
                and all(_addable(col, _column_definition(target.sql, col.name), constrained)
                        for col in self.added))

    def changes(self) -> list[str]:
        """Plain-words list of what differs, for the plan."""
        out = [f"rename column {old} to {new}" for new, old in self.renamed]
        out += [f"add column {col.name}" for col in self.added]
        out += [f"drop column {name}" for name in self.dropped]
        for col in self.target.columns:
            old_name = self.source[col.name]
            old = self.live.column(old_name) if old_name else None
            if old is None:
                continue
            if old.type != col.type:
                out.append(f"column {col.name}: type {old.type or '(none)'} -> {col.type or '(none)'}")
            if old.notnull != col.notnull:
                out.append(f"column {col.name}: " + ("NOT NULL" if col.notnull else "now nullable"))
            if old.default != col.default:
                out.append(f"column {col.name}: default {old.default} -> {col.default}")
            if old.pk != col.pk:
                out.append(f"column {col.name}: primary key changes")
        kept = [name for name in self.live.column_names if name not in self.dropped]
        if [self.source[c.name] for c in self.target.columns if self.source[c.name]] != kept:
            out.append("column order changes")
        if self.live.foreign_keys != self.target.foreign_keys:
            out.append("foreign keys change")
        if self.live.constraints != self.target.constraints:
            out.append("unique / primary key constraints change")
        return out


def _rebuild(conn: sqlite3.Connection, diff: _TableDiff, source_name: str, changes: list[str],
             index_sql: list[str]) -> RebuildTable:
    """A RebuildTable with its copy expressions, the data it loses and the rows that block it."""
    live, target = diff.live, diff.target
    autoincrement = any(token.upper() == "AUTOINCREMENT" for token, _, _ in _scan_tokens(target.sql or ""))
    op = RebuildTable(target.name, sql=target.sql or "", changes=changes, index_sql=index_sql,
                      source=source_name, autoincrement=autoincrement)
    losses = []
    for name in diff.dropped:   # values that are NULL or the column's default are not data to lose
        if live.column(name).hidden:  # type: ignore[union-attr]   (generated columns hold no data)
            continue
        default = live.column(name).default  # type: ignore[union-attr]
        where = f"{quote(name)} IS NOT NULL" + (f" AND {quote(name)} IS NOT ({default})" if default else "")
        filled = _count(conn, source_name, where)
        if filled:
            losses.append(f"column {live.name}.{name} is dropped with {filled} value(s) other than "
                          f"NULL or its default")
    for col in target.columns:
        old_name = diff.source[col.name]
        if old_name is None or col.hidden:   # generated columns compute themselves
            op.copy.append((col.name, None))
            rows = _count(conn, source_name) if col.notnull and col.default is None else 0
            if rows:
                op.warnings.append(f"new column {target.name}.{col.name} is NOT NULL without a default "
                                   f"and the table has {rows} rows: the migration will fail")
            continue
        old = live.column(old_name)
        expr = quote(old_name)
        if col.notnull and old is not None and not old.notnull:
            nulls = _count(conn, source_name, f"{expr} IS NULL")
            if nulls and col.default is not None:
                expr = f"COALESCE({expr}, {col.default})"
                op.warnings.append(f"{nulls} NULL values in {live.name}.{old_name} become the default "
                                   f"{col.default}")
            elif nulls:
                op.warnings.append(f"{nulls} rows have NULL in {live.name}.{old_name}, which becomes "
                                   f"NOT NULL without a default: the migration will fail")
        old_limit, new_limit = _length_limit(old.type if old else ""), _length_limit(col.type)
        if new_limit and (old_limit is None or new_limit[1] < old_limit[1]):
            longer = _count(conn, source_name, f"length({quote(old_name)}) > {new_limit[1]}")
            if longer:
                losses.append(f"{longer} values in {live.name}.{old_name} are longer than the new "
                              f"{col.type}")
        op.copy.append((col.name, expr))
    op.loss = "; ".join(losses) or None
    op.positional = (len(target.columns) == len(live.columns)
                     and [expr for _, expr in op.copy] == [quote(name) for name in live.column_names]
                     and not any(col.hidden for col in (*target.columns, *live.columns)))
    return op


def _same_text(recorded: str | None, target: str | None, table_sql: bool, renamed: dict[str, str],
               parent_columns: dict[str, dict[str, str]] | None = None) -> bool:
    """Compare two snapshots' CREATE texts (the table's own name aside); unknown text counts as same."""
    if recorded is None or target is None:
        return True
    if table_sql:
        return _definitions(recorded, renamed, parent_columns) == _definitions(target)
    return _normalized(recorded, renamed) == _normalized(target)


def _renamed_columns(columns: Sequence, mapping: dict[str, str]) -> tuple:
    return tuple(mapping.get(name, name) if name is not None else None for name in columns)


def _after_renames(table: Table, target_name_of: dict[str, str],
                   column_renames: dict[str, dict[str, str]]) -> Table:
    """``table`` as SQLite will show it once tables and columns are renamed.

    ALTER TABLE RENAME (COLUMN) rewrites every reference, so a foreign key to a renamed table
    or column follows it; ``column_renames`` maps target table -> {old column: new column}.
    """
    fks = []
    for fk in table.foreign_keys:
        parent = target_name_of.get(fk.parent, fk.parent)
        fks.append(replace(fk, parent=parent,
                           parent_columns=_renamed_columns(fk.parent_columns, column_renames.get(parent, {}))))
    return replace(table, foreign_keys=tuple(sorted(fks, key=repr)))


def _renamed_entries(entries: tuple, mapping: dict[str, str]) -> tuple:
    """Index or constraint entries ``(column, desc, collation)`` with renamed columns."""
    return tuple((mapping.get(c, c) if c is not None else None, desc, coll) for c, desc, coll in entries)


def _rename_in_place(table: Table, mapping: dict[str, str]) -> Table:
    """The table as ALTER TABLE RENAME COLUMN leaves it (its own columns, keys and indexes)."""
    return replace(
        table,
        columns=tuple(replace(col, name=mapping.get(col.name, col.name)) for col in table.columns),
        foreign_keys=tuple(sorted((replace(fk, columns=_renamed_columns(fk.columns, mapping)) for fk in
                                   table.foreign_keys), key=repr)),
        constraints=tuple(sorted(((unique, _renamed_entries(entries, mapping))
                                  for unique, entries in table.constraints), key=repr)),
        indexes={name: replace(idx, columns=_renamed_entries(idx.columns, mapping))
                 for name, idx in table.indexes.items()})


def diff_schemas(conn: sqlite3.Connection, live: Schema, target: Schema, renames: Renames,
                 recorded: Schema | None = None) -> list[Operation]:
    """The operations that turn ``live`` into ``target``, in execution order.

    ``recorded`` is the snapshot the database says it is on; when the live schema still
    matches it, its CREATE texts reveal changes the PRAGMAs cannot see (CHECK, COLLATE).
    """
    if recorded is not None and recorded.signature() != live.signature():
        recorded = None
    renamed: list[Operation] = []
    created: list[Operation] = []
    added: list[Operation] = []
    rebuilt: list[Operation] = []
    live_name_of: dict[str, str] = {}
    for name, table in target.tables.items():
        if name in live.tables:
            live_name_of[name] = name
            continue
        olds = [old for old in live.tables if old not in target.tables and old not in live_name_of.values()
                and renames.table_pair(name, old)]
        if len(olds) == 1:
            live_name_of[name] = olds[0]
            renamed.append(RenameTable(name, old=olds[0]))
        else:
            created.append(CreateTable(name, sql=table.sql or ""))
    rebuilt_tables: set[str] = set()
    target_name_of = {old: new for new, old in live_name_of.items()}
    column_renames: dict[str, dict[str, str]] = {}   # tables whose columns are renamed in place
    renamed_columns: list[Operation] = []
    for name, live_name in live_name_of.items():   # snapshot order: parents before children
        live_table = _after_renames(live.tables[live_name], target_name_of, column_renames)
        target_table = target.tables[name]
        recorded_table = recorded.tables.get(live_name) if recorded else None
        diff = _TableDiff(live_table, target_table, renames)
        text_same = _same_text(recorded_table.sql if recorded_table else None, target_table.sql, True,
                               target_name_of, column_renames)
        if live_table.shape() == target_table.shape() and text_same:
            continue
        if diff.renamed and not diff.added and not diff.dropped:
            mapping = {old: new for new, old in diff.renamed}
            if _rename_in_place(live_table, mapping).shape() == target_table.shape() and _same_text(
                    recorded_table.sql if recorded_table else None, target_table.sql, True,
                    {**target_name_of, **mapping}, column_renames):
                column_renames[name] = mapping
                renamed_columns += [RenameColumn(name, old=old, new=new, source=live_name)
                                    for new, old in diff.renamed]
                continue
        if diff.added and diff.appends_only() and (
                recorded_table is None or recorded_table.sql is None or target_table.sql is None
                or [d for d in _definitions(target_table.sql)
                    if d not in {_normalized(_column_definition(target_table.sql, c.name) or "")
                                 for c in diff.added}] == _definitions(recorded_table.sql, target_name_of,
                                                                       column_renames)):
            added += [AddColumn(name, column=col.name, source=live_name,
                                definition=_column_definition(target_table.sql, col.name))
                      for col in diff.added]
            continue
        changes = diff.changes() or ["definition text changes (CHECK, COLLATE or similar)"]
        index_sql = [index.sql for index in target_table.indexes.values() if index.sql]
        rebuilt.append(_rebuild(conn, diff, live_name, changes, index_sql))
        rebuilt_tables.add(name)
    dropped = [DropTable(old, rows=_count(conn, old)) for old in reversed(list(live.tables))
               if old not in live_name_of.values()]
    for op in dropped:
        if op.rows:
            op.loss = f"table {op.table} is dropped with {op.rows} rows"
    drop_indexes, create_indexes = _diff_indexes(live, target, recorded, live_name_of, rebuilt_tables,
                                                 column_renames)
    return renamed + renamed_columns + drop_indexes + created + added + rebuilt + dropped + create_indexes


def _diff_indexes(live: Schema, target: Schema, recorded: Schema | None, live_name_of: dict[str, str],
                  rebuilt: set[str], column_renames: dict[str, dict[str, str]],
                  ) -> tuple[list[Operation], list[Operation]]:
    """Named indexes to drop (after renames) and to create last (rebuilt tables recreate their own)."""
    target_name_of = {old: new for new, old in live_name_of.items()}
    live_indexes = {idx.name: idx for table in live.tables.values() for idx in table.indexes.values()}
    recorded_sql = ({idx.name: idx.sql for table in recorded.tables.values() for idx in table.indexes.values()}
                    if recorded else {})
    kept: set[str] = set()
    creates: list[Operation] = []
    for table in target.tables.values():
        for idx in table.indexes.values():
            old = live_indexes.get(idx.name)
            if table.name in rebuilt:
                continue
            mapping = column_renames.get(idx.table, {})
            if (old is not None and target_name_of.get(old.table) == idx.table
                    and Index(old.name, idx.table, old.unique, _renamed_entries(old.columns, mapping),
                              old.partial) == idx
                    and _same_text(recorded_sql.get(idx.name), idx.sql, False, {**target_name_of, **mapping})):
                kept.add(idx.name)
                continue
            creates.append(CreateIndex(table.name, name=idx.name, sql=idx.sql or "",
                                       source=live_name_of.get(table.name)))
    drops: list[Operation] = [DropIndex(idx.table, name=idx.name) for idx in live_indexes.values()
                              if idx.name not in kept and target_name_of.get(idx.table) not in rebuilt]
    return drops, creates


def plan_outcome(result: dict[str, Any], operations: Sequence[Operation], current: dict[str, Any] | None,
                 number: int, sha256: str, *, dry_run: bool, force: bool) -> dict[str, Any] | None:
    """The answer of a migration that stops before changing anything, or None to go on.

    A dry run and a database already on the snapshot return ``result`` with a message; steps that
    lose data raise :class:`DestructiveMigration` unless ``force``. Both backends decide so.
    """
    if dry_run:
        result["dry_run"] = True
        result["message"] = (f"dry run: {len(operations)} operations to reach schema {number}"
                             if operations else f"dry run: the database already matches schema {number}")
        return result
    if not operations and current and current["number"] == number and current["sha256"] == sha256:
        result["message"] = f"the database is already on schema {number}; nothing to do"
        return result
    losses = [op.loss for op in operations if op.loss]
    if losses and not force:
        raise DestructiveMigration(
            f"migrating to schema {number} would lose data: {'; '.join(losses)}. "
            "Nothing was changed; apply with --force to accept the loss",
            details={"number": number, "losses": losses, "operations": [op.to_dict() for op in operations]})
    return None
