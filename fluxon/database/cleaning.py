"""Whole-row validation: every invalid field of a row reported in one ``ValidationError``.

``insert`` stops at the first bad value; ``instance.full_clean()`` and
``Model.validate(data)`` check them all, so a form or an API can show every problem at
once. The error's ``.errors`` maps each field name to its messages (and travels to the
client as data, in ``details["errors"]``)::

    ValidationError("User: 2 invalid fields: email (is not a valid email address); ...",
                    details={"model": "User", "errors": {"email": [...], "age": [...]}})

Uniqueness and foreign keys are the database's to check (``UniqueViolation``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxon.database.fields import AutoField, Field
from fluxon.errors import ValidationError

__all__ = ["full_clean", "validate_data"]


def _field_messages(field: Field, value: Any) -> list[str]:
    try:
        field.db_value(value)
    except ValidationError as exc:
        return exc.details.get("errors", {}).get(field.name) or [exc.details.get("reason", exc.message)]
    return []


def _raise_if_any(model: type, errors: dict[str, list[str]]) -> None:
    if not errors:
        return
    summary = "; ".join(f"{name} ({', '.join(messages)})" for name, messages in errors.items())
    raise ValidationError(f"{model.__name__}: {len(errors)} invalid field"
                          f"{'s' if len(errors) > 1 else ''}: {summary}",
                          details={"model": model.__name__, "errors": errors,
                                   "field": next(iter(errors))})


def full_clean(instance: Any) -> None:
    """Check every loaded field of ``instance``; raise one ValidationError naming all bad ones."""
    model = type(instance)
    state = instance.__dict__
    errors: dict[str, list[str]] = {}
    for field in model._meta.fields:
        if field.name not in state:
            continue
        messages = _field_messages(field, state[field.name])
        if messages:
            errors[field.name] = messages
    _raise_if_any(model, errors)


def _required(field: Field) -> bool:
    return not (field.has_default or field.null or field.primary_key or isinstance(field, AutoField))


def validate_data(model: type, data: Mapping[Any, Any]) -> dict[str, Any]:
    """Check a dict meant for ``insert``: unknown keys, bad values and missing required
    fields all at once. Returns the data keyed by field name (ready for ``insert``)."""
    meta = model._meta
    if not isinstance(data, Mapping):
        raise ValidationError(f"{model.__name__}.validate takes a dict of field values, "
                              f"not {type(data).__name__}", details={"model": model.__name__})
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(key, Field):
            field = key if key.model is model or meta.by_name.get(key.name) is key else None
        else:
            field = meta.by_key.get(key) if isinstance(key, str) else None
        if field is None:
            name = str(getattr(key, "name", key))[:200]
            errors[name] = [f"is not a field of {model.__name__}"]
            continue
        if field.name in clean:
            errors[field.name] = ["is given twice"]
            continue
        clean[field.name] = value
        messages = _field_messages(field, value)
        if messages:
            errors[field.name] = messages
    for field in meta.fields:
        if field.name not in clean and field.name not in errors and _required(field):
            errors[field.name] = ["is required"]
    _raise_if_any(model, errors)
    return clean
