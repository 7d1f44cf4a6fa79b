"""The worker keeps parsed session contexts by their bytes: a view's session edits never leak into the kept copy."""

from __future__ import annotations

import asyncio
import json

from fluxon.protocol import STATUS_OK
from fluxon.routing import Router
from fluxon.serialization import dumps, loads_trusted
from fluxon.worker.execution import ViewRunner

router = Router()


@router.route("bump")
def bump(request):
    """Edit the session in place (scalars and a nested list) and report what it saw first."""
    seen = json.loads(json.dumps(request.session))
    request.session["n"] = request.session.get("n", 0) + 1
    request.session.setdefault("items", []).append("x")
    return seen


def _run_twice(context: dict) -> tuple[object, object]:
    runner = ViewRunner(router, concurrency=1)
    try:
        ctx = json.dumps(context).encode()

        async def both():
            return [await runner.run("bump", ctx, dumps(None)) for _ in range(2)]
        first, second = asyncio.run(both())
    finally:
        runner.shutdown()
    assert first.status == second.status == STATUS_OK
    return loads_trusted(first.body), loads_trusted(second.body)


def test_scalar_session_edits_do_not_reach_the_next_request_with_the_same_context() -> None:
    first, second = _run_twice({"sid": "s1", "data": {"n": 1, "name": "ada"}})
    assert first == second == {"n": 1, "name": "ada"}


def test_nested_session_values_are_parsed_afresh_for_every_request() -> None:
    first, second = _run_twice({"sid": "s2", "data": {"n": 1, "items": ["a"]}})
    assert first == second == {"n": 1, "items": ["a"]}
