"""Fluxon's SQLite ORM: models, query expressions, manipulation and schema snapshots.

Import paths: ``fluxon.database.models`` (Model, fields, AuthorizedUser),
``fluxon.database.manipulation`` (SqliteDatabase, where), ``fluxon.database.ddl``
(schema_statements).
"""
