"""ADMIN jobs from the broker: schema snapshots and migrations, run by one worker.

The operations live in :mod:`fluxon.database.schema`; this module only dispatches
to them through a small table and turns every failure into the error dict the
ADMIN_REPLY carries. An unknown operation is an error reply, never a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fluxon.database.schema import apply_router_schema, list_router_schemas, save_router_schema
from fluxon.errors import BadRequest, FluxonError, InternalError
from fluxon.routing import Router

__all__ = ["run_admin", "ADMIN_OPERATIONS"]

log = logging.getLogger("fluxon.worker")

def _no_arguments(op: dict[str, Any]) -> dict[str, Any]:
    return {}


def _update_arguments(op: dict[str, Any]) -> dict[str, Any]:
    number = op.get("number")
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadRequest("updateschema needs an integer 'number'")
    return {"number": number, "dry_run": bool(op.get("dry_run")), "force": bool(op.get("force"))}


#: op name -> (schema function called with the Router, its keyword arguments taken from the op).
ADMIN_OPERATIONS: dict[str, tuple[Callable[..., Any], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "saveschema": (save_router_schema, _no_arguments),
    "updateschema": (apply_router_schema, _update_arguments),
    "schemas": (list_router_schemas, _no_arguments),
}


def run_admin(router: Router, op: dict[str, Any]) -> tuple[bool, Any]:
    """Run one ADMIN operation; returns ``(ok, result_or_error_dict)`` and never raises."""
    name = op.get("op")
    try:
        if not isinstance(name, str) or name not in ADMIN_OPERATIONS:
            raise BadRequest(f"unknown admin operation {name!r}; known: {sorted(ADMIN_OPERATIONS)}")
        function, arguments = ADMIN_OPERATIONS[name]
        result = function(router, **arguments(op))
    except FluxonError as exc:
        log.warning("admin operation %r failed: %s", name, exc.message)
        return False, exc.to_dict()
    except Exception as exc:
        log.exception("admin operation %r failed", name)
        return False, InternalError(f"{type(exc).__name__}: {exc}").to_dict()
    log.info("admin operation %r done", name)
    return True, result
