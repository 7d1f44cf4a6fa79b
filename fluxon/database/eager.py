"""Eager loading of related rows: ``select_related`` JOINs and ``prefetch_related`` queries.

``Course.select().select_related("teacher", "teacher__user")`` reads each course with its
teacher and the teacher's user in one statement: one JOIN per path (INNER along a NOT NULL
key, LEFT OUTER along a nullable one), the related table under its own name when the query
does not use it yet, else under the alias ``_sr_<path>``. The related instances are cached
on their parents, so ``course.teacher.user`` reads nothing more.

``prefetch_related("course_set")`` runs one more query per relation (per 5000 parent rows)
with ``IN (...)`` and fills the managers and foreign keys of the fetched rows.
"""

from __future__ import annotations

import inspect
from typing import Any

from fluxon.database.aliases import ModelAlias, source_name
from fluxon.database.columns import ColumnPlan, column_plan
from fluxon.database.expressions import quote
from fluxon.errors import ConfigurationError

__all__ = ["related_paths", "related_plan", "prefetch", "group_rows", "fetch_in", "PREFETCH_CHUNK"]

_new = object.__new__
PREFETCH_CHUNK = 5000   # keys per IN (...) list, well below every database's parameter limit


def _foreign_key(model: type, name: str) -> Any:
    field = model._meta.by_name.get(name)
    if field is None or not field.is_relation:
        raise ConfigurationError(f"select_related: {model.__name__}.{name} is not a ForeignKey "
                                 "(reverse and many-to-many relations: prefetch_related)")
    return field


def related_paths(model: type, paths: tuple) -> tuple:
    """Validated paths with their prefixes, parents first (``a__b`` brings ``a``)."""
    found: list[str] = []
    for path in paths:
        if not isinstance(path, str) or not path:
            raise ConfigurationError(f"select_related takes relation names, not {path!r}")
        current, prefix = model, ""
        for part in path.split("__"):
            current = _foreign_key(current, part).rel_model
            prefix = f"{prefix}__{part}" if prefix else part
            if prefix not in found:
                found.append(prefix)
    return tuple(found)


def related_plan(query: Any) -> tuple[ColumnPlan, str, Any]:
    """The select list, the JOINs and the row builder for ``query._related``."""
    root = query.model
    used = {root._meta.table_name.lower()} | {source_name(j[1]).lower() for j in query._joins}
    refs: dict[str, tuple[type, str, bool]] = {"": (root, root._meta.table_name, False)}
    root_plan = column_plan(root, ())
    columns, joins = [root_plan.sql], []
    specs = []
    width = len(root_plan.names)
    for path in query._related:
        parent_path, _, name = path.rpartition("__")
        parent, parent_ref, parent_outer = refs[parent_path]
        fk = parent._meta.by_name[name]
        target = fk.rel_model
        table = target._meta.table_name
        if table.lower() in used:
            ref = "_sr_" + path
            source = f"{quote(table)} AS {quote(ref)}"
        else:
            ref, source = table, quote(table)
        used.add(ref.lower())
        outer = parent_outer or fk.null
        joins.append(f" {'LEFT OUTER' if outer else 'INNER'} JOIN {source} ON "
                     f"{quote(parent_ref)}.{quote(fk.column)} = "
                     f"{quote(ref)}.{quote(target._meta.pk.column)}")
        plan = column_plan(target, ()) if ref == table else \
            column_plan(target, tuple(ModelAlias(target, ref)._fields()))
        columns.append(plan.sql)
        names = plan.names if ref == table else tuple(f.name for f in target._meta.fields)
        converters = tuple((i, names[i], c) for i, _, c in plan.converters)
        pk_index = target._meta.fields.index(target._meta.pk)
        parent_index = list(refs).index(parent_path)
        specs.append((width, width + len(names), target, names, converters, pk_index,
                      parent_index, fk.cache_key))
        width += len(names)
        refs[path] = (target, ref, outer)
    select = ColumnPlan(", ".join(columns), list(root_plan.params), root_plan.names, ())

    root_names, root_converters = root_plan.names, root_plan.converters

    def make_rows(rows: list) -> list:
        # One pass per row: zip() stops at the root's names, each path reads its own slice.
        out = []
        for row in rows:
            obj = _new(root)
            data = dict(zip(root_names, row))
            for index, name, convert in root_converters:
                if row[index] is not None:
                    data[name] = convert(row[index])
            obj.__dict__ = data
            objs = [obj]
            for start, stop, target, names, converters, pk_index, parent_index, key in specs:
                related = None
                if row[start + pk_index] is not None:
                    related = _new(target)
                    data = dict(zip(names, row[start:stop]))
                    for index, name, convert in converters:
                        if row[start + index] is not None:
                            data[name] = convert(row[start + index])
                    related.__dict__ = data
                parent = objs[parent_index]
                if parent is not None:
                    parent.__dict__[key] = related
                objs.append(related)
            out.append(obj)
        return out

    return select, "".join(joins), make_rows


def _chunks(keys: list) -> list[list]:
    return [keys[i:i + PREFETCH_CHUNK] for i in range(0, len(keys), PREFETCH_CHUNK)]


def _descriptor(model: type, name: str) -> Any:
    try:
        return inspect.getattr_static(model, name)
    except AttributeError:
        raise ConfigurationError(f"prefetch_related: {model.__name__} has no relation "
                                 f"{name!r}") from None


def prefetch(db: Any, objects: list, paths: tuple) -> None:
    """Fill relations of ``objects`` (all of one model): one query per relation and level."""
    from fluxon.database.query import Select
    nested: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition("__")
        nested.setdefault(head, [])
        if rest:
            nested[head].append(rest)
    model = type(objects[0])
    for name, rest in nested.items():
        descriptor = _descriptor(model, name)
        loader = getattr(descriptor, "prefetch_into", None)
        if loader is None:
            raise ConfigurationError(f"prefetch_related: {model.__name__}.{name} is not a "
                                     "relation")
        related = loader(lambda target: Select(db, target), objects, name)
        if rest and related:
            prefetch(db, related, tuple(rest))


def group_rows(rows: list, key_name: str) -> dict[Any, list]:
    """Rows by the value of one attribute (the key that links them to their parent)."""
    groups: dict[Any, list] = {}
    for row in rows:
        groups.setdefault(row.__dict__[key_name], []).append(row)
    return groups


def fetch_in(select: Any, column: Any, keys: list) -> list:
    """Rows of ``select`` whose ``column`` is one of ``keys`` (in chunks of PREFETCH_CHUNK)."""
    rows: list = []
    for chunk in _chunks(keys):
        rows.extend(select.where(column.in_(chunk)).all())
    return rows
