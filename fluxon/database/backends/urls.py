"""Database URLs: which backend a URL names, and the URL with its password masked.

    sqlite:///app.sqlite3            a file relative to the working directory
    sqlite:////var/lib/app.sqlite3   an absolute path (four slashes)
    app.sqlite3                      a plain path is SQLite too
    postgresql://user@host:5432/db   PostgreSQL (``postgres://`` too; libpq's options apply)

A password may be in the URL, but it never appears in logs, errors, ``status`` or
``repr``: everything shows :func:`mask_url`. Prefer a password file (libpq's
``PGPASSFILE`` or ``passfile=`` in the URL) or ``$FLUXON_DATABASE_URL`` over argv, which
``ps`` shows to every user of the host.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["is_postgres_url", "sqlite_path", "mask_url", "URL_ENV"]

#: the environment variable ``fluxon worker``/``fluxon run`` read when no --database-url is given
URL_ENV = "FLUXON_DATABASE_URL"

_MASK = "***"
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")
_KEYWORD_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def is_postgres_url(url: str | os.PathLike) -> bool:
    text = os.fspath(url)
    return isinstance(text, str) and text.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str | os.PathLike) -> str:
    """The file path of a ``sqlite:`` URL or of a plain path."""
    text = os.fspath(url)
    if text.startswith("sqlite:///"):
        return text[len("sqlite:///"):] or ":memory:"
    if text in ("sqlite://", "sqlite:", "sqlite::memory:", "sqlite://:memory:"):
        return ":memory:"
    return text


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (URL or ``key=value`` conninfo form)."""
    if not is_postgres_url(url):
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + _MASK, url) if "=" in url else url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + _MASK
        netloc = userinfo + "@" + host
    query = _QUERY_PASSWORD.sub(lambda m: m.group(1) + _MASK, parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
