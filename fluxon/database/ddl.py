"""DDL generated from models: deterministic CREATE TABLE and CREATE INDEX statements.

The same models always give the same text (tables in dependency order, columns in
declaration order), so schema snapshots can be compared as text. Statements carry no
trailing semicolon.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fluxon.database.backends.base import Backend
from fluxon.database.backends.sqlite import SQLITE
from fluxon.database.fields import NO_DEFAULT, Field
from fluxon.database.relations import PROTECT, RESTRICT, ForeignKey
from fluxon.database.models import Model, collect_models
from fluxon.errors import ConfigurationError

__all__ = ["schema_statements", "create_table_statement", "create_index_statements",
           "column_definition", "sql_literal", "index_name"]


def sql_literal(value: Any, backend: Backend = SQLITE) -> str:
    """A constant from a model definition as an SQL literal (for DEFAULT clauses)."""
    return backend.literal(value)


def _default_clause(field: Field, backend: Backend) -> str:
    default = field.default
    if default is NO_DEFAULT or callable(default) or field.auto_now or field.auto_now_add:
        return ""
    return " DEFAULT " + backend.literal(field.db_value(default))


def column_definition(field: Field, backend: Backend = SQLITE) -> str:
    """One column of CREATE TABLE: name, type, constraints, default, check, reference."""
    quote = backend.quote
    parts = [quote(field.column), backend.column_type(field)]
    if not field.null or field.primary_key:
        parts.append("NOT NULL")
    if field.primary_key:
        parts.append(backend.primary_key_clause(field))
    elif field.unique:
        parts.append("UNIQUE")
    text = " ".join(parts) + _default_clause(field, backend)
    check = backend.column_check(field)
    if check:
        text += f" CHECK ({check})"
    if isinstance(field, ForeignKey):
        target = field.rel_field
        on_delete = RESTRICT if field.on_delete == PROTECT else field.on_delete
        text += (f" REFERENCES {quote(field.rel_model._meta.table_name)} ({quote(target.column)})"
                 f" ON DELETE {on_delete}")
    return text


def _columns_of(model: type[Model], names: Iterable[str]) -> list[str]:
    meta = model._meta
    columns = []
    for name in names:
        field = meta.by_key.get(name)
        if field is None:
            raise ConfigurationError(f"{model.__name__}.Meta names an unknown field {name!r}")
        columns.append(field.column)
    return columns


def create_table_statement(model: type[Model], *, if_not_exists: bool = False,
                           backend: Backend = SQLITE) -> str:
    """``CREATE TABLE`` for one model (unique_together as table constraints)."""
    meta = model._meta
    quote = backend.quote
    lines = [column_definition(f, backend) for f in meta.fields]
    for group in meta.unique_together:
        lines.append("UNIQUE (" + ", ".join(quote(c) for c in _columns_of(model, group)) + ")")
    head = "CREATE TABLE IF NOT EXISTS " if if_not_exists else "CREATE TABLE "
    return head + quote(meta.table_name) + " (\n    " + ",\n    ".join(lines) + "\n)"


def index_name(table: str, columns: Iterable[str]) -> str:
    """The name Fluxon gives the index on ``columns`` of ``table``."""
    return "idx_" + table + "_" + "_".join(columns)


def create_index_statements(model: type[Model], *, if_not_exists: bool = False,
                            backend: Backend = SQLITE) -> list[str]:
    """``CREATE INDEX`` for indexed fields (and Meta.indexes), in declaration order."""
    meta = model._meta
    quote = backend.quote
    groups = [[f.column] for f in meta.fields if f.index and not (f.unique or f.primary_key)]
    groups += [_columns_of(model, group) for group in meta.indexes]
    head = "CREATE INDEX IF NOT EXISTS " if if_not_exists else "CREATE INDEX "
    return [f"{head}{quote(index_name(meta.table_name, cols))} ON {quote(meta.table_name)} ("
            + ", ".join(quote(c) for c in cols) + ")" for cols in groups]


def schema_statements(models: Any, *, if_not_exists: bool = False,
                      backend: Backend = SQLITE) -> list[str]:
    """Every statement creating the tables and indexes of ``models`` (incl. m2m join tables).

    ``models``: a module or an iterable of model classes (see ``collect_models``);
    ``backend``: whose column types and DDL to write (SQLite unless told).
    """
    statements: list[str] = []
    for model in collect_models(models):
        statements.append(create_table_statement(model, if_not_exists=if_not_exists, backend=backend))
        statements.extend(create_index_statements(model, if_not_exists=if_not_exists, backend=backend))
    return statements
