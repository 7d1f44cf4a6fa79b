"""ADMIN jobs from the broker: schema snapshots and migrations, run by one worker.

The operations live in :mod:`fluxon.database.schema`; this module only dispatches
to them through a small table and turns every failure into the error dict the
ADMIN_REPLY carries. An unknown operation is an error reply, never a crash. The
worker runs them in a fresh interpreter (:func:`run_admin_fresh`), so that they
act on the models as they are on disk, not as the worker imported them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from fluxon.database.schema import apply_router_schema, list_router_schemas, save_router_schema
from fluxon.errors import BadRequest, FluxonError, InternalError
from fluxon.routing import Router

__all__ = ["run_admin", "run_admin_fresh", "run_admin_child", "ADMIN_OPERATIONS"]

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


def run_admin_fresh(router: Router, op: dict[str, Any], *, timeout_s: float = 3600.0) -> tuple[bool, Any]:
    """:func:`run_admin` in a fresh interpreter, so the operation sees the models as they are on disk.

    A worker holds the models it imported at start; after the user edited ``models.py``,
    ``saveschema`` run in-process would snapshot the old ones ("models unchanged"). The
    child imports the application again by its import path, in the worker's folder and
    environment, and prints ``{"ok": ..., "result": ...}``. A Router without an import path
    (defined in ``__main__``) cannot be imported again: it runs in-process.
    """
    if not router.import_path:
        return run_admin(router, op)
    argv = [sys.executable, "-c", _CHILD, router.import_path, json.dumps(op)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        log.error("admin operation %r: the fresh interpreter failed: %s", op.get("op"), exc)
        return False, InternalError(f"the admin operation's interpreter failed: {type(exc).__name__}").to_dict()
    if not isinstance(answer, dict) or "ok" not in answer:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        log.error("admin operation %r: the fresh interpreter exited %s: %s", op.get("op"), done.returncode, last)
        return False, InternalError(f"the admin operation failed: {last}").to_dict()
    ok, result = bool(answer["ok"]), answer["result"]
    if ok:  # the child logs at WARNING only: the worker's log says what happened
        log.info("admin operation %r done", op.get("op"))
    else:
        log.warning("admin operation %r failed: %s", op.get("op"),
                    result.get("message") if isinstance(result, dict) else result)
    return ok, result


#: The child's program (``-c``: the current folder goes first on sys.path, as for the worker).
_CHILD = "import sys; from fluxon.worker.admin import run_admin_child; sys.exit(run_admin_child(sys.argv[1:]))"


def run_admin_child(argv: list[str]) -> int:
    """The fresh interpreter's side: ``[APP, OP_JSON]`` -> one line of JSON on stdout."""
    from fluxon.routing import load_router

    logging.basicConfig(level=logging.WARNING)
    try:
        router = load_router(argv[0])
        op = json.loads(argv[1])
    except FluxonError as exc:
        ok, result = False, exc.to_dict()
    except (IndexError, ValueError):
        ok, result = False, BadRequest("expected APP and the operation as JSON").to_dict()
    else:
        ok, result = run_admin(router, op if isinstance(op, dict) else {})
    sys.stdout.write(json.dumps({"ok": ok, "result": result}, default=str) + "\n")  # the parent reads it
    return 0
