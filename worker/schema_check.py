"""At start, a worker checks that its database is on the schema its models render.

A worker whose models and database disagree (the user edited ``models.py`` but did not
migrate, or never applied a snapshot) would fail request after request with ``no such
table`` or ``no such column``. It still starts (a deployment may start workers before it
migrates), but says once, at start, which command brings the database in line.
"""

from __future__ import annotations

import logging
from typing import Any

from fluxon.database.schema import list_router_schemas, plan_router_schema
from fluxon.errors import FluxonError

__all__ = ["schema_advice", "check_schema_at_start"]

log = logging.getLogger("fluxon.worker")


def schema_advice(router: Any) -> str | None:
    """What to run so that the database matches the models, or None when it already does."""
    if not (getattr(router, "database_path", None) and getattr(router, "database_schema_dir", None)
            and getattr(router, "models", None)):
        return None
    app = router.import_path or "APP"
    plan = plan_router_schema(router, None)
    if not plan["changed"]:
        return None
    snapshots = list_router_schemas(router)
    current = next((row["number"] for row in snapshots if row.get("current")), None)
    if not snapshots:
        return (f"the database does not match the models and no schema snapshot is saved: run "
                f"`fluxon schema save {app}` then `fluxon schema apply 1 {app}`")
    latest = snapshots[-1]["number"]
    where = f"on snapshot {current}" if current is not None else "on no snapshot"
    return (f"the database ({where}) does not match the models: run `fluxon schema apply {latest} {app}` "
            f"(or `updateschema {latest}` in the console), after `fluxon schema save {app}` if the models "
            f"changed since snapshot {latest}")


def check_schema_at_start(router: Any) -> str | None:
    """Log :func:`schema_advice` as a warning; never fails the start."""
    try:
        advice = schema_advice(router)
    except FluxonError as exc:
        log.warning("could not compare the database with the models: %s", exc.message)
        return None
    except Exception as exc:  # a check must never keep a worker from serving
        log.warning("could not compare the database with the models: %s: %s", type(exc).__name__, exc)
        return None
    if advice:
        log.warning("%s", advice)
    return advice
