"""Compiled statements for one model: SELECT queries, INSERT plans, UPDATE and DELETE.

INSERT plans and SELECT column lists are compiled once per model and column set and
cached in ``Model._meta``; per row only the fields' converters run. Rows become model
instances by filling ``__dict__`` directly (no ``__init__``), or plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fluxon.database.expressions import (
    Context, Node, Ordering, Where, quote,
)
from fluxon.database.fields import AutoField, Field
from fluxon.database.relations import ForeignKey
from fluxon.errors import (
    ConfigurationError, DoesNotExist, MultipleObjectsReturned, ValidationError,
)

__all__ = ["Select", "where_node", "insert_plan", "update_statement", "delete_statement",
           "check_count", "build_rows"]

_new = object.__new__
_NO_LIMIT = 2**63 - 1  # "no limit" with an OFFSET: -1 means that on SQLite only


def where_node(where: Any) -> Node | None:
    """The expression inside ``db.where[...]`` (or a bare expression, or None)."""
    if where is None:
        return None
    if isinstance(where, Where):
        return where.node
    if isinstance(where, Node):
        return where
    raise ValidationError(f"a where clause must be a query expression, not {type(where).__name__}")


def check_count(value: Any, what: str) -> int | None:
    """Validate ``fetch``/``limit``/``offset``: a non-negative int (bool and text refused)."""
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ValidationError(f"{what} must be a non-negative integer, not {value!r:.60}",
                              details={"argument": what})
    return value


def insert_plan(meta: Any, keys: tuple) -> tuple:
    """``(sql, converters, dynamic_defaults, static_defaults, pk_position)`` for these keys."""
    fields = [meta.field(key) for key in keys]
    if len(set(map(id, fields))) != len(fields):
        raise ValidationError(f"{meta.model.__name__}: a field is given twice",
                              details={"model": meta.model.__name__})
    given = {id(f) for f in fields}
    dynamic, static, dynamic_fields, static_fields = [], [], [], []
    for field in meta.fields:
        if id(field) in given or isinstance(field, AutoField) or not field.has_default:
            continue
        if callable(field.default) or field.auto_now or field.auto_now_add:
            dynamic.append(lambda f=field: f.db_value(f.get_default()))
            dynamic_fields.append(field)
        else:
            static.append(field.db_value(field.get_default()))
            static_fields.append(field)
    columns = [f.column for f in fields + dynamic_fields + static_fields]
    table = quote(meta.table_name)
    if columns:
        sql = (f"INSERT INTO {table} (" + ", ".join(map(quote, columns)) + ") VALUES ("
               + ", ".join("?" * len(columns)) + ")")
    else:
        sql = f"INSERT INTO {table} DEFAULT VALUES"
    pk_position = next((i for i, f in enumerate(fields) if f is meta.pk), None)
    converters = tuple(f.converter() for f in fields)
    return sql, converters, tuple(dynamic), tuple(static), pk_position


def _set_clause(meta: Any, data: Mapping[Any, Any], ctx: Context) -> None:
    if not isinstance(data, Mapping) or not data:
        raise ValidationError(f"{meta.model.__name__}: update needs a non-empty dict of new values")
    given = set()
    parts = []
    for key, value in data.items():
        field = meta.field(key)
        given.add(id(field))
        parts.append((field, value))
    for field in meta.fields:
        if field.auto_now and id(field) not in given:
            parts.append((field, field.get_default()))
    for index, (field, value) in enumerate(parts):
        ctx.sql.append((", " if index else "") + quote(field.column) + " = ")
        if isinstance(value, Node):
            ctx.render(value)
        else:
            ctx.sql.append("?")
            ctx.params.append(field.db_value(value))


def _require_where(node: Node | None, all_rows: bool, verb: str, model: type) -> None:
    if node is None and not all_rows:
        raise ConfigurationError(f"{verb} on {model.__name__} without a where clause would touch "
                                 "every row: pass a where, or all=True if that is what you mean")


def update_statement(model: type, data: Mapping[Any, Any], where: Any, all_rows: bool) -> tuple[str, list]:
    """``UPDATE`` text and parameters; no where needs ``all_rows``."""
    meta = model._meta
    node = where_node(where)
    _require_where(node, all_rows, "update", model)
    ctx = Context(qualify=True)
    ctx.sql.append(f"UPDATE {quote(meta.table_name)} SET ")
    _set_clause(meta, data, ctx)
    if node is not None:
        ctx.sql.append(" WHERE ")
        ctx.render(node)
    return ctx.text(), ctx.params


def delete_statement(model: type, where: Any, all_rows: bool) -> tuple[str, list]:
    """``DELETE`` text and parameters; no where needs ``all_rows``."""
    node = where_node(where)
    _require_where(node, all_rows, "delete", model)
    ctx = Context(qualify=True)
    ctx.sql.append(f"DELETE FROM {quote(model._meta.table_name)}")
    if node is not None:
        ctx.sql.append(" WHERE ")
        ctx.render(node)
    return ctx.text(), ctx.params


def _column_plan(model: type, columns: tuple) -> tuple[str, tuple, tuple]:
    """``(select list, attribute names, converters)`` for a column set, cached per model."""
    meta = model._meta
    plan = meta.cache.get(columns)
    if plan is not None:
        return plan
    fields = columns or tuple(meta.fields)
    names: list[str] = []
    for field in fields:
        if not isinstance(field, Field) or field.model is None:
            raise ConfigurationError(f"select() takes model fields, not {field!r}")
        name = field.name
        if field.model is not model and (name in names or name in meta.by_name):
            name = f"{field.model.__name__.lower()}_{name}"
        names.append(name)
    select_list = ", ".join(quote(f.model._meta.table_name) + "." + quote(f.column) for f in fields)
    converters = tuple((i, names[i], f.python_value) for i, f in enumerate(fields)
                       if f.python_value is not None)
    plan = (select_list, tuple(names), converters)
    meta.cache[columns] = plan
    return plan


def build_rows(model: type, names: tuple, converters: tuple, rows: list, as_dict: bool) -> list:
    """Turn fetched tuples into model instances (or dicts), converting only where needed."""
    out: list[Any] = []
    append = out.append
    if converters:
        for row in rows:
            data = dict(zip(names, row))
            for index, name, convert in converters:
                value = row[index]
                if value is not None:
                    data[name] = convert(value)
            append(data)
        if as_dict:
            return out
        built = []
        for data in out:
            obj = _new(model)
            obj.__dict__ = data
            built.append(obj)
        return built
    if as_dict:
        return [dict(zip(names, row)) for row in rows]
    for row in rows:
        obj = _new(model)
        obj.__dict__ = dict(zip(names, row))
        append(obj)
    return out


class Select:
    """A chainable SELECT on one model (plus joins along foreign keys); immutable steps."""

    def __init__(self, db: Any, model: type, columns: tuple = ()) -> None:
        self.db = db
        self.model = model
        self._columns = tuple(columns)
        self._where: Node | None = None
        self._order: tuple = ()
        self._limit: int | None = None
        self._offset: int | None = None
        self._joins: tuple = ()
        self._as_dict = False

    def _clone(self, **changes: Any) -> "Select":
        copy = _new(Select)
        copy.__dict__ = {**self.__dict__, **changes}
        return copy

    # -- building ------------------------------------------------------------------------
    def where(self, *conditions: Any, **equal: Any) -> "Select":
        """Add conditions (combined with AND); keyword arguments mean ``field == value``."""
        node = self._where
        for condition in conditions:
            part = where_node(condition)
            if part is not None:
                node = part if node is None else (node & part)
        meta = self.model._meta
        for name, value in equal.items():
            part = meta.field(name) == value
            node = part if node is None else (node & part)
        return self._clone(_where=node)

    def order_by(self, *orderings: Any) -> "Select":
        """Order by fields (``User.name``, ``User.name.desc()``, or ``"-name"``)."""
        resolved = []
        meta = self.model._meta
        for item in orderings:
            if isinstance(item, str):
                descending = item.startswith("-")
                field = meta.field(item.lstrip("-+"))
                item = field.desc() if descending else field.asc()
            elif not isinstance(item, Node):
                raise ValidationError(f"cannot order by {type(item).__name__}")
            resolved.append(item)
        return self._clone(_order=tuple(resolved))

    def limit(self, count: int | None) -> "Select":
        return self._clone(_limit=check_count(count, "limit"))

    def offset(self, count: int | None) -> "Select":
        return self._clone(_offset=check_count(count, "offset"))

    def dicts(self, as_dict: bool = True) -> "Select":
        """Return rows as plain dicts instead of model instances."""
        return self._clone(_as_dict=as_dict)

    def join(self, target: type, on: Any = None, *, outer: bool = False) -> "Select":
        """Join ``target`` along the foreign key between it and a model already in the query."""
        if on is None:
            on = self._join_condition(target)
        kind = "LEFT OUTER JOIN" if outer else "INNER JOIN"
        return self._clone(_joins=self._joins + ((kind, target, where_node(on)),))

    def _join_condition(self, target: type) -> Node:
        present = [self.model] + [j[1] for j in self._joins]
        candidates = [f == target._meta.pk for m in present for f in m._meta.fields
                      if isinstance(f, ForeignKey) and f.rel_model is target]
        candidates += [f == f.rel_model._meta.pk for f in target._meta.fields
                       if isinstance(f, ForeignKey) and f.rel_model in present]
        if len(candidates) != 1:
            raise ConfigurationError(f"cannot tell how to join {target.__name__} "
                                     f"({len(candidates)} foreign keys fit): pass on=...")
        return candidates[0]

    # -- compiling -----------------------------------------------------------------------
    def _from(self, ctx: Context) -> None:
        ctx.sql.append(" FROM " + quote(self.model._meta.table_name))
        for kind, target, on in self._joins:
            ctx.sql.append(f" {kind} {quote(target._meta.table_name)} ON ")
            ctx.render(on)
        if self._where is not None:
            ctx.sql.append(" WHERE ")
            ctx.render(self._where)

    def _tail(self, ctx: Context) -> None:
        order = self._order or self._default_order()
        if order:
            ctx.sql.append(" ORDER BY ")
            for index, item in enumerate(order):
                if index:
                    ctx.sql.append(", ")
                ctx.render(item if isinstance(item, Ordering) else item.asc())
        if self._limit is not None or self._offset is not None:
            ctx.sql.append(" LIMIT ?")
            ctx.params.append(_NO_LIMIT if self._limit is None else self._limit)
            if self._offset is not None:
                ctx.sql.append(" OFFSET ?")
                ctx.params.append(self._offset)

    def _default_order(self) -> tuple:
        ordering = self.model._meta.ordering
        return self.order_by(*ordering)._order if ordering else ()

    def sql(self) -> tuple[str, list]:
        """The SELECT text and its parameters."""
        return self._compile(_column_plan(self.model, self._columns)[0])

    def _compile(self, select_list: str) -> tuple[str, list]:
        ctx = Context(qualify=True)
        ctx.sql.append("SELECT " + select_list)
        self._from(ctx)
        self._tail(ctx)
        return ctx.text(), ctx.params

    # -- running -------------------------------------------------------------------------
    def all(self) -> list:
        """Every matching row, as model instances (or dicts after ``.dicts()``)."""
        select_list, names, converters = _column_plan(self.model, self._columns)
        sql, params = self._compile(select_list)
        return build_rows(self.model, names, converters, self.db._read(sql, params), self._as_dict)

    def __iter__(self):
        return iter(self.all())

    def first(self) -> Any:
        """The first matching row, or None."""
        rows = self.limit(1).all()
        return rows[0] if rows else None

    def get(self) -> Any:
        """Exactly one row: DoesNotExist when none, MultipleObjectsReturned when several."""
        rows = self.limit(2).all()
        name = self.model.__name__
        if not rows:
            raise DoesNotExist(f"no {name} matches the query", details={"model": name})
        if len(rows) > 1:
            raise MultipleObjectsReturned(f"more than one {name} matches the query",
                                          details={"model": name})
        return rows[0]

    def count(self) -> int:
        """How many rows match (honours limit/offset)."""
        ctx = Context(qualify=True)
        if self._limit is None and self._offset is None:
            ctx.sql.append("SELECT COUNT(*)")
            self._from(ctx)
        else:
            ctx.sql.append("SELECT COUNT(*) FROM (SELECT 1")
            self._from(ctx)
            self._tail(ctx)
            ctx.sql.append(")")
        return self.db._read(ctx.text(), ctx.params)[0][0]

    def exists(self) -> bool:
        """Whether at least one row matches."""
        ctx = Context(qualify=True)
        ctx.sql.append("SELECT EXISTS (SELECT 1")
        self._from(ctx)
        ctx.sql.append(")")
        return bool(self.db._read(ctx.text(), ctx.params)[0][0])

    def __repr__(self) -> str:
        sql, params = self.sql()
        return f"<Select {sql!r} {params!r}>"


def rows_from_iterable(rows: Iterable[Mapping[Any, Any]]) -> list[Mapping[Any, Any]]:
    """Materialize rows for a bulk insert, refusing anything that is not a mapping."""
    out = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValidationError(f"each row to insert must be a dict, not {type(row).__name__}")
        out.append(row)
    return out
