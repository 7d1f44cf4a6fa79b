"""Text fields with a format: email addresses, URLs and slugs (validated on the way in)."""

from __future__ import annotations

from typing import Any

from fluxon.database.fields import CharField
from fluxon.database.validators import validate_email, validate_slug, validate_url

__all__ = ["EmailField", "URLField", "SlugField"]


class EmailField(CharField):
    """An email address (``validate_email``); 254 characters by default."""

    default_validators = (validate_email,)

    def __init__(self, max_length: int = 254, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, **kwargs)


class URLField(CharField):
    """An absolute http(s)/ftp(s) URL (``validate_url``); 200 characters by default."""

    default_validators = (validate_url,)

    def __init__(self, max_length: int = 200, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, **kwargs)


class SlugField(CharField):
    """Letters, digits, ``-`` and ``_`` (``validate_slug``); indexed, 50 characters by default."""

    default_validators = (validate_slug,)

    def __init__(self, max_length: int = 50, **kwargs: Any) -> None:
        kwargs.setdefault("index", True)
        super().__init__(max_length=max_length, **kwargs)
