"""Select lists and row building: which columns a SELECT reads and how rows become objects.

A select list item is a field (of the queried model or a joined one), a model or a table
alias (all of its fields), an aliased column, or any expression named with ``.alias()``
(``fn.COUNT(Course.id).alias("n")``; an unnamed function is named after itself, ``count``).
Lists of plain fields are compiled once per model and cached in ``Model._meta``.
"""

from __future__ import annotations

from typing import Any

from fluxon.database.aliases import AliasedColumn, ModelAlias
from fluxon.database.expressions import SQL, Alias, Context, Func, quote
from fluxon.database.fields import Field
from fluxon.errors import ConfigurationError

__all__ = ["ColumnPlan", "column_plan", "build_rows"]

_new = object.__new__
_MAX_CACHED_PLANS = 256


class ColumnPlan:
    """A compiled select list: SQL text, its parameters, row names and value converters."""

    __slots__ = ("sql", "params", "names", "converters")

    def __init__(self, sql: str, params: list, names: tuple, converters: tuple) -> None:
        self.sql, self.params, self.names, self.converters = sql, params, names, converters


def _expand(columns: tuple) -> list:
    items: list = []
    for column in columns:
        if isinstance(column, type) and hasattr(column, "_meta"):
            items.extend(column._meta.fields)
        elif isinstance(column, ModelAlias):
            items.extend(column._fields())
        else:
            items.append(column)
    return items


def _converter_of(node: Any) -> Any:
    """How a selected value is read back: a field's converter, also through MIN/MAX."""
    if isinstance(node, Alias):
        node = node.node
    if isinstance(node, Func) and node.name in ("MIN", "MAX") and len(node.args) == 1:
        node = node.args[0]
    if isinstance(node, (Field, AliasedColumn)):
        return node.python_value
    return None


def _name_of(item: Any, model: type, names: list) -> str:
    if isinstance(item, Alias):
        return item.name
    if isinstance(item, Func):
        return item.name.lower()
    if isinstance(item, AliasedColumn):
        name = item.name
        return f"{item.source._alias}_{name}" if name in names or name in model._meta.by_name \
            else name
    if isinstance(item, Field) and item.model is not None:
        name = item.name
        if item.model is not model and (name in names or name in model._meta.by_name):
            name = f"{item.model.__name__.lower()}_{name}"
        return name
    if isinstance(item, SQL):
        return item.text
    raise ConfigurationError(f"select() takes model fields, models or named expressions "
                             f"(expr.alias('name')), not {item!r}")


def column_plan(model: type, columns: tuple) -> ColumnPlan:
    """The select list for ``columns`` (empty: every field of ``model``)."""
    meta = model._meta
    plain = all(isinstance(c, Field) for c in columns)
    if plain:
        plan = meta.cache.get(columns)
        if plan is not None:
            return plan
    items = _expand(columns) if columns else list(meta.fields)
    names: list[str] = []
    ctx = Context(qualify=True)
    for index, item in enumerate(items):
        names.append(_name_of(item, model, names))
        if index:
            ctx.sql.append(", ")
        if isinstance(item, Alias):
            ctx.render(item.node)
            ctx.sql.append(" AS " + quote(item.name))
        else:
            ctx.render(item)
    converters = tuple((i, names[i], convert) for i, item in enumerate(items)
                       if (convert := _converter_of(item)) is not None)
    plan = ColumnPlan(ctx.text(), ctx.params, tuple(names), converters)
    if plain:
        if len(meta.cache) >= _MAX_CACHED_PLANS:
            meta.cache.clear()
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

