"""A test application with one view per behaviour the tests need.

Load it with ``fluxon worker tests.apps.echo_app:router`` from the repository root.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from fluxon.errors import ValidationError
from fluxon.routing import Router, login_required

router = Router(idempotent=["idem_slow"])
log = logging.getLogger("fluxon.tests.echo_app")


@router.route("echo")
def echo(request):
    """Return the payload unchanged."""
    return request.payload


@router.route("pid")
def pid(request):
    """Which worker process answered (spread tests)."""
    return os.getpid()


@router.route("slow")
def slow(request):
    """Sleep for payload seconds (float), then return the pid."""
    log.info("started slow")
    time.sleep(float(request.payload or 0.1))
    return os.getpid()


@router.route("idem_slow")
def idem_slow(request):
    """Declared idempotent: the broker may run it again elsewhere.

    Payload ``(seconds, marker_path)``: the first run creates the marker and sleeps;
    a re-run (after its worker died) finds the marker and answers at once.
    """
    seconds, marker = request.payload
    log.info("started idem_slow")
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(float(seconds))
    return os.getpid()


@router.route("boom")
def boom(request):
    """Raise an ordinary exception: the client sees ViewError."""
    raise ZeroDivisionError("boom on purpose")


@router.route("invalid")
def invalid(request):
    """Raise a Fluxon error: the client sees it as itself."""
    raise ValidationError("name is required", details={"field": "name"})


@router.route("unpicklable")
def unpicklable(request):
    """Return something cloudpickle cannot serialize."""
    return threading.Lock()


@router.route("async_echo")
async def async_echo(request):
    """An async view running on the worker's event loop."""
    await asyncio.sleep(0.01)
    return {"async": True, "payload": request.payload}


@router.route("async_boom")
async def async_boom(request):
    """An async view that raises."""
    await asyncio.sleep(0)
    raise KeyError("missing")


@router.route("login")
def login(request):
    """Bind the session to the payload's user id."""
    request.login(request.payload)
    request.session["logins"] = request.session.get("logins", 0) + 1
    return request.session_id


@router.route("logout")
def logout(request):
    """Unbind the session."""
    request.logout()
    return True


@router.route("whoami")
def whoami(request):
    """The session's user id and data."""
    return {"user_id": request.user_id, "session": dict(request.session), "sid": request.session_id}


@router.route("secret")
@login_required
def secret(request):
    """Only for logged-in sessions."""
    return "the secret"
