"""The broker's worker registry and request queue on their own (no sockets)."""

from __future__ import annotations

from fluxon.broker.workers import Job, RequestQueue, WorkerPool


def _job(job_id: int, deadline: float | None = None) -> Job:
    return Job(job_id, b"client", job_id, "route", b"", b"payload", b"{}", None, deadline)


def test_least_recently_used_worker_with_credit_comes_first() -> None:
    pool = WorkerPool()
    a, _ = pool.register(b"a", 1, {}, now=0.0)
    b, _ = pool.register(b"b", 2, {}, now=0.0)
    assert pool.next_ready() is a
    pool.assign(a, _job(1))                      # a is full: leaves the ready set
    assert pool.next_ready() is b
    pool.assign(b, _job(2))                      # b still has credit, moves to the back (alone)
    assert pool.next_ready() is b
    pool.assign(b, _job(3))
    assert pool.next_ready() is None and not pool.has_ready()
    assert pool.complete(a, 1).job_id == 1       # credit back: a is ready again
    assert pool.next_ready() is a and a.served == 1
    assert pool.in_flight_count() == 2


def test_unknown_jobs_and_workers_are_misses_not_crashes() -> None:
    pool = WorkerPool()
    a, _ = pool.register(b"a", 1, {"idempotent": ["x", 3]}, now=0.0)
    assert a.idempotent == frozenset({"x"})
    assert pool.complete(a, 99) is None
    assert pool.remove(b"nobody") is None
    assert pool.remove(b"a") is a and pool.remove(b"a") is None
    assert pool.complete(a, 99) is None and not pool.has_ready()   # a removed worker never comes back


def test_a_second_registration_replaces_the_first() -> None:
    pool = WorkerPool()
    first, _ = pool.register(b"a", 1, {}, now=0.0)
    pool.assign(first, _job(1))
    second, replaced = pool.register(b"a", 4, {}, now=1.0)
    assert replaced is first and list(replaced.in_flight) == [1]
    assert pool.get(b"a") is second and second.free == 4 and len(pool) == 1


def test_silent_workers_expire() -> None:
    pool = WorkerPool()
    pool.register(b"old", 1, {}, now=0.0)
    pool.register(b"new", 1, {}, now=5.0)
    assert [w.routing_id for w in pool.expired(now=6.0, silence_s=3.0)] == [b"old"]


def test_queue_bound_order_and_deadlines() -> None:
    queue = RequestQueue(max_len=3)
    assert queue.push(_job(1, deadline=10.0)) and queue.push(_job(2)) and queue.push(_job(3, deadline=1.0))
    assert not queue.push(_job(4))
    queue.push_front(_job(0))                    # re-dispatch may exceed the bound
    assert [j.job_id for j in queue.take_expired(now=5.0)] == [3]
    assert [queue.pop().job_id for _ in range(3)] == [0, 1, 2]
    assert queue.pop() is None and not queue and queue.take_all() == []
