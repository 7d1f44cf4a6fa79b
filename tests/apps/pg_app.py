"""A test application whose database comes from the command line (--database-url or env).

``bump`` is a read-modify-write inside ``atomic()``; ``add_entry`` a single insert.
"""

from __future__ import annotations

from fluxon.database import models
from fluxon.routing import Router


class Counter(models.Model):
    value = models.IntegerField(default=0)


class Entry(models.Model):
    text = models.CharField(max_length=60)


def bump(request):
    """Add one to counter 1 the slow way (read, then write) and return the new value."""
    db = request.db
    with db.atomic():
        current = db.Counter.get(id=1).value
        db.update(Counter, {Counter.value: current + 1}, db.where[Counter.id == 1])
    return current + 1


def add_entry(request):
    return request.db.Entry.insert(text=request.payload)


def whoami(request):
    return request.db.display_name


router = Router(mapping={"bump": bump, "add_entry": add_entry, "whoami": whoami},
                models=[Counter, Entry])
