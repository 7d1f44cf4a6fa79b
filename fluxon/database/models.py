"""Models: classes whose fields map to the columns of one SQLite table.

A metaclass gathers the fields in declaration order (adding ``id`` when no field is the
primary key), resolves references by name (``"self"``, or a model defined later), and
creates the join table of a many-to-many field without ``through``. Class-level methods
(``User.insert``, ``User.check``...) run on the database the model is bound to
(``SqliteDatabase(path, models=[...])``); instances are plain objects whose ``__dict__``
holds the row, so they are cheap to build and picklable.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from types import MethodType
from typing import Any

from fluxon.database.aliases import ModelAlias, model_alias
from fluxon.database.fields import (
    AutoField, BigIntegerField, BinaryField, BooleanField, CharField, DecimalField, Field,
    FloatField, IntegerField, JSONField, PasswordField, PositiveIntegerField, TextField, UUIDField,
)
from fluxon.database.passwords import hash_password, password_needs_update, verify_password
from fluxon.database.relations import (
    CASCADE, NO_ACTION, PROTECT, RESTRICT, SET_DEFAULT, SET_NULL, ForeignKey, ManyToManyField,
    ManyToManyManager, OneToOneField, ReverseAccessor, bound_database,
)
from fluxon.database.cleaning import full_clean, validate_data
from fluxon.database.registry import model_by_name, register_model
from fluxon.database.rows import Row, rebuild_row
from fluxon.database.temporal_fields import DateField, DateTimeField, TimeField
from fluxon.database.validators import (
    MaxLengthValidator, MaxValueValidator, MinLengthValidator, MinValueValidator, RegexValidator,
    validate_email, validate_slug, validate_url,
)
from fluxon.database.web_fields import EmailField, SlugField, URLField
from fluxon.errors import ConfigurationError, ValidationError

__all__ = [
    "Model", "AuthorizedUser", "Metadata", "Row", "ManyToManyManager", "collect_models",
    "model_by_name",
    "Field", "AutoField", "CharField", "TextField", "IntegerField", "BigIntegerField",
    "PositiveIntegerField", "FloatField", "DecimalField", "BooleanField", "DateField",
    "TimeField", "DateTimeField", "BinaryField", "JSONField", "UUIDField", "PasswordField",
    "EmailField", "URLField", "SlugField",
    "MinValueValidator", "MaxValueValidator", "MinLengthValidator", "MaxLengthValidator",
    "RegexValidator", "validate_email", "validate_url", "validate_slug",
    "ForeignKey", "OneToOneField", "ManyToManyField",
    "CASCADE", "PROTECT", "SET_NULL", "SET_DEFAULT", "RESTRICT", "NO_ACTION",
]

security_log = logging.getLogger("fluxon.security")

_CREATION = itertools.count()
_META_OPTIONS = {"table_name", "renamed_from", "abstract", "indexes", "unique_together",
                 "ordering", "db_table"}


class Metadata:
    """Everything Fluxon knows about one model (``Model._meta``)."""

    def __init__(self, model: type, table_name: str, fields: list[Field], *,
                 renamed_from: str | None, abstract: bool, indexes: tuple, unique_together: tuple,
                 ordering: tuple, auto_created: bool = False) -> None:
        self.model = model
        self.table_name = table_name
        self.fields = fields
        self.renamed_from = renamed_from
        self.abstract = abstract
        self.indexes = indexes
        self.unique_together = unique_together
        self.ordering = ordering
        self.auto_created = auto_created
        self.many_to_many: list[ManyToManyField] = []
        self.reverse_relations: list[ForeignKey] = []
        self.database: Any = None
        self.creation_order = next(_CREATION)
        self.generation = 0                       # see _register
        self.pk: Field = next(f for f in fields if f.primary_key) if fields else None  # type: ignore
        self.refresh()

    def refresh(self) -> None:
        """Recompute lookups and drop compiled-statement caches (after fields change)."""
        self.by_name: dict[str, Field] = {f.name: f for f in self.fields}
        self.by_key: dict[Any, Field] = dict(self.by_name)
        for field in self.fields:
            self.by_key.setdefault(field.column, field)
        self.names = tuple(f.name for f in self.fields)
        self.columns = tuple(f.column for f in self.fields)
        self.cache: dict[Any, Any] = {}          # column set -> compiled select list
        self.insert_plans: dict[tuple, Any] = {}  # data keys -> compiled INSERT

    def field(self, key: Any) -> Field:
        """The field for a key of a data dict (a Field of this model, or its name/column)."""
        if isinstance(key, Field):
            if key.model is self.model or self.by_name.get(key.name) is key:
                return key
            raise ValidationError(f"{key!r} is not a field of {self.model.__name__}",
                                  details={"field": str(key.name), "model": self.model.__name__})
        field = self.by_key.get(key) if isinstance(key, str) else None
        if field is None:
            shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
            security_log.warning("rejected unknown field %s for model %s", shown,
                                 self.model.__name__)
            raise ValidationError(f"{self.model.__name__} has no field {shown}",
                                  details={"field": str(key)[:200], "model": self.model.__name__})
        return field


class ModelBase(type):
    """Builds ``_meta`` for each model class and wires its fields."""

    def __new__(mcs, name: str, bases: tuple, attrs: dict[str, Any]):
        meta_class = attrs.pop("Meta", None)
        options = {k: v for k, v in vars(meta_class).items() if not k.startswith("_")} \
            if meta_class else {}
        unknown = set(options) - _META_OPTIONS
        if unknown:
            raise ConfigurationError(f"{name}.Meta: unknown option(s) {sorted(unknown)}")
        own = sorted(((k, v) for k, v in attrs.items() if isinstance(v, (Field, ManyToManyField))),
                     key=lambda item: item[1]._order)
        for key, _ in own:
            del attrs[key]
        cls = super().__new__(mcs, name, bases, attrs)
        if not any(isinstance(base, ModelBase) for base in bases):
            return cls  # Model itself
        inherited: list[tuple[str, Any]] = []
        for base in bases:
            base_meta = getattr(base, "_meta", None)
            if base_meta is None:
                continue
            inherited += [(f.name, f.clone()) for f in base_meta.fields
                          if not (isinstance(f, AutoField) and f.name == "id")]
            inherited += [(m.name, m.clone()) for m in base_meta.many_to_many]
        own_names = {k for k, _ in own}
        clashes = sorted(k for k in own_names if k.startswith("_") or any(
            k in vars(base) and not isinstance(vars(base)[k], (Field, ManyToManyField))
            for base in cls.__mro__[1:] if base is not object))
        if clashes:
            raise ConfigurationError(
                f"{name}: field name(s) {clashes} clash with Model's own attributes; use another "
                f"attribute name and column_name=... to keep the column's name")
        declared = [(k, v) for k, v in inherited if k not in own_names] + own
        if any(getattr(base, "_is_authorized_user", False) for base in cls.__mro__):
            declared = [(k, _as_password_field(v)) if k == "password" else (k, v)
                        for k, v in declared]
        columns = [(k, v) for k, v in declared if isinstance(v, Field)]
        if not any(f.primary_key for _, f in columns):
            columns.insert(0, ("id", AutoField()))
        if sum(1 for _, f in columns if f.primary_key) > 1:
            raise ConfigurationError(f"{name}: only one field may be the primary key")
        many_to_many = [(k, v) for k, v in declared if isinstance(v, ManyToManyField)]
        for key, field in columns + many_to_many:   # bound first, so Metadata sees final names
            field.bind(cls, key)
            setattr(cls, key, field)
        table_name = options.get("table_name") or options.get("db_table") or name
        cls._meta = Metadata(
            cls, table_name, [f for _, f in columns],
            renamed_from=options.get("renamed_from"),
            abstract=bool(options.get("abstract", False)),
            indexes=tuple(tuple(i) for i in options.get("indexes", ())),
            unique_together=tuple(tuple(u) for u in options.get("unique_together", ())),
            ordering=tuple(options.get("ordering", ())),
            auto_created=bool(attrs.get("_auto_created", False)))
        cls._meta.many_to_many.extend(field for _, field in many_to_many)
        if cls._meta.abstract:
            return cls
        register_model(cls)
        return cls

    def __getattr__(cls, name: str) -> Any:
        # Capitalised spellings of class-level methods (User.Insert is User.insert).
        if name[:1].isupper() and name.lower() in _CLASS_ALIASES:
            return getattr(cls, name.lower())
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


_CLASS_ALIASES = {"insert", "update", "delete", "check", "count", "exists", "get", "select",
                  "bulk_insert", "create", "insert_many"}


def _as_password_field(field: Any) -> Any:
    if isinstance(field, PasswordField) or not isinstance(field, CharField):
        return field
    replacement = PasswordField(max_length=field.max_length, null=field.null)
    replacement._order = field._order
    return replacement


class Model(metaclass=ModelBase):
    """Base class of every model. Subclass it and declare fields as class attributes."""

    _meta: Metadata

    def __init__(self, **values: Any) -> None:
        meta = self._meta
        unknown = [k for k in values if k not in meta.by_key]
        if unknown:
            raise ValidationError(f"{type(self).__name__} has no field {unknown[0]!r}",
                                  details={"field": str(unknown[0])[:200]})
        data = self.__dict__
        for field in meta.fields:
            if field.name in values:
                data[field.name] = values[field.name]
            elif field.column in values:
                data[field.name] = values[field.column]
            else:
                data[field.name] = field.get_default()

    # -- instance helpers -----------------------------------------------------------------
    @property
    def pk(self) -> Any:
        return self.__dict__.get(self._meta.pk.name)

    #: fields left out of to_dict() and pickles unless asked for (AuthorizedUser: the hash)
    _private_fields: tuple[str, ...] = ()

    def to_dict(self, *, include_private: bool = False) -> dict[str, Any]:
        """The loaded fields as a plain dict (what a view returns to a client).

        Private fields (a user's password hash) are left out unless ``include_private``.
        """
        hidden = () if include_private else self._private_fields
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in hidden}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pk!r}>"

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True   # an unsaved instance (no pk yet) is still equal to itself
        return (type(other) is type(self) and self.pk is not None
                and self.pk == other.pk)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.pk))

    def __reduce__(self):
        return (rebuild_row, (type(self).__module__, type(self).__qualname__,
                               self.to_dict()))

    def save(self) -> Any:
        """Insert the row (no primary key yet, or none in the table) or update it; returns pk."""
        db = bound_database(type(self))
        return db._save(self)

    def delete_instance(self) -> int:
        """Delete this row (``obj.delete()`` is the same); foreign keys' on_delete rules apply."""
        meta = self._meta
        if self.pk is None:
            raise ConfigurationError(f"this {type(self).__name__} is not saved: it has no "
                                     f"{meta.pk.name} to delete by")
        return bound_database(type(self)).delete(type(self), meta.pk == self.pk)

    def full_clean(self) -> None:
        """Validate every field of this instance; one ValidationError (``.errors``) lists all."""
        full_clean(self)

    def refresh(self) -> "Model":
        """Reload the row from the database into this instance."""
        fresh = type(self).get(self._meta.pk == self.pk)
        self.__dict__.update(fresh.__dict__)
        return self

    def follow(self, field_name: str) -> "Model | None":
        """The object a ForeignKey of this row points to (None when the key is NULL)."""
        field = self._meta.by_name.get(field_name)
        if not isinstance(field, ForeignKey):
            raise ConfigurationError(f"{type(self).__name__}.{field_name} is not a ForeignKey")
        value = self.__dict__.get(field.name)
        if value is None:
            return None
        target = field.rel_model
        return bound_database(type(self)).get(target, field.rel_field == value)

    def related(self, model: type["Model"], field: str | None = None) -> list["Model"]:
        """Rows of ``model`` whose ForeignKey points at this row (the reverse of follow)."""
        fks = [f for f in model._meta.fields if isinstance(f, ForeignKey)
               and f.rel_model is type(self) and (field is None or f.name == field)]
        if len(fks) != 1:
            raise ConfigurationError(f"{model.__name__} has {len(fks)} ForeignKeys to "
                                     f"{type(self).__name__}; name one with field=")
        return ReverseAccessor(fks[0]).__get__(self, type(self))

    # -- class-level API (runs on the bound database) ------------------------------------
    @classmethod
    def insert(cls, data: Mapping[Any, Any] | None = None, **values: Any) -> Any:
        """Insert one row from a dict (keys: fields or field names); returns its primary key.

        Keyword arguments are fields too; one that is not (``hits=5``) is a ValidationError.
        """
        if values or data is None:
            return bound_database(cls).insert(cls, data, **values)
        return bound_database(cls)._insert(cls, data)

    @classmethod
    def validate(cls, data: Mapping[Any, Any]) -> dict[str, Any]:
        """Check a dict meant for ``insert`` (unknown keys, bad values, missing required
        fields) and report all problems in one ValidationError; returns it keyed by name."""
        return validate_data(cls, data)

    @classmethod
    def insert_many(cls, rows: Iterable[Mapping[Any, Any]], *, returning: bool = False) -> Any:
        """Insert many rows in one transaction; returns how many (``returning``: their keys)."""
        return bound_database(cls).insert_many(cls, rows, returning=returning)

    @classmethod
    def upsert(cls, data: Mapping[Any, Any], *, conflict: Iterable[Any],
               update: Iterable[Any] | None = None) -> Any:
        """Insert, or update the row ``data`` conflicts with on ``conflict``; returns its key."""
        return bound_database(cls).upsert(cls, data, conflict=conflict, update=update)

    @classmethod
    def get_or_create(cls, defaults: Mapping[str, Any] | None = None,
                      **lookup: Any) -> tuple["Model", bool]:
        """``(row, created)``: the row matching ``lookup``, or a new one (race-safe)."""
        return bound_database(cls).get_or_create(cls, defaults, **lookup)

    @classmethod
    def update_or_create(cls, defaults: Mapping[str, Any] | None = None,
                         **lookup: Any) -> tuple["Model", bool]:
        """``(row, created)``: the row matching ``lookup`` updated with ``defaults``, or a new one."""
        return bound_database(cls).update_or_create(cls, defaults, **lookup)

    bulk_insert = insert_many

    @classmethod
    def create(cls, **values: Any) -> "Model":
        """Build an instance, insert it and return it (with its primary key set)."""
        obj = cls(**values)
        obj.save()
        return obj

    @classmethod
    def update(cls, data: Mapping[Any, Any], where: Any = None, *, all: bool = False) -> int:
        """Update matching rows; returns how many changed. No where needs ``all=True``."""
        return bound_database(cls).update(cls, data, where, all=all)

    def _delete_rows(cls, *args: Any, all: bool = False) -> int:  # noqa: A002 - the original keyword
        """Delete matching rows; returns how many. No where needs ``all=True``."""
        return bound_database(cls).delete(cls, *args, all=all)

    @classmethod
    def check(cls, where: Any = None, fetch: int | None = None, **options: Any) -> list[Any]:
        """Rows matching ``where`` (all of them, or the first ``fetch``), as a list."""
        return bound_database(cls).check(cls, where, fetch, **options)

    @classmethod
    def select(cls, *columns: Any) -> Any:
        """A chainable query: ``User.select().where(...).order_by(...).limit(n)``."""
        return bound_database(cls).select(cls, *columns)

    @classmethod
    def alias(cls, name: str) -> ModelAlias:
        """The model under another name in one query (self-joins): ``Person.alias("boss")``."""
        return model_alias(cls, name)

    @classmethod
    def get(cls, where: Any = None, **equal: Any) -> "Model":
        """Exactly one row, or DoesNotExist / MultipleObjectsReturned."""
        return bound_database(cls).get(cls, where, **equal)

    @classmethod
    def count(cls, where: Any = None) -> int:
        return bound_database(cls).count(cls, where)

    @classmethod
    def exists(cls, where: Any = None) -> bool:
        return bound_database(cls).exists(cls, where)


class _ClassOrInstance:
    """``User.delete(where)`` deletes matching rows; ``user.delete()`` deletes that row."""

    def __init__(self, on_class: Any, on_instance: Any) -> None:
        self.on_class, self.on_instance = on_class, on_instance
        self.__doc__ = on_class.__doc__

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return MethodType(self.on_class, owner)
        return MethodType(self.on_instance, instance)


Model.delete = _ClassOrInstance(Model.__dict__["_delete_rows"], Model.delete_instance)  # type: ignore[assignment]
del Model._delete_rows


class AuthorizedUser(Model):
    """A model the session layer can log in as; its ``password`` only ever holds scrypt hashes."""

    _is_authorized_user = True
    _private_fields = ("password",)
    password = PasswordField(max_length=255)

    class Meta:
        abstract = True

    def set_password(self, raw_password: str) -> None:
        """Hash ``raw_password`` (salted scrypt) into ``self.password``; call save() to store it."""
        self.__dict__["password"] = hash_password(raw_password)

    def check_password(self, raw_password: str) -> bool:
        """True when ``raw_password`` matches the stored hash (constant-time comparison).

        A match against a hash made with older scrypt parameters re-hashes the password with
        the current ones and stores it (Django's ``must_update``).
        """
        encoded = self.__dict__.get("password")
        if not verify_password(raw_password, encoded):
            return False
        if password_needs_update(encoded):
            self.set_password(raw_password)
            if self.pk is not None:
                type(self).update({"password": self.__dict__["password"]}, self._meta.pk == self.pk)
        return True


from fluxon.database.collect import collect_models  # noqa: E402 - it needs Model defined
