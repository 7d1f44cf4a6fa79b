"""Validators: callables a field runs on every value it stores (``validators=[...]``).

A validator takes the value in its Python form (a ``Decimal``, a ``date``...) and raises
``ValidationError`` with a short message when the value does not fit; it returns nothing
otherwise. Any callable of that shape works::

    def even(value):
        if value % 2:
            raise ValidationError("must be even")

    score = IntegerField(validators=[MinValueValidator(0), even])

As in Django, validators do not run on empty values (``None`` and ``""``): whether those
are allowed is what ``null`` and the field's type decide.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from fluxon.errors import ValidationError

__all__ = ["RegexValidator", "MinValueValidator", "MaxValueValidator", "MinLengthValidator",
           "MaxLengthValidator", "validate_email", "validate_url", "validate_slug", "EMPTY_VALUES"]

EMPTY_VALUES = (None, "")

_EMAIL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                       r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_HOST_RE = re.compile(r"^(localhost|\[[0-9A-Fa-f:.]+\]|"
                      r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                      r"(:[0-9]{1,5})?$")
_SLUG_RE = re.compile(r"^[-A-Za-z0-9_]+$")


class RegexValidator:
    """The value (as text) must match ``pattern`` (``re.search``)."""

    def __init__(self, pattern: str | re.Pattern, message: str = "has an invalid format") -> None:
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.message = message

    def __call__(self, value: Any) -> None:
        if not self.pattern.search(str(value)):
            raise ValidationError(self.message)

    def __repr__(self) -> str:
        return f"RegexValidator({self.pattern.pattern!r})"


class _Bound:
    """A comparison against a limit; subclasses say which one."""

    message = ""

    def __init__(self, limit: Any) -> None:
        self.limit = limit

    def measure(self, value: Any) -> Any:
        return value

    def fails(self, measured: Any) -> bool:
        raise NotImplementedError

    def __call__(self, value: Any) -> None:
        if self.fails(self.measure(value)):
            raise ValidationError(self.message.format(limit=self.limit))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.limit!r})"


class MinValueValidator(_Bound):
    """The value must be at least ``limit``."""

    message = "must be at least {limit}"

    def fails(self, measured: Any) -> bool:
        return measured < self.limit


class MaxValueValidator(_Bound):
    """The value must be at most ``limit``."""

    message = "must be at most {limit}"

    def fails(self, measured: Any) -> bool:
        return measured > self.limit


class MinLengthValidator(MinValueValidator):
    """The value must have at least ``limit`` items (characters, for text)."""

    message = "must be at least {limit} characters long"

    def measure(self, value: Any) -> Any:
        return len(value)


class MaxLengthValidator(MaxValueValidator):
    """The value must have at most ``limit`` items (characters, for text)."""

    message = "must be at most {limit} characters long"

    def measure(self, value: Any) -> Any:
        return len(value)


def validate_email(value: Any) -> None:
    """An address ``local@domain.tld`` (ASCII; no quoted local parts, no IP literals)."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL_RE.match(value):
        raise ValidationError("is not a valid email address")


def validate_url(value: Any) -> None:
    """An absolute ``http``, ``https``, ``ftp`` or ``ftps`` URL with a host name."""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https", "ftp", "ftps")
            or not _HOST_RE.match(parts.netloc.rpartition("@")[2])
            or any(ch.isspace() for ch in value)):
        raise ValidationError("is not a valid URL")


def validate_slug(value: Any) -> None:
    """Letters, digits, hyphens and underscores only."""
    if not isinstance(value, str) or not _SLUG_RE.match(value):
        raise ValidationError("may contain only letters, digits, hyphens and underscores")
