"""Working with rows beyond one table: many-to-many managers and portable rows.

``ManyToManyManager`` is what ``student.courses`` returns; ``Row`` is what a pickled model
instance becomes where its model class cannot be imported (e.g. on a client).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from fluxon.errors import ConfigurationError

__all__ = ["ManyToManyManager", "Row", "bound_database", "rebuild_row"]


def bound_database(model: type) -> Any:
    """The database ``model`` is bound to, or a ConfigurationError saying how to bind it."""
    db = model._meta.database
    if db is None:
        raise ConfigurationError(
            f"{model.__name__} is not bound to a database: create SqliteDatabase(path, "
            f"models=[{model.__name__}, ...]) first (the worker does this for the Router's models)")
    return db


class Row(dict):
    """A row whose model class cannot be imported where it was unpickled (e.g. on a client).

    A dict that also allows attribute access, plus ``to_dict()`` and ``model_name``.
    """

    model_name = ""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self):
        return (_make_row, (self.model_name, dict(self)))


def _make_row(model_name: str, data: dict) -> Row:
    row = Row(data)
    row.model_name = model_name
    return row


def rebuild_row(module: str, qualname: str, data: dict) -> Any:
    """Unpickle a model instance; fall back to :class:`Row` where the model is unknown."""
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        return _make_row(qualname, data)
    if not (isinstance(cls, type) and hasattr(cls, "_meta")):
        return _make_row(qualname, data)
    obj = cls.__new__(cls)
    obj.__dict__.update(data)
    return obj


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
