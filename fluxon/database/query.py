"""Compiled statements for one model: SELECT queries, INSERT plans, UPDATE and DELETE.

INSERT plans and SELECT column lists (``columns.py``) are compiled once per model and
column set and cached in ``Model._meta``; per row only the fields' converters run. Rows
become model instances by filling ``__dict__`` directly (no ``__init__``), or plain dicts.
Related rows load through ``eager.py`` (select_related JOINs, prefetch_related queries).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from fluxon.database.aliases import ModelAlias, source_model, source_sql
from fluxon.database.columns import ColumnPlan, build_rows, column_plan
from fluxon.database.expressions import (
    SQL, Alias, Context, Exists, Node, Ordering, Where, _as_node, quote,
)
from fluxon.database.fields import AutoField
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
    # where the primary key's value is among the parameters (given, or a default such as uuid4)
    pk_position = next((i for i, f in enumerate(fields + dynamic_fields + static_fields)
                        if f is meta.pk), None)
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


class Select:
    """A chainable SELECT on one model (plus joins, groups, related rows); immutable steps."""

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
        self._distinct = False
        self._group: tuple = ()
        self._having: Node | None = None
        self._related: tuple = ()
        self._prefetch: tuple = ()

    def _clone(self, **changes: Any) -> "Select":
        copy = _new(Select)
        copy.__dict__ = {**self.__dict__, **changes}
        return copy

    # -- building ------------------------------------------------------------------------
    def where(self, *conditions: Any, **equal: Any) -> "Select":
        """Add conditions (combined with AND); keyword arguments mean ``field == value``."""
        meta = self.model._meta
        parts = [where_node(c) for c in conditions] + [meta.field(k) == v for k, v in equal.items()]
        return self._clone(_where=_and(self._where, parts))

    def having(self, *conditions: Any) -> "Select":
        """Conditions on groups (``fn.COUNT(Course.id) > 2``), combined with AND."""
        return self._clone(_having=_and(self._having, [where_node(c) for c in conditions]))

    def group_by(self, *items: Any) -> "Select":
        """Group rows by fields or expressions; a model groups by its primary key."""
        resolved = []
        for item in items:
            if isinstance(item, type) and hasattr(item, "_meta"):
                item = item._meta.pk
            elif isinstance(item, str):
                item = self.model._meta.field(item)
            elif not isinstance(item, Node):
                raise ValidationError(f"cannot group by {type(item).__name__}")
            resolved.append(item)
        return self._clone(_group=self._group + tuple(resolved))

    def order_by(self, *orderings: Any) -> "Select":
        """Order by fields (``User.name``, ``User.name.desc()``, ``"-name"``) or named
        expressions of the select list (``"-n"`` for ``fn.COUNT(...).alias("n")``)."""
        resolved = []
        meta = self.model._meta
        named = {c.name: c for c in self._columns if isinstance(c, Alias)}
        for item in orderings:
            if isinstance(item, str):
                descending = item.startswith("-")
                name = item.lstrip("-+")
                node = named[name] if name in named else meta.field(name)
                item = node.desc() if descending else node.asc()
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

    def distinct(self, distinct: bool = True) -> "Select":
        """``SELECT DISTINCT``: equal rows (of the selected columns) once."""
        return self._clone(_distinct=distinct)

    def annotate(self, **named: Any) -> "Select":
        """Add named expressions to the selected columns (all fields when none were chosen):
        ``Teacher.select().join(Course).group_by(Teacher).annotate(n=fn.COUNT(Course.id))``."""
        base = self._columns or tuple(self.model._meta.fields)
        return self._clone(_columns=base + tuple(_as_node(v).alias(k) for k, v in named.items()))

    def select_related(self, *paths: str) -> "Select":
        """Load the rows these foreign keys point to in the same query (JOINs):
        ``select_related("teacher", "teacher__user")``; ``course.teacher`` then reads no row."""
        from fluxon.database.eager import related_paths
        return self._clone(_related=related_paths(self.model, self._related + paths))

    def prefetch_related(self, *paths: str) -> "Select":
        """Load related rows in one extra query per relation (reverse foreign keys such as
        ``"course_set"``, many-to-many fields, foreign keys; ``"a__b"`` nests)."""
        return self._clone(_prefetch=self._prefetch + tuple(paths))

    def join(self, target: Any, on: Any = None, *, outer: bool = False) -> "Select":
        """Join ``target`` (a model or ``Model.alias("x")``) along the foreign key between it
        and a model already in the query, or ``on`` a condition."""
        if on is None:
            on = self._join_condition(target)
        kind = "LEFT OUTER JOIN" if outer else "INNER JOIN"
        return self._clone(_joins=self._joins + ((kind, target, where_node(on)),))

    def _join_condition(self, target: Any) -> Node:
        present = [self.model] + [j[1] for j in self._joins if not isinstance(j[1], ModelAlias)]
        model = source_model(target)

        def column(field: Any) -> Any:
            return target._column(field) if isinstance(target, ModelAlias) else field

        candidates = [f == column(model._meta.pk) for m in present for f in m._meta.fields
                      if f.is_relation and f.rel_model is model]
        candidates += [column(f) == f.rel_model._meta.pk for f in model._meta.fields
                       if f.is_relation and f.rel_model in present]
        if len(candidates) != 1:
            raise ConfigurationError(f"cannot tell how to join {model.__name__} "
                                     f"({len(candidates)} foreign keys fit): pass on=...")
        return candidates[0]

    # -- compiling -----------------------------------------------------------------------
    def _from(self, ctx: Context, extra_joins: str = "") -> None:
        ctx.sql.append(" FROM " + quote(self.model._meta.table_name))
        for kind, target, on in self._joins:
            ctx.sql.append(f" {kind} {source_sql(target)} ON ")
            ctx.render(on)
        ctx.sql.append(extra_joins)
        if self._where is not None:
            ctx.sql.append(" WHERE ")
            ctx.render(self._where)
        if self._group:
            ctx.sql.append(" GROUP BY ")
            _render_list(ctx, self._group)
        if self._having is not None:
            ctx.sql.append(" HAVING ")
            ctx.render(self._having)

    def _tail(self, ctx: Context) -> None:
        order = self._order or self._default_order()
        if order:
            ctx.sql.append(" ORDER BY ")
            _render_list(ctx, [i if isinstance(i, Ordering) else i.asc() for i in order])
        if self._limit is not None or self._offset is not None:
            ctx.sql.append(" LIMIT ?")
            ctx.params.append(_NO_LIMIT if self._limit is None else self._limit)
            if self._offset is not None:
                ctx.sql.append(" OFFSET ?")
                ctx.params.append(self._offset)

    def _default_order(self) -> tuple:
        ordering = self.model._meta.ordering
        return self.order_by(*ordering)._order if ordering and not self._group else ()

    def _render(self, ctx: Context, plan: ColumnPlan, extra_joins: str = "") -> None:
        ctx.sql.append("SELECT DISTINCT " if self._distinct else "SELECT ")
        ctx.sql.append(plan.sql)
        ctx.params.extend(plan.params)
        self._from(ctx, extra_joins)
        self._tail(ctx)

    def _plan(self) -> tuple[ColumnPlan, str, Any]:
        """``(select list, extra joins, rows -> objects)`` for running this query."""
        if self._related:
            if self._as_dict or self._columns:
                raise ConfigurationError("select_related() loads whole model instances: use it "
                                         "without chosen columns and without .dicts()")
            from fluxon.database.eager import related_plan
            return related_plan(self)
        plan = column_plan(self.model, self._columns)
        model, as_dict = self.model, self._as_dict
        return plan, "", lambda rows: build_rows(model, plan.names, plan.converters, rows, as_dict)

    def sql(self) -> tuple[str, list]:
        """The SELECT text and its parameters."""
        plan, joins, _ = self._plan()
        ctx = Context(qualify=True)
        self._render(ctx, plan, joins)
        return ctx.text(), ctx.params

    def _render_subquery(self, ctx: Context, in_list: bool) -> None:
        columns = self._columns
        if in_list and not columns:
            columns = (self.model._meta.pk,)
        self._render(ctx, column_plan(self.model, columns))

    def select_one(self) -> "Select":
        """This query selecting the constant 1 (for EXISTS)."""
        return self._clone(_columns=(SQL("1"),), _order=self._order if self._limit else (),
                           _related=(), _prefetch=())

    # -- running -------------------------------------------------------------------------
    def all(self) -> list:
        """Every matching row, as model instances (or dicts after ``.dicts()``)."""
        plan, joins, make_rows = self._plan()
        ctx = Context(qualify=True)
        self._render(ctx, plan, joins)
        rows = make_rows(self.db._read(ctx.text(), ctx.params))
        if self._prefetch and rows:
            self._prefetch_into(rows)
        return rows

    def _prefetch_into(self, rows: list) -> None:
        if self._as_dict:
            raise ConfigurationError("prefetch_related() fills model instances: use it without "
                                     ".dicts()")
        from fluxon.database.eager import prefetch
        prefetch(self.db, rows, self._prefetch)

    def __iter__(self):
        return iter(self.all())

    def __getitem__(self, index: Any) -> Any:
        """``query[3]`` reads that row (IndexError past the end); ``query[10:20]`` is the
        query with offset and limit."""
        if isinstance(index, slice):
            if index.step is not None:
                raise ValidationError("a query slice takes no step")
            start = index.start or 0
            stop = None if index.stop is None else max(check_count(index.stop, "slice end"), start)
            return self.offset(check_count(start, "slice start") or None).limit(
                None if stop is None else stop - start)
        rows = self.offset(check_count(index, "index") or None).limit(1).all()
        if not rows:
            raise IndexError("query index out of range")
        return rows[0]

    def iterator(self, chunk_size: int = 2000) -> Iterator[Any]:
        """Stream the rows from the cursor, ``chunk_size`` at a time (memory stays flat).

        Prefetched relations are loaded per chunk. Reads on the same thread may run in
        between; the statement stays open until the iterator is exhausted or closed.
        """
        chunk_size = check_count(chunk_size, "chunk_size")
        if not chunk_size:
            raise ValidationError("chunk_size must be at least 1", details={"argument": "chunk_size"})
        plan, joins, make_rows = self._plan()
        ctx = Context(qualify=True)
        self._render(ctx, plan, joins)
        stream = self.db.stream(ctx.text(), ctx.params, batch_size=chunk_size)
        while chunk := list(islice(stream, chunk_size)):
            rows = make_rows(chunk)
            if self._prefetch:
                self._prefetch_into(rows)
            yield from rows

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

    def _whole(self) -> bool:
        """Whether the query is more than a filter (counting it needs a subquery)."""
        return bool(self._limit is not None or self._offset is not None or self._distinct
                    or self._group)

    def count(self) -> int:
        """How many rows match (honours limit/offset, distinct and groups)."""
        ctx = Context(qualify=True)
        if not self._whole():
            ctx.sql.append("SELECT COUNT(*)")
            self._from(ctx)
        else:
            ctx.sql.append("SELECT COUNT(*) FROM (")
            columns = self._columns if self._distinct else (SQL("1"),)
            self._clone(_related=())._render(ctx, column_plan(self.model, columns))
            ctx.sql.append(') AS "_counted"')
        return self.db._read(ctx.text(), ctx.params)[0][0]

    def exists(self) -> Exists:
        """Whether at least one row matches: a bool in ``if``, an expression in a query."""
        return Exists(self)

    def _run_exists(self) -> bool:
        ctx = Context(qualify=True)
        ctx.sql.append("SELECT ")
        Exists(self)._sql(ctx)
        return bool(self.db._read(ctx.text(), ctx.params)[0][0])

    def aggregate(self, **named: Any) -> dict[str, Any]:
        """Aggregate over the matching rows: ``aggregate(total=fn.SUM(P.age))`` -> dict."""
        if not named:
            raise ValidationError("aggregate() needs named expressions, e.g. n=fn.COUNT(P.id)")
        if self._group:
            raise ConfigurationError("aggregate() works on rows, not groups: select the "
                                     "aggregates with group_by() instead")
        base = self
        if self._whole():
            pk = self.model._meta.pk
            base = Select(self.db, self.model).where(pk.in_(self._clone(_columns=(pk,))))
        plan = column_plan(self.model, tuple(_as_node(v).alias(k) for k, v in named.items()))
        ctx = Context(qualify=True)
        ctx.sql.append("SELECT " + plan.sql)
        ctx.params.extend(plan.params)
        base._from(ctx)
        row = build_rows(self.model, plan.names, plan.converters,
                         self.db._read(ctx.text(), ctx.params), True)[0]
        return row

    def __repr__(self) -> str:
        sql, params = self.sql()
        return f"<Select {sql!r} {params!r}>"


def _and(node: Node | None, parts: list) -> Node | None:
    for part in parts:
        if part is not None:
            node = part if node is None else (node & part)
    return node


def _render_list(ctx: Context, items: Iterable[Any]) -> None:
    for index, item in enumerate(items):
        if index:
            ctx.sql.append(", ")
        ctx.render(item)


def rows_from_iterable(rows: Iterable[Mapping[Any, Any]]) -> list[Mapping[Any, Any]]:
    """Materialize rows for a bulk insert, refusing anything that is not a mapping."""
    out = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValidationError(f"each row to insert must be a dict, not {type(row).__name__}")
        out.append(row)
    return out
