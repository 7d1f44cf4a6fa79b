"""Fluxon's SQLite ORM: models, query expressions, manipulation and schema snapshots.

Import paths: ``fluxon.database.models`` (Model, fields, AuthorizedUser),
``fluxon.database.manipulation`` (SqliteDatabase, where), ``fluxon.database.ddl``
(schema_statements).
"""

from fluxon.database.expressions import fn, where
from fluxon.database.manipulation import SqliteDatabase
from fluxon.database.models import AuthorizedUser, Model, collect_models

__all__ = ["SqliteDatabase", "Model", "AuthorizedUser", "collect_models", "where", "fn"]
