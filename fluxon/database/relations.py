"""Relations between models: foreign keys, one-to-one and many-to-many fields.

``on_delete`` rules are written into the DDL and enforced by SQLite (foreign keys are
always on). On an instance, ``course.teacher`` is the related Teacher (read on first
access, then cached; ``select_related`` fills it in advance) and ``course.teacher_id``
the key; the instance dict keeps the key under the field's name, so rows, ``to_dict()``
and pickles look as they always did. ``teacher.course_set`` (or the ``related_name``),
``student.courses`` and its reverse side are managers (``managers.py``).
"""

from __future__ import annotations

import inspect
from typing import Any

from fluxon.database.eager import fetch_in, group_rows
from fluxon.database.fields import NO_DEFAULT, AutoField, Field, IntegerField, field_counter
from fluxon.database.managers import ManyToManyManager, ReverseManager, bound_database
from fluxon.errors import ConfigurationError, ValidationError

__all__ = ["ForeignKey", "OneToOneField", "ManyToManyField", "ManyToManyManager", "ReverseAccessor",
           "ReverseManager", "ManyToManyReverse", "add_reverse_accessors", "bound_database",
           "CASCADE", "PROTECT", "SET_NULL", "SET_DEFAULT", "RESTRICT",
           "NO_ACTION"]

CASCADE = "CASCADE"
PROTECT = "PROTECT"          # SQLite spelling: RESTRICT (checked at once, even inside a transaction)
SET_NULL = "SET NULL"
SET_DEFAULT = "SET DEFAULT"
RESTRICT = "RESTRICT"
NO_ACTION = "NO ACTION"
_ON_DELETE = {CASCADE, PROTECT, SET_NULL, SET_DEFAULT, RESTRICT, NO_ACTION}


class ForeignKey(Field):
    """A reference to another model's primary key; ``on_delete`` is enforced by SQLite.

    ``to_table`` is a model class, a model's name (forward reference) or ``"self"``.
    The column is ``<name>_id``. On an instance, ``obj.<name>`` is the related object
    (None for a NULL key) and ``obj.<name>_id`` the key; assigning either keeps both in step.
    """

    is_relation = True

    def __init__(self, to_table: Any, on_delete: str = CASCADE, *, related_name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        on_delete = on_delete.upper().replace("_", " ") if isinstance(on_delete, str) else on_delete
        if on_delete not in _ON_DELETE:
            raise ConfigurationError(f"on_delete must be one of CASCADE, PROTECT, SET_NULL, "
                                     f"SET_DEFAULT, RESTRICT, NO_ACTION, not {on_delete!r}")
        if on_delete == SET_NULL and not self.null:
            raise ConfigurationError("on_delete=SET_NULL needs null=True on the ForeignKey")
        if on_delete == SET_DEFAULT and (self.default is NO_DEFAULT or callable(self.default)):
            # SQLite applies the column's DEFAULT, which a callable cannot be
            raise ConfigurationError("on_delete=SET_DEFAULT needs a constant default on the "
                                     "ForeignKey (SQLite cannot call a function on delete)")
        self.to_table = to_table
        self.on_delete = on_delete
        self.related_name = related_name
        self.rel_model: type | None = None
        self.index = self.index or not (self.unique or self.primary_key)
        self.cache_key = ""

    def bind(self, model: type, name: str) -> None:
        super().bind(model, name)
        self.column = self.column_name or f"{name}_id"
        self.cache_key = "_cache_" + name   # where the loaded related object is kept
        key_name = f"{name}_id"
        if not isinstance(vars(model).get(key_name), Field):
            setattr(model, key_name, ForeignKeyId(self))

    @property
    def rel_field(self) -> Field:
        if self.rel_model is None:
            raise ConfigurationError(f"{self!r} refers to {self.to_table!r}, which is not defined")
        return self.rel_model._meta.pk

    @property
    def sql_type(self) -> str:  # type: ignore[override]
        rel = self.rel_field
        return "INTEGER" if isinstance(rel, (AutoField, IntegerField)) else rel.sql_type

    @property
    def python_value(self):  # type: ignore[override]
        return self.rel_field.python_value

    def to_storage(self, value: Any) -> Any:
        meta = getattr(value, "_meta", None)
        if meta is not None:
            if self.rel_model is not None and not isinstance(value, self.rel_model):
                raise self.fail(value, f"expects a {self.rel_model.__name__} or its key")
            value = getattr(value, meta.pk.name)
            if value is None:
                raise self.fail(value, "refers to an object that is not saved yet")
        return self.rel_field.to_storage(value)

    # -- on instances --------------------------------------------------------------------
    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        data = instance.__dict__
        if self.name not in data:
            return Field.__get__(self, instance, owner)   # not among the selected columns
        key = data[self.name]
        if key is None or hasattr(key, "_meta"):
            return key
        cached = data.get(self.cache_key)
        pk_name = self.rel_field.name
        if cached is not None and cached.__dict__.get(pk_name) == key:
            return cached
        from fluxon.database.query import Select
        related = Select(bound_database(self.rel_model), self.rel_model).where(
            self.rel_field == key).get()
        data[self.cache_key] = related
        return related

    def __set__(self, instance: Any, value: Any) -> None:
        data = instance.__dict__
        if hasattr(value, "_meta"):
            if self.rel_model is not None and not isinstance(value, self.rel_model):
                raise self.fail(value, f"expects a {self.rel_model.__name__} or its key")
            key = value.__dict__.get(value._meta.pk.name)
            data[self.name] = value if key is None else key   # unsaved: its key once saved
            data[self.cache_key] = value
        else:
            data[self.name] = value
            data.pop(self.cache_key, None)

    def prefetch_into(self, select_for: Any, objects: list, name: str) -> list:
        """Load the objects these rows point to (one query) and cache them on the rows."""
        keys = list({o.__dict__.get(self.name) for o in objects} - {None})
        rows = fetch_in(select_for(self.rel_model), self.rel_field, keys)
        by_key = {row.pk: row for row in rows}
        for obj in objects:
            obj.__dict__[self.cache_key] = by_key.get(obj.__dict__.get(self.name))
        return rows


class ForeignKeyId:
    """``course.teacher_id``: the key of a foreign key (``Course.teacher_id`` is the column)."""

    def __init__(self, fk: ForeignKey) -> None:
        self.fk = fk

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self.fk
        if self.fk.name not in instance.__dict__:
            return Field.__get__(self.fk, instance, owner)
        key = instance.__dict__[self.fk.name]
        return key.pk if hasattr(key, "_meta") else key

    def __set__(self, instance: Any, value: Any) -> None:
        if hasattr(value, "_meta"):
            raise ValidationError(f"{self.fk!r}: assign the object to .{self.fk.name}, its key to "
                                  f".{self.fk.name}_id", details={"field": self.fk.name})
        instance.__dict__[self.fk.name] = value   # a cached object with another key is ignored


class OneToOneField(ForeignKey):
    """A unique foreign key (often the primary key, extending another model)."""

    def __init__(self, to_table: Any, on_delete: str = CASCADE, **kwargs: Any) -> None:
        kwargs.setdefault("unique", not kwargs.get("primary_key", False))
        super().__init__(to_table, on_delete, **kwargs)


class ManyToManyField:
    """Links between two models, through a named model or an automatic join table.

    Not a column: the links live in the join table. On an instance the attribute is a
    manager (a query of the linked rows with ``add``, ``remove``, ``clear``, ``set``); the
    target model gets the reverse manager under ``related_name`` (default ``<model>_set``).
    """

    is_relation = True

    def __init__(self, to_table: Any, through: Any = None, *,
                 related_name: str | None = None) -> None:
        self.to_table = to_table
        self.through = through
        self.related_name = related_name
        self.rel_model: type | None = None
        self.through_model: type | None = None
        self.name = ""
        self.model: type | None = None
        self._order = next(field_counter)
        self.source_fk: ForeignKey | None = None
        self.target_fk: ForeignKey | None = None

    def bind(self, model: type, name: str) -> None:
        self.model = model
        self.name = name

    def clone(self) -> "ManyToManyField":
        copy = object.__new__(ManyToManyField)
        copy.__dict__.update(self.__dict__)
        copy.model = None
        copy.through_model = None if not isinstance(self.through, type) else self.through
        return copy

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return ManyToManyManager(instance, self)

    def prefetch_into(self, select_for: Any, objects: list, name: str) -> list:
        return _prefetch_links(self, False, select_for, objects, name)

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model else "?"
        return f"<ManyToManyField {owner}.{self.name}>"


class ManyToManyReverse:
    """``course.students`` for ``Student.courses = ManyToManyField(Course, related_name=
    "students")``: the reverse side's manager."""

    def __init__(self, field: ManyToManyField, name: str) -> None:
        self.field, self.name = field, name

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return ManyToManyManager(instance, self.field, reverse=True, name=self.name)

    def prefetch_into(self, select_for: Any, objects: list, name: str) -> list:
        return _prefetch_links(self.field, True, select_for, objects, name)


def _prefetch_links(field: ManyToManyField, reverse: bool, select_for: Any, objects: list,
                    name: str) -> list:
    """Linked rows of every object in one query, each stored in its object's manager."""
    mine, other, target = ((field.target_fk, field.source_fk, field.model) if reverse
                           else (field.source_fk, field.target_fk, field.rel_model))
    link = mine.alias("link")
    link.name = "_link"   # cannot clash with a field name
    query = select_for(target).join(field.through_model, on=other == target._meta.pk)
    query = query._clone(_columns=tuple(target._meta.fields) + (link,))
    keys = list({o.pk for o in objects} - {None})
    rows = fetch_in(query, mine, keys)
    groups = group_rows(rows, "_link")
    for row in rows:
        del row.__dict__["_link"]
    for obj in objects:
        obj.__dict__["_prefetch_" + name] = groups.get(obj.pk, [])
    return rows


class ReverseAccessor:
    """``teacher.course_set`` (or ``related_name``): the rows whose foreign key points at
    this one, as a manager (a query that also iterates, indexes and compares like a list)."""

    def __init__(self, fk: ForeignKey, name: str = "") -> None:
        self.fk = fk
        self.name = name or fk.related_name or f"{fk.model.__name__.lower()}_set"

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return ReverseManager(instance, self.fk, self.name)

    def prefetch_into(self, select_for: Any, objects: list, name: str) -> list:
        fk = self.fk
        pk_name = fk.rel_field.name
        keys = list({o.__dict__.get(pk_name) for o in objects} - {None})
        rows = fetch_in(select_for(fk.model), fk, keys)
        groups = group_rows(rows, fk.name)
        for obj in objects:
            obj.__dict__["_prefetch_" + name] = groups.get(obj.__dict__.get(pk_name), [])
        return rows


class _AmbiguousReverse:
    """A default reverse name two relations would share: reading it says what to do."""

    def __init__(self, name: str, owners: list[str]) -> None:
        self.name, self.owners = name, owners

    def __get__(self, instance: Any, owner: type) -> Any:
        raise ConfigurationError(f"{owner.__name__}.{self.name} is ambiguous ({', '.join(self.owners)}"
                                 " point here): give them related_name=...")


def _describe(descriptor: Any) -> tuple:
    relation = descriptor.fk if isinstance(descriptor, ReverseAccessor) else descriptor.field
    model = relation.model
    return (model.__module__, model.__qualname__, relation.name)


def _install(target: type, name: str, descriptor: Any, explicit: bool) -> None:
    existing = inspect.getattr_static(target, name, None)
    if isinstance(existing, (ReverseAccessor, ManyToManyReverse)) \
            and _describe(existing) == _describe(descriptor):
        existing = None   # the same model defined again (a reloaded module)
    if existing is None and name not in target._meta.by_name:
        setattr(target, name, descriptor)
    elif explicit:
        raise ConfigurationError(f"{descriptor.fk if hasattr(descriptor, 'fk') else descriptor.field!r}: "
                                 f"related_name {name!r} clashes with an attribute of "
                                 f"{target.__name__}")
    elif isinstance(existing, (ReverseAccessor, ManyToManyReverse, _AmbiguousReverse)):
        owners = existing.owners if isinstance(existing, _AmbiguousReverse) else [
            ".".join(_describe(existing)[1:])]
        setattr(target, name, _AmbiguousReverse(name, owners + [".".join(_describe(descriptor)[1:])]))


def add_reverse_accessors(relation: Any) -> None:
    """Give the target of a resolved relation its reverse manager (``course_set``,
    ``students``); a default name already taken by another attribute is left alone."""
    target = relation.rel_model
    default = f"{relation.model.__name__.lower()}_set"
    name = relation.related_name or default
    if isinstance(relation, ManyToManyField):
        descriptor: Any = ManyToManyReverse(relation, name)
    else:
        descriptor = ReverseAccessor(relation, name)
    _install(target, name, descriptor, explicit=relation.related_name is not None)
