"""The worker side of issue 10, in process: decodes that stay off the event loop, errors always answered."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import e2e_support  # noqa: F401  (puts the repository root on sys.path for tests.apps)
from attacks import payloads
from fluxon.errors import BadRequest, ValidationError, decode_error
from fluxon.protocol import STATUS_ERROR, STATUS_OK
from fluxon.serialization import DecodeLimits, dumps, loads_trusted
from fluxon.worker.execution import ViewRunner
from tests.apps.hostile_app import router

_CONTEXT = json.dumps({"key": "attacker-key"}).encode()


@pytest.fixture
def runner():
    runner = ViewRunner(router, concurrency=2)
    yield runner
    runner.shutdown()


def _run(runner: ViewRunner, route: str, payload: bytes, timeout_s: float = 10.0):
    async def go():
        return await asyncio.wait_for(runner.run(route, _CONTEXT, payload), timeout_s)
    return asyncio.run(go())


def test_budget_refusal_is_counted_and_logged_with_limit_and_key_gh10(runner, caplog) -> None:
    caplog.set_level("WARNING", logger="fluxon.security")
    for _ in range(3):
        outcome = _run(runner, "echo", payloads.deep_tuple_key())
        error = decode_error(outcome.body)
        assert outcome.status == STATUS_ERROR and isinstance(error, BadRequest)
        assert error.details["limit"] == "max_depth"
    assert runner.refusals["max_depth"] == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "fluxon.security"]
    assert len(lines) == 1 and "attacker-key" in lines[0] and "max_depth" in lines[0]  # throttled


def test_decimal_bomb_never_reaches_the_view_gh10(runner) -> None:
    started = time.monotonic()
    error = decode_error(_run(runner, "count", payloads.decimal_exponent_bomb()).body)
    assert error.details["limit"] == "max_decimal_exponent" and time.monotonic() - started < 3


@pytest.mark.parametrize("route", ["echo", "async_echo"])
def test_a_large_decode_leaves_the_event_loop_free_gh10(runner, route) -> None:
    """A payload that takes a while to decode (a million small ints) runs in a view thread."""
    payload = dumps(list(range(1_000_000)))

    async def go():
        gaps, last = [], time.monotonic()
        task = asyncio.ensure_future(runner.run(route, _CONTEXT, payload))
        while not task.done():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        return task.result(), max(gaps), len(gaps)

    outcome, worst_gap, ticks = asyncio.run(asyncio.wait_for(go(), 60))
    assert outcome.status == STATUS_OK and loads_trusted(outcome.body) == list(range(1_000_000))
    assert ticks > 5 and worst_gap < 0.5, (ticks, worst_gap)


def test_error_with_deep_details_is_answered_without_them_gh10(runner) -> None:
    """ValidationError(details={"value": 985-deep list}): the view thread survives and answers."""
    for depth in (985, 988, 40):
        outcome = _run(runner, "reject", payloads.deep_list(depth))
        error = decode_error(outcome.body)
        assert outcome.status == STATUS_ERROR and isinstance(error, ValidationError)
        assert error.message == "rejected" and "omitted" in error.details
    shallow = decode_error(_run(runner, "reject", dumps([[1]])).body)
    assert shallow.details == {"value": [[1]]}
    huge = decode_error(_run(runner, "reject", dumps("x" * 200_000)).body)
    assert "omitted" in huge.details
    assert loads_trusted(_run(runner, "echo", dumps("still here")).body) == "still here"
    runner.shutdown()  # joins the view threads: none is stuck


def test_limits_come_from_the_router_or_the_runner() -> None:
    runner = ViewRunner(router, concurrency=1, decode_limits=DecodeLimits(max_depth=3))
    try:
        assert _run(runner, "echo", payloads.deep_list(3)).status == STATUS_OK
        error = decode_error(_run(runner, "echo", payloads.deep_list(4)).body)
        assert error.details["limit"] == "max_depth" and "max_depth=3" in error.message
    finally:
        runner.shutdown()
