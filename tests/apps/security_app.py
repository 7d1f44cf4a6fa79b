"""The application of the end-to-end security tests (tests/test_security_e2e.py).

Its route names and payloads are distinctive strings, so a capture of the bytes on the
wire can be searched for them.
"""

from __future__ import annotations

from fluxon.routing import Router, login_required

router = Router()

#: A route name that must never appear on the wire in secure mode.
WHISPER_ROUTE = "whisper_route_7f3a9c"


@router.route(WHISPER_ROUTE)
def whisper(request):
    """Return the payload unchanged (the relay test looks for it in the captured bytes)."""
    return request.payload


@router.route("kind")
def kind(request):
    """The type name of the decoded payload (what the worker actually built)."""
    return type(request.payload).__name__


@router.route("login")
def login(request):
    """Log in as payload["uid"] and store payload["data"] in the session."""
    request.session.update(request.payload.get("data", {}))
    request.login(request.payload["uid"])
    return request.session_id


@router.route("whoami")
def whoami(request):
    """The session as the worker sees it."""
    return {"uid": request.user_id, "data": dict(request.session), "sid": request.session_id}


@router.route("members_only")
@login_required
def members_only(request):
    """Answers only logged-in sessions."""
    return f"hello {request.user_id}"
