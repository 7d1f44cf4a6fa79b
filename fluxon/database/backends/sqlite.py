"""The SQLite backend: the defaults of :class:`~fluxon.database.backends.base.Backend`."""

from __future__ import annotations

from fluxon.database.backends.base import Backend, Features

__all__ = ["SqliteBackend", "SQLITE"]


class SqliteBackend(Backend):
    """SQLite: AUTOINCREMENT keys, type affinity, table rebuilds, one writer at a time."""

    name = "sqlite"
    features = Features()


SQLITE = SqliteBackend()
