"""Fluxon's ORM on SQLite and PostgreSQL: models, query expressions, manipulation, snapshots.

Import paths: ``fluxon.database.models`` (Model, fields, AuthorizedUser),
``fluxon.database.manipulation`` (SqliteDatabase, PostgresDatabase, where),
``fluxon.database.ddl`` (schema_statements), ``fluxon.database.backends`` (one backend
object per kind of database). ``connect(url, models=...)`` opens the database a URL names.
"""

from fluxon.database.backends import connect
from fluxon.database.expressions import fn, where
from fluxon.database.manipulation import PostgresDatabase, SqliteDatabase
from fluxon.database.models import AuthorizedUser, Model, collect_models

__all__ = ["SqliteDatabase", "PostgresDatabase", "connect", "Model", "AuthorizedUser",
           "collect_models", "where", "fn"]
