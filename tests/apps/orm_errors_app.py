"""A test application whose views raise the ORM's typed errors, to see them on the client.

The database file comes from $FLUXON_TEST_DB.
"""

from __future__ import annotations

import os

from fluxon.database import models
from fluxon.routing import Router


class Member(models.Model):
    email = models.EmailField(unique=True)
    age = models.IntegerField(validators=[models.MinValueValidator(0)])


def join(request):
    """Validate the whole payload first (every bad field at once), then insert it."""
    return Member.insert(Member.validate(request.payload))


router = Router(mapping={"join": join},
                database_path=os.environ.get("FLUXON_TEST_DB", "unset.sqlite3"),
                models=[Member])
