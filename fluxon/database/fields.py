"""Model fields: each is a column node in query expressions and converts values both ways.

``db_value`` validates a Python value and returns its stored form (raising
``ValidationError`` that names the field); ``python_value`` turns a stored value back
into its Python type. Fields whose stored form is already the Python value set
``python_value = None`` so reading rows skips them entirely.
"""

from __future__ import annotations

import decimal
import itertools
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from fluxon.database.expressions import Context, _Column, quote
from fluxon.database.passwords import hash_password, is_password_hash
from fluxon.errors import ConfigurationError, ValidationError

__all__ = [
    "Field", "AutoField", "CharField", "TextField", "IntegerField", "BigIntegerField",
    "PositiveIntegerField", "FloatField", "DecimalField", "BooleanField", "BinaryField",
    "JSONField", "UUIDField", "PasswordField", "python_key",
]

field_counter = itertools.count()
NO_DEFAULT = object()


class Field(_Column):
    """A column of a model; also a node of query expressions (``User.name == 'x'``)."""

    sql_type = "TEXT"
    python_value: Callable[[Any], Any] | None = None
    is_relation = False
    default_validators: tuple[Callable[[Any], None], ...] = ()

    def __init__(self, *, primary_key: bool = False, unique: bool = False, null: bool = False,
                 default: Any = NO_DEFAULT, index: bool = False, choices: Any = None,
                 column_name: str | None = None, renamed_from: str | None = None,
                 help_text: str = "", validators: Iterable[Callable[[Any], None]] = ()) -> None:
        self.primary_key = primary_key
        self.unique = unique
        self.null = null
        self.default = default
        self.index = index
        self.choices = self._normalize_choices(choices)
        self.column_name = column_name
        self.renamed_from = renamed_from
        self.help_text = help_text
        self.validators = tuple(self.default_validators) + tuple(validators)
        if not all(callable(v) for v in self.validators):
            raise ConfigurationError("validators= takes callables that raise ValidationError")
        self.auto_now = False
        self.auto_now_add = False
        self.name: str = ""
        self.column: str = ""
        self.model: type | None = None
        self._order = next(field_counter)

    # -- wiring -------------------------------------------------------------------------
    def bind(self, model: type, name: str) -> None:
        """Attach the field to its model under attribute ``name``."""
        self.model = model
        self.name = name
        self.column = self.column_name or name

    def clone(self) -> "Field":
        """An unbound copy (inherited fields get one copy per subclass)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.model = None
        return copy

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        raise AttributeError(f"{owner.__name__}.{self.name} was not loaded for this row "
                             "(it was not among the selected columns)")

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model else "?"
        return f"<{type(self).__name__} {owner}.{self.name}>"

    def __reduce__(self):
        # Fields travel by reference to their model (e.g. inside a pickled query).
        return (getattr, (self.model, self.name))

    # -- defaults ------------------------------------------------------------------------
    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT or self.auto_now or self.auto_now_add

    def get_default(self) -> Any:
        """The default value (calling it when it is callable), or None."""
        if self.auto_now or self.auto_now_add:
            return self._now()
        default = self.default
        if default is NO_DEFAULT:
            return None
        return default() if callable(default) else default

    def _now(self) -> Any:
        raise ConfigurationError(f"{type(self).__name__} has no auto_now/auto_now_add")

    # -- conversion ----------------------------------------------------------------------
    def _normalize_choices(self, choices: Any) -> frozenset | None:
        if choices is None:
            return None
        values = []
        for choice in choices:
            values.append(choice[0] if isinstance(choice, (tuple, list)) and len(choice) == 2
                          else choice)
        return frozenset(values)

    def fail(self, value: Any, why: str) -> ValidationError:
        owner = self.model.__name__ if self.model else "?"
        return ValidationError(f"{owner}.{self.name}: {why} (got {type(value).__name__})",
                               details={"field": self.name, "model": owner, "reason": why})

    def db_value(self, value: Any) -> Any:
        """Validate ``value`` and return the form stored in SQLite."""
        if value is None:
            if self.null or self.primary_key:
                return None
            raise self.fail(value, "may not be None")
        stored = self.to_storage(value)
        if self.choices is not None and value not in self.choices:
            raise self.fail(value, f"{value!r} is not one of the allowed choices")
        if self.validators and value != "":
            self.run_validators(self._validated_form(value, stored))
        return stored

    def _validated_form(self, value: Any, stored: Any) -> Any:
        # Validators see the Python value (a Decimal, a date), not its stored text.
        return stored if self.python_value is None else self.python_value(stored)

    def run_validators(self, value: Any) -> None:
        """Run every validator on ``value``; one ValidationError lists all their messages."""
        messages = []
        for validator in self.validators:
            try:
                validator(value)
            except ValidationError as exc:
                messages.extend(exc.errors.get("__all__", [exc.message]))
            except (ValueError, TypeError) as exc:
                messages.append(str(exc) or type(exc).__name__)
        if messages:
            error = self.fail(value, "; ".join(messages))
            error.details["errors"] = {self.name: messages}
            raise error

    def to_storage(self, value: Any) -> Any:
        """Type conversion only (no null/choices checks); overridden per field type."""
        return value

    #: values of exactly this type are stored as they are (the insert fast path)
    stored_as_is: type | None = None

    def converter(self) -> Callable[[Any], Any]:
        """``db_value``, with a shortcut for values already in their stored type."""
        db_value = self.db_value
        plain = self.stored_as_is
        if plain is None or self.choices is not None or self.validators:
            return db_value
        limit = getattr(self, "max_length", None)
        if plain is str and limit is not None:
            def convert_text(value: Any) -> Any:
                return value if type(value) is str and len(value) <= limit else db_value(value)
            return convert_text

        def convert(value: Any) -> Any:
            return value if type(value) is plain else db_value(value)
        return convert

    def _convert_value(self, value: Any) -> Any:
        # Values compared with this column in a WHERE: converted without enforcing lengths,
        # and a value of the wrong type (``age == "abc"``) raises instead of matching nothing.
        return self._lenient(value)

    def _lenient(self, value: Any) -> Any:
        return self.to_storage(value)

    def _sql(self, ctx: Context) -> None:
        if ctx.qualify:
            ctx.sql.append(quote(self.model._meta.table_name) + "." + quote(self.column))
        else:
            ctx.sql.append(quote(self.column))

    def ddl_check(self) -> str | None:
        """An optional CHECK constraint on this column (without the CHECK keyword)."""
        return None


def python_key(pk: Field, key: Any) -> Any:
    """A primary key's stored value in its Python type (what ``insert`` returns)."""
    to_python = pk.python_value
    return key if to_python is None or key is None else to_python(key)


class IntegerField(Field):
    sql_type = "INTEGER"
    stored_as_is = int

    def to_storage(self, value: Any) -> Any:
        if type(value) is int:
            return value
        if isinstance(value, bool):
            raise self.fail(value, "expects an integer, not a bool")
        if isinstance(value, int):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise self.fail(value, f"{value[:40]!r} is not an integer") from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise self.fail(value, "expects an integer")


class AutoField(IntegerField):
    """The automatic ``id``: INTEGER PRIMARY KEY AUTOINCREMENT (ids are never reused)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("primary_key", True)
        super().__init__(**kwargs)


class BigIntegerField(IntegerField):
    sql_type = "BIGINT"


class PositiveIntegerField(IntegerField):
    stored_as_is = None  # every value is range-checked
    def to_storage(self, value: Any) -> Any:
        number = super().to_storage(value)
        if number < 0:
            raise self.fail(value, "must be zero or positive")
        return number

    def _lenient(self, value: Any) -> Any:
        return IntegerField.to_storage(self, value)

    def ddl_check(self) -> str | None:
        return f"{quote(self.column)} >= 0"


class FloatField(Field):
    sql_type = "REAL"
    stored_as_is = float

    def to_storage(self, value: Any) -> Any:
        if type(value) is float:
            return value
        if isinstance(value, bool):
            raise self.fail(value, "expects a number, not a bool")
        if isinstance(value, (int, float, decimal.Decimal)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise self.fail(value, f"{value[:40]!r} is not a number") from None
        raise self.fail(value, "expects a number")


class DecimalField(Field):
    """Exact decimals returned as ``Decimal`` (quantized to ``decimal_places``)."""

    sql_type = "DECIMAL"

    def __init__(self, max_digits: int = 12, decimal_places: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_digits < 1 or decimal_places < 0 or decimal_places > max_digits:
            raise ConfigurationError("DecimalField needs max_digits >= decimal_places >= 0")
        self.max_digits = max_digits
        self.decimal_places = decimal_places
        self._quantum = decimal.Decimal(1).scaleb(-decimal_places)
        # quantize() fails past the context's precision (28 by default): give it room.
        self._context = decimal.Context(prec=max(28, max_digits + decimal_places + 2))
        # NUMERIC affinity keeps 15 significant digits exactly and compares numerically;
        # longer decimals are stored as TEXT so no digit is lost.
        self.sql_type = f"DECIMAL({max_digits}, {decimal_places})" if max_digits <= 15 else "TEXT"

    def _to_decimal(self, value: Any) -> decimal.Decimal:
        if isinstance(value, bool):
            raise self.fail(value, "expects a decimal number, not a bool")
        try:
            if isinstance(value, float):
                number = decimal.Decimal(repr(value))
            elif isinstance(value, (int, str, decimal.Decimal)):
                number = decimal.Decimal(value)
            else:
                raise self.fail(value, "expects a decimal number")
            if not number.is_finite():
                raise self.fail(value, "must be a finite number")
            return number.quantize(self._quantum, rounding=decimal.ROUND_HALF_EVEN,
                                   context=self._context)
        except decimal.InvalidOperation:
            raise self.fail(value, "is not a decimal number that fits") from None

    def to_storage(self, value: Any) -> Any:
        number = self._to_decimal(value)
        if len(number.as_tuple().digits) > self.max_digits and number != 0:
            raise self.fail(value, f"has more than {self.max_digits} digits")
        return str(number)

    def _lenient(self, value: Any) -> Any:
        return str(self._to_decimal(value))

    def python_value(self, value: Any) -> Any:  # type: ignore[override]
        if value is None:
            return None
        if isinstance(value, float):
            value = repr(value)
        return decimal.Decimal(value).quantize(self._quantum, context=self._context)


class BooleanField(Field):
    sql_type = "BOOLEAN"

    def to_storage(self, value: Any) -> Any:
        # A bool on every backend: SQLite stores it as 0/1, PostgreSQL as BOOLEAN.
        if value is True or value is False:
            return value
        if type(value) is int and value in (0, 1):
            return bool(value)
        raise self.fail(value, "expects True or False")

    def python_value(self, value: Any) -> Any:  # type: ignore[override]
        return None if value is None else bool(value)

    def ddl_check(self) -> str | None:
        return f"{quote(self.column)} IN (0, 1)"


def _empty_string_default(field: Field) -> None:
    """Django's rule: text without ``null`` or ``default`` defaults to ``""``.

    A row inserted without it stores the empty string instead of failing NOT NULL; the
    DDL (and so the schema snapshot) records it as the column's DEFAULT. Fields with
    choices keep no default ("" is rarely a choice), and so do passwords.
    """
    if (field.default is NO_DEFAULT and not field.null and not field.primary_key
            and field.choices is None and field.empty_default):
        field.default = ""


class CharField(Field):
    sql_type = "VARCHAR"
    stored_as_is = str
    empty_default = True

    def __init__(self, max_length: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _empty_string_default(self)
        if not isinstance(max_length, int) or max_length < 1:
            raise ConfigurationError("CharField needs a positive integer max_length")
        self.max_length = max_length
        self.sql_type = f"VARCHAR({max_length})"

    def to_storage(self, value: Any) -> Any:
        if type(value) is not str:
            if not isinstance(value, str):
                raise self.fail(value, "expects a string")
            value = str(value)
        if len(value) > self.max_length:
            raise self.fail(value, f"is longer than {self.max_length} characters")
        return value

    def _lenient(self, value: Any) -> Any:
        return value


class TextField(Field):
    sql_type = "TEXT"
    stored_as_is = str
    empty_default = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _empty_string_default(self)

    def to_storage(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise self.fail(value, "expects a string")
        return str(value)


class PasswordField(CharField):
    """Stores only scrypt hashes: a plain password is hashed on its way in."""

    stored_as_is = None  # every value goes through hashing
    empty_default = False  # no implicit "": a missing password must not hash the empty one

    def __init__(self, max_length: int = 255, **kwargs: Any) -> None:
        super().__init__(max_length=max(max_length, 160), **kwargs)

    def to_storage(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise self.fail(value, "expects a string")
        return value if is_password_hash(value) else hash_password(value)

    def _lenient(self, value: Any) -> Any:
        return value

    def _validated_form(self, value: Any, stored: Any) -> Any:
        return value   # the password as given, before hashing


class BinaryField(Field):
    sql_type = "BLOB"
    stored_as_is = bytes

    def to_storage(self, value: Any) -> Any:
        if isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        raise self.fail(value, "expects bytes")


class JSONField(Field):
    """Any JSON-serializable value, stored as JSON text."""

    sql_type = "JSON"

    def to_storage(self, value: Any) -> Any:
        try:
            return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self.fail(value, f"is not JSON-serializable: {exc}") from None

    def db_value(self, value: Any) -> Any:
        if value is None and self.null:
            return None
        return self.to_storage(value)

    def python_value(self, value: Any) -> Any:  # type: ignore[override]
        return None if value is None else json.loads(value)


class UUIDField(Field):
    sql_type = "UUID"

    def to_storage(self, value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                raise self.fail(value, f"{value[:40]!r} is not a UUID") from None
        raise self.fail(value, "expects a UUID")

    def python_value(self, value: Any) -> Any:  # type: ignore[override]
        return None if value is None else uuid.UUID(value)

