"""Managers of related rows: ``teacher.course_set``, ``student.courses``, ``course.students``.

A manager is a query (``Select``) of the related rows, so ``teacher.course_set.where(...)
.order_by(...).count()`` chains as any query does, and it also behaves like the list of
those rows (iteration, ``len``, indexing, ``==`` with a list), which is what these
attributes returned in the original API. Rows loaded by ``prefetch_related`` are served
from memory by ``all()``, iteration and ``len``; a further ``where()`` queries again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fluxon.database.query import Select
from fluxon.errors import ConfigurationError

__all__ = ["RelatedManager", "ReverseManager", "ManyToManyManager", "bound_database"]


def bound_database(model: type) -> Any:
    """The database ``model`` is bound to, or a ConfigurationError saying how to bind it."""
    db = model._meta.database
    if db is None:
        raise ConfigurationError(
            f"{model.__name__} is not bound to a database: create SqliteDatabase(path, "
            f"models=[{model.__name__}, ...]) first (the worker does this for the Router's models)")
    return db


class RelatedManager(Select):
    """The rows related to one instance: a query that also acts as their list."""

    def __init__(self, instance: Any, model: type, condition: Any, joins: tuple = (),
                 prefetched: list | None = None) -> None:
        super().__init__(bound_database(model), model)
        self._where = condition
        self._joins = joins
        self.instance = instance
        self._prefetched = prefetched

    def all(self, where: Any = None) -> list:  # type: ignore[override]
        """The related rows (optionally filtered by ``where``)."""
        if where is not None:
            return self.where(where).all()
        if self._prefetched is not None:
            return [*self._prefetched]
        return Select.all(self)

    list = all

    def __iter__(self):
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._prefetched) if self._prefetched is not None else self.count()

    def __bool__(self) -> bool:
        return bool(self._prefetched) if self._prefetched is not None else bool(self.exists())

    def __getitem__(self, index: Any) -> Any:
        if self._prefetched is not None:
            return self._prefetched[index]
        return Select.__getitem__(self, index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return self.all() == [*other]
        return NotImplemented

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model.__name__} of {self.instance!r}>"


class ReverseManager(RelatedManager):
    """``teacher.course_set``: rows whose foreign key points at this instance."""

    def __init__(self, instance: Any, fk: Any, name: str) -> None:
        self.fk = fk
        self.key = instance.__dict__.get(fk.rel_field.name)
        super().__init__(instance, fk.model, fk == self.key,
                         prefetched=instance.__dict__.get("_prefetch_" + name))

    def create(self, **values: Any) -> Any:
        """Create a related row pointing at this instance and return it."""
        return self.fk.model.create(**{self.fk.name: self.instance, **values})

    def add(self, *objects: Any) -> int:
        """Point the foreign key of saved ``objects`` at this instance (one UPDATE)."""
        fk, model = self.fk, self.fk.model
        for obj in objects:
            if not isinstance(obj, model) or obj.pk is None:
                raise ConfigurationError(f"add() takes saved {model.__name__} objects, not {obj!r}")
            setattr(obj, fk.name, self.instance)
        keys = [obj.pk for obj in objects]
        return self.db.update(model, {fk: self.key}, model._meta.pk.in_(keys)) if keys else 0


class ManyToManyManager(RelatedManager):
    """``student.courses`` (or the reverse, ``course.students``): add, remove, clear, set
    and query the linked rows."""

    def __init__(self, instance: Any, field: Any, *, reverse: bool = False, name: str = "") -> None:
        if field.through_model is None:
            raise ConfigurationError(f"{field!r} refers to a model that is not defined")
        self.field = field
        if reverse:
            self.mine, self.other, target = field.target_fk, field.source_fk, field.model
        else:
            self.mine, self.other, target = field.source_fk, field.target_fk, field.rel_model
        self.target = target
        join = ("INNER JOIN", field.through_model, self.other == target._meta.pk)
        super().__init__(instance, target, self.mine == instance.pk, (join,),
                         prefetched=instance.__dict__.get("_prefetch_" + (name or field.name)))

    def _key(self, obj: Any) -> Any:
        return obj.pk if isinstance(obj, self.target) else obj

    def add(self, *objects: Any, **extra: Any) -> int:
        """Link ``objects`` (instances or primary keys) not linked yet; ``extra`` fills
        through-model fields. Returns how many links were added."""
        through, own = self.field.through_model, self.instance.pk
        keys = [*dict.fromkeys(self.other.to_storage(self._key(o)) for o in objects)]
        if not keys:
            return 0
        with self.db.atomic():
            linked = Select(self.db, through, (self.other,)).where(
                (self.mine == own) & self.other.in_(keys)).dicts().all()
            present = {row[self.other.name] for row in linked}
            rows = [{self.mine: own, self.other: k, **extra} for k in keys if k not in present]
            return self.db.insert_many(through, rows) if rows else 0

    def remove(self, *objects: Any) -> int:
        """Unlink ``objects``; returns how many links were removed."""
        keys = [self._key(o) for o in objects]
        return self.db.delete(self.field.through_model,
                              (self.mine == self.instance.pk) & self.other.in_(keys))

    def clear(self) -> int:
        return self.db.delete(self.field.through_model, self.mine == self.instance.pk)

    def set(self, objects: Iterable[Any]) -> None:
        """Replace the links with exactly ``objects``, in one transaction."""
        with self.db.atomic():
            self.clear()
            self.add(*objects)
