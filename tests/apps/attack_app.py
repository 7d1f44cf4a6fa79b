"""The application the attack tests (tests/attacks/) run against: ordinary views an attacker can reach.

Load it with ``fluxon worker tests.apps.attack_app:router`` from the repository root.
"""

from __future__ import annotations

import os
import signal
import time

from fluxon.errors import ValidationError
from fluxon.routing import Router
from tests.apps.echo_app import echo, pid
from tests.apps.security_app import kind

router = Router(idempotent=["echo", "crash"])
router.add_route("echo", echo)  # the payload unchanged: what the innocent client calls in a loop
router.add_route("pid", pid)    # which worker process answered
router.add_route("kind", kind)  # the type name of the decoded payload (what the worker built)


@router.route("slow")
def slow(request):
    """Sleep for payload seconds (keeps a worker busy so requests queue up)."""
    time.sleep(float(request.payload or 0.1))
    return "slept"


@router.route("store")
def store(request):
    """Keep the payload in the session (the broker parses the session changes)."""
    request.session["value"] = request.payload
    return "stored"


@router.route("whoami")
def whoami(request):
    """The session as the worker sees it."""
    return {"uid": request.user_id, "data": dict(request.session), "sid": request.session_id}


@router.route("login")
def login(request):
    """Log in as the payload (rotates the session id)."""
    request.login(request.payload)
    return request.session_id


@router.route("logout")
def logout(request):
    """Log out (rotates the session id, even for an anonymous session)."""
    request.logout()
    return request.session_id


@router.route("reject")
def reject(request):
    """Raise a typed error whose details hold the payload (the broker reads the error code)."""
    raise ValidationError("rejected", details={"value": request.payload})


@router.route("crash")
def crash(request):
    """Kill the worker process while it runs this job (a poison request, declared idempotent)."""
    os.kill(os.getpid(), signal.SIGKILL)
