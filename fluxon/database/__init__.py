"""Fluxon's SQLite ORM: models, query expressions, manipulation and schema snapshots."""
