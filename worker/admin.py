"""ADMIN jobs from the broker: schema snapshots and migrations, run by one worker.

The operations live in :mod:`fluxon.database.schema` (the ORM's); this module only
dispatches to them through a small table and turns every failure into the error
dict the ADMIN_REPLY carries. A missing module or operation is an error reply,
never a crash.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from fluxon.errors import BadRequest, ConfigurationError, FluxonError, InternalError
from fluxon.routing import Router

__all__ = ["run_admin", "ADMIN_OPERATIONS"]

log = logging.getLogger("fluxon.worker")

_SCHEMA_MODULE = "fluxon.database.schema"


def _no_arguments(op: dict[str, Any]) -> dict[str, Any]:
    return {}


def _update_arguments(op: dict[str, Any]) -> dict[str, Any]:
    number = op.get("number")
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadRequest("updateschema needs an integer 'number'")
    return {"number": number, "dry_run": bool(op.get("dry_run")), "force": bool(op.get("force"))}


#: op name -> (function of fluxon.database.schema called with the Router, keyword arguments from the op).
ADMIN_OPERATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "saveschema": ("save_router_schema", _no_arguments),
    "updateschema": ("apply_router_schema", _update_arguments),
    "schemas": ("list_router_schemas", _no_arguments),
}


def run_admin(router: Router, op: dict[str, Any]) -> tuple[bool, Any]:
    """Run one ADMIN operation; returns ``(ok, result_or_error_dict)`` and never raises."""
    name = op.get("op")
    try:
        if not isinstance(name, str) or name not in ADMIN_OPERATIONS:
            raise BadRequest(f"unknown admin operation {name!r}; known: {sorted(ADMIN_OPERATIONS)}")
        function_name, arguments = ADMIN_OPERATIONS[name]
        kwargs = arguments(op)
        try:
            schema = importlib.import_module(_SCHEMA_MODULE)
        except ImportError as exc:
            raise ConfigurationError(f"{_SCHEMA_MODULE} is not available: {exc}") from exc
        function = getattr(schema, function_name, None)
        if function is None:
            raise ConfigurationError(f"{_SCHEMA_MODULE} has no {function_name}(), needed for {name!r}")
        result = function(router, **kwargs)
    except FluxonError as exc:
        log.warning("admin operation %r failed: %s", name, exc.message)
        return False, exc.to_dict()
    except Exception as exc:
        log.exception("admin operation %r failed", name)
        return False, InternalError(f"{type(exc).__name__}: {exc}").to_dict()
    log.info("admin operation %r done", name)
    return True, result
