"""The async client's shared deadline timer: every request expires on time, answered ones never do."""

from __future__ import annotations

import asyncio

from fluxon.client.aio import _Deadlines


def _run(scenario, expected_count: int) -> list[int]:
    """Run ``scenario``, then wait (up to 5 s) until ``expected_count`` requests expired."""
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        pending: dict[int, asyncio.Future] = {}
        expired: list[int] = []
        deadlines = _Deadlines(loop, pending, expired.append)
        try:
            await scenario(loop, pending, deadlines)
            give_up = loop.time() + 5.0
            while len(expired) < expected_count and loop.time() < give_up:
                await asyncio.sleep(0.01)
        finally:
            deadlines.close()
        return expired
    return asyncio.run(main())


def test_a_shorter_timeout_after_a_longer_one_expires_first() -> None:
    async def scenario(loop, pending, deadlines) -> None:
        for request_id, timeout_s in ((1, 5.0), (2, 0.05)):
            pending[request_id] = loop.create_future()
            deadlines.add(timeout_s, request_id)
    assert _run(scenario, 1) == [2]  # request 1 (5 s) is still waiting when request 2 (50 ms) expired


def test_answered_requests_never_expire_and_the_others_do() -> None:
    async def scenario(loop, pending, deadlines) -> None:
        for request_id in range(1, 2001):  # past the compaction threshold
            pending[request_id] = loop.create_future()
            deadlines.add(0.05 if request_id == 2000 else 0.02, request_id)
            if request_id != 7:
                del pending[request_id]  # answered
        pending[2000] = loop.create_future()
    assert _run(scenario, 2) == [7, 2000]
