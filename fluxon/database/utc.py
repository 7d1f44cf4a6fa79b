"""Datetimes in UTC: the one stored form of ``DateTimeField``, and the step rewriting older values.

A ``DateTimeField`` stores ISO-8601 text in UTC with its offset::

    2026-12-01T08:00:00+00:00          (given 10:00+02:00, or a naive 08:00 taken as UTC)

Text compares as time only when every value has that form, so ordering and filters are right
across offsets. Values written before this rule (another offset, no offset, a space for the
``T``) are rewritten by :func:`normalize_datetimes`, which ``updateschema N`` runs on every
``DATETIME`` column after it migrates.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3

from fluxon.database.expressions import quote

__all__ = ["as_utc", "utc_text", "normalize_datetimes"]

_UTC = _dt.timezone.utc


def as_utc(value: _dt.datetime) -> _dt.datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.utcoffset() is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def utc_text(value: object) -> object:
    """The stored UTC form of an ISO datetime text; anything else is returned unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return as_utc(_dt.datetime.fromisoformat(value)).isoformat()
    except ValueError:
        return value


def normalize_datetimes(conn: sqlite3.Connection) -> int:
    """Rewrite every ``DATETIME`` column's values in the UTC form; returns how many changed.

    Runs in the caller's transaction; values that are not ISO datetimes are left alone.
    """
    conn.create_function("fluxon_utc_text", 1, utc_text, deterministic=True)
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    changed = 0
    for table in tables:
        for column in conn.execute(f"PRAGMA table_info({quote(table)})").fetchall():
            if str(column[2]).upper() != "DATETIME":
                continue
            name = quote(column[1])
            changed += conn.execute(
                f"UPDATE {quote(table)} SET {name} = fluxon_utc_text({name}) "
                f"WHERE {name} IS NOT NULL AND {name} <> fluxon_utc_text({name})").rowcount
    return changed
