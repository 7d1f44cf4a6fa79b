"""A test application with a database: the worker opens it and views use ``request.db``.

The database file and schema folder come from $FLUXON_TEST_DB and $FLUXON_TEST_SCHEMA_DIR.
"""

from __future__ import annotations

import os

from fluxon.database import models
from fluxon.routing import Router


class Note(models.Model):
    text = models.CharField(max_length=100)
    author = models.IntegerField(null=True)


def add_note(request):
    """Insert the payload as a note; the author is the session's user."""
    return request.db.Note.insert({request.db.Note.text: request.payload, request.db.Note.author: request.user_id})


def count_notes(request):
    return len(request.db.Note.check())


router = Router(mapping={"add_note": add_note, "count_notes": count_notes},
                database_path=os.environ.get("FLUXON_TEST_DB", "unset.sqlite3"),
                database_schema_dir=os.environ.get("FLUXON_TEST_SCHEMA_DIR"),
                models=[Note])
