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


def _save(schema: Any, router: Router, op: dict[str, Any]) -> Any:
    return schema.save_schema(router.models, _require(router.database_schema_dir, "database_schema_dir"))


def _update(schema: Any, router: Router, op: dict[str, Any]) -> Any:
    number = op.get("number")
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadRequest("updateschema needs an integer 'number'")
    return schema.update_schema(_require(router.database_path, "database_path"),
                                _require(router.database_schema_dir, "database_schema_dir"),
                                number, dry_run=bool(op.get("dry_run")), force=bool(op.get("force")))


def _list(schema: Any, router: Router, op: dict[str, Any]) -> Any:
    return schema.list_schemas(_require(router.database_schema_dir, "database_schema_dir"),
                               router.database_path)


#: op name -> handler(schema module, router, op dict) returning plain data.
ADMIN_OPERATIONS: dict[str, Callable[[Any, Router, dict[str, Any]], Any]] = {
    "saveschema": _save,
    "updateschema": _update,
    "schemas": _list,
}


def _require(value: Any, name: str) -> Any:
    if not value:
        raise ConfigurationError(f"this operation needs Router({name}=...) in the application")
    return value


def run_admin(router: Router, op: dict[str, Any]) -> tuple[bool, Any]:
    """Run one ADMIN operation; returns ``(ok, result_or_error_dict)`` and never raises."""
    name = op.get("op")
    handler = ADMIN_OPERATIONS.get(name) if isinstance(name, str) else None
    try:
        if handler is None:
            raise BadRequest(f"unknown admin operation {name!r}; known: {sorted(ADMIN_OPERATIONS)}")
        try:
            schema = importlib.import_module(_SCHEMA_MODULE)
        except ImportError as exc:
            raise ConfigurationError(f"{_SCHEMA_MODULE} is not available: {exc}") from exc
        result = handler(schema, router, op)
    except FluxonError as exc:
        log.warning("admin operation %r failed: %s", name, exc.message)
        return False, exc.to_dict()
    except AttributeError as exc:  # the schema module lacks the function this op needs
        log.error("admin operation %r: %s", name, exc)
        return False, ConfigurationError(f"{_SCHEMA_MODULE} does not provide {name!r}: {exc}").to_dict()
    except Exception as exc:
        log.exception("admin operation %r failed", name)
        return False, InternalError(f"{type(exc).__name__}: {exc}").to_dict()
    log.info("admin operation %r done", name)
    return True, result
