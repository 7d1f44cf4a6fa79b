"""Relations between models: foreign keys, one-to-one and many-to-many fields.

``on_delete`` rules are written into the DDL and enforced by SQLite (foreign keys are
always on). ``ManyToManyManager`` is what ``student.courses`` returns on an instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fluxon.database.fields import NO_DEFAULT, AutoField, Field, IntegerField, field_counter
from fluxon.errors import ConfigurationError

__all__ = ["ForeignKey", "OneToOneField", "ManyToManyField", "ManyToManyManager", "ReverseAccessor",
           "bound_database", "CASCADE", "PROTECT", "SET_NULL", "SET_DEFAULT", "RESTRICT",
           "NO_ACTION"]

CASCADE = "CASCADE"
PROTECT = "PROTECT"          # SQLite spelling: RESTRICT (checked at once, even inside a transaction)
SET_NULL = "SET NULL"
SET_DEFAULT = "SET DEFAULT"
RESTRICT = "RESTRICT"
NO_ACTION = "NO ACTION"
_ON_DELETE = {CASCADE, PROTECT, SET_NULL, SET_DEFAULT, RESTRICT, NO_ACTION}


def bound_database(model: type) -> Any:
    """The database ``model`` is bound to, or a ConfigurationError saying how to bind it."""
    db = model._meta.database
    if db is None:
        raise ConfigurationError(
            f"{model.__name__} is not bound to a database: create SqliteDatabase(path, "
            f"models=[{model.__name__}, ...]) first (the worker does this for the Router's models)")
    return db


class ForeignKey(Field):
    """A reference to another model's primary key; ``on_delete`` is enforced by SQLite.

    ``to_table`` is a model class, a model's name (forward reference) or ``"self"``.
    The column is ``<name>_id``; the attribute holds the referenced primary key value.
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
        if on_delete == SET_DEFAULT and self.default is NO_DEFAULT:
            raise ConfigurationError("on_delete=SET_DEFAULT needs a default on the ForeignKey")
        self.to_table = to_table
        self.on_delete = on_delete
        self.related_name = related_name
        self.rel_model: type | None = None
        self.index = self.index or not (self.unique or self.primary_key)

    def bind(self, model: type, name: str) -> None:
        super().bind(model, name)
        self.column = self.column_name or f"{name}_id"

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


class OneToOneField(ForeignKey):
    """A unique foreign key (often the primary key, extending another model)."""

    def __init__(self, to_table: Any, on_delete: str = CASCADE, **kwargs: Any) -> None:
        kwargs.setdefault("unique", not kwargs.get("primary_key", False))
        super().__init__(to_table, on_delete, **kwargs)


class ManyToManyField:
    """Links between two models, through a named model or an automatic join table.

    Not a column: the links live in the join table. On an instance the attribute is a
    manager with ``add``, ``remove``, ``clear``, ``set`` and ``all``.
    """

    is_relation = True

    def __init__(self, to_table: Any, through: Any = None) -> None:
        self.to_table = to_table
        self.through = through
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

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model else "?"
        return f"<ManyToManyField {owner}.{self.name}>"


class ManyToManyManager:
    """``student.courses``: add, remove, clear, set and list the linked rows."""

    def __init__(self, instance: Any, field: Any) -> None:
        if field.through_model is None:
            raise ConfigurationError(f"{field!r} refers to a model that is not defined")
        self.instance = instance
        self.field = field

    def _db(self) -> Any:
        return bound_database(type(self.instance))

    def _key(self, obj: Any) -> Any:
        target = self.field.rel_model
        return obj.pk if isinstance(obj, target) else obj  # type: ignore[arg-type]

    def add(self, *objects: Any, **extra: Any) -> int:
        """Link ``objects`` (instances or primary keys); ``extra`` fills through-model fields."""
        field, own = self.field, self.instance.pk
        rows = [{field.source_fk: own, field.target_fk: self._key(o), **extra} for o in objects]
        return self._db().insert_many(field.through_model, rows)

    def remove(self, *objects: Any) -> int:
        """Unlink ``objects``; returns how many links were removed."""
        field = self.field
        keys = [self._key(o) for o in objects]
        return self._db().delete(field.through_model,
                                 (field.source_fk == self.instance.pk) & field.target_fk.in_(keys))

    def clear(self) -> int:
        field = self.field
        return self._db().delete(field.through_model, field.source_fk == self.instance.pk)

    def set(self, objects: Iterable[Any]) -> None:
        """Replace the links with exactly ``objects``, in one transaction."""
        with self._db().atomic():
            self.clear()
            self.add(*objects)

    def all(self, where: Any = None) -> list[Any]:
        """The linked rows of the target model (optionally filtered)."""
        field = self.field
        target = field.rel_model
        query = self._db().select(target).join(field.through_model, on=(
            field.target_fk == field.rel_model._meta.pk)).where(  # type: ignore[union-attr]
            field.source_fk == self.instance.pk)
        if where is not None:
            query = query.where(where)
        return query.all()

    list = all

    def __iter__(self):
        return iter(self.all())

    def __len__(self) -> int:
        field = self.field
        return self._db().count(field.through_model, field.source_fk == self.instance.pk)


class ReverseAccessor:
    """``teacher.courses`` for ``ForeignKey(Teacher, related_name="courses")``: the rows
    pointing at this one, as a list (read on every access; nothing is cached)."""

    def __init__(self, fk: ForeignKey) -> None:
        self.fk = fk

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        fk = self.fk
        value = instance.__dict__.get(fk.rel_field.name)
        return bound_database(owner).check(fk.model, fk == value)
