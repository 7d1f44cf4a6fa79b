"""The views issue 10's attacks aim at: ordinary views an attacker feeds hostile payloads.

Load it with ``fluxon worker tests.apps.hostile_app:router`` from the repository root.
"""

from __future__ import annotations

import os

from fluxon.errors import ValidationError
from fluxon.routing import Router

router = Router(idempotent=["echo"])


@router.route("echo")
def echo(request):
    """Return the payload unchanged (the innocent client's route)."""
    return request.payload


@router.route("async_echo")
async def async_echo(request):
    """Return the payload from an ``async def`` view (its decode must still leave the loop free)."""
    return request.payload


@router.route("count")
def count(request):
    """Walk the payload the way a view would: ``len`` and ``int`` of each element."""
    value = request.payload
    if isinstance(value, (set, frozenset, list, tuple, dict)):
        return len(value)
    return int(value)


@router.route("reject")
def reject(request):
    """Raise a ValidationError that carries the payload in its details."""
    raise ValidationError("rejected", details={"value": request.payload})


@router.route("pid")
def pid(request):
    """Which worker process answered."""
    return os.getpid()
