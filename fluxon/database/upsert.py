"""Writes that choose between insert and update: ``upsert``, ``get_or_create``, ``update_or_create``.

``upsert`` is one statement; the backend writes its dialect part (``Backend.upsert_clause``,
``Backend.returning_clause``)::

    User.upsert({"email": "a@x.org", "name": "Ada"}, conflict=("email",), update=("name",))
    INSERT INTO "User" ("email", "name") VALUES (?, ?)
        ON CONFLICT ("email") DO UPDATE SET "name" = excluded."name" RETURNING "id"

``get_or_create`` and ``update_or_create`` run in one ``atomic()`` block, which takes the
write lock first (``BEGIN IMMEDIATE`` on SQLite, the advisory lock on PostgreSQL), so two
callers cannot both miss the row and both insert it; the insert also runs in a savepoint
and falls back to reading the row on a ``UniqueViolation`` (a writer that did not take the
lock, or a unique column outside the lookup).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fluxon.database.fields import Field, python_key
from fluxon.errors import ConfigurationError, DoesNotExist, UniqueViolation

__all__ = ["upsert", "get_or_create", "update_or_create"]


def _fields(meta: Any, names: Iterable[Any], what: str) -> list[Field]:
    if isinstance(names, (str, Field)):
        names = (names,)
    fields = [meta.field(name) for name in names]
    if what == "conflict" and not fields:
        raise ConfigurationError(f"{meta.model.__name__}.upsert needs conflict=(field, ...): the "
                                 "unique field(s) that decide whether the row exists")
    return fields


def upsert(db: Any, model: type, data: Mapping[Any, Any], conflict: Iterable[Any],
           update: Iterable[Any] | None = None) -> Any:
    """Insert ``data``, or on a conflict over ``conflict`` update the ``update`` fields of the
    existing row (``None``: every given field but the conflict ones; ``()``: leave it as it
    is). Returns the primary key of the inserted or existing row."""
    meta = model._meta
    plan, params = db._insert_params(model, data)
    given = [meta.field(key) for key in data]
    targets = _fields(meta, conflict, "conflict")
    if update is None:
        changes = [f for f in given if f not in targets and f is not meta.pk]
    else:
        changes = _fields(meta, update, "update")
        missing = [f.name for f in changes if f not in given]
        if missing:
            raise ConfigurationError(f"{model.__name__}.upsert: update={missing} are not in the "
                                     "data; give their new values")
    if changes:
        changes += [f for f in meta.fields if f.auto_now and f not in changes]
    backend = db.backend
    statement = (plan[0] + backend.upsert_clause([f.column for f in targets], [f.column for f in changes])
                 + backend.returning_clause([meta.pk.column]))
    rows = db._write(statement, params).fetchall()
    if not rows:   # DO NOTHING kept the existing row: find it by the conflict fields
        values = dict(zip(map(id, given), data.values()))
        where = [f == values[id(f)] for f in targets if id(f) in values]
        return db.select(model, meta.pk).where(*where).dicts().get()[meta.pk.name]
    return python_key(meta.pk, rows[0][0])


def _create(db: Any, model: type, query: Any, values: dict[str, Any]) -> tuple[Any, bool]:
    try:
        with db.atomic():      # a savepoint: a failed insert leaves the transaction usable
            obj = model(**values)
            db._save(obj)
        return obj, True
    except UniqueViolation:
        return query.get(), False


def get_or_create(db: Any, model: type, defaults: Mapping[str, Any] | None,
                  lookup: dict[str, Any]) -> tuple[Any, bool]:
    """``(row, created)``: the row matching ``lookup``, or a new one from ``lookup`` and
    ``defaults``, in one transaction."""
    query = db.select(model).where(**lookup)
    with db.atomic():
        try:
            return query.get(), False
        except DoesNotExist:
            return _create(db, model, query, {**lookup, **(defaults or {})})


def update_or_create(db: Any, model: type, defaults: Mapping[str, Any] | None,
                     lookup: dict[str, Any]) -> tuple[Any, bool]:
    """``(row, created)``: the row matching ``lookup`` updated with ``defaults``, or a new one
    from both, in one transaction."""
    query = db.select(model).where(**lookup)
    meta = model._meta
    with db.atomic():
        try:
            obj, created = query.get(), False
        except DoesNotExist:
            obj, created = _create(db, model, query, {**lookup, **(defaults or {})})
        if not created and defaults:
            db.update(model, dict(defaults), meta.pk == obj.pk)
            obj = db.select(model).where(meta.pk == obj.pk).get()
        return obj, created
