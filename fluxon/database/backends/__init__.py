"""One backend object per kind of database; ``connect(url)`` picks the database for a URL.

Backends: :class:`SqliteBackend` (the default) and :class:`PostgresBackend`; URLs are
described in :mod:`fluxon.database.backends.urls`.
"""

from __future__ import annotations

import os
from typing import Any

from fluxon.database.backends.base import Backend, Features
from fluxon.database.backends.postgresql import PostgresBackend
from fluxon.database.backends.sqlite import SQLITE, SqliteBackend
from fluxon.database.backends.urls import URL_ENV, is_postgres_url, mask_url, sqlite_path

__all__ = ["Backend", "Features", "SqliteBackend", "PostgresBackend", "SQLITE", "connect",
           "mask_url", "is_postgres_url", "sqlite_path", "URL_ENV"]


def connect(url: str | os.PathLike, models: Any = None, **options: Any) -> Any:
    """The database a URL names: ``PostgresDatabase`` or ``SqliteDatabase``.

    ``url``: ``postgresql://...``, ``sqlite:///relative.sqlite3``, ``sqlite:////abs/path``
    or a plain path. ``options`` go to the database class (e.g. ``pool_size``,
    ``statement_timeout_s`` for PostgreSQL, ``timeout_s`` for SQLite).
    """
    from fluxon.database.manipulation import PostgresDatabase, SqliteDatabase
    if is_postgres_url(url):
        return PostgresDatabase(os.fspath(url), models=models, **options)
    return SqliteDatabase(sqlite_path(url), models=models, **options)
