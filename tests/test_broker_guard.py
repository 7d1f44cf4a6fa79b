"""broker/guard.py and broker/limits.py in-process: bounded JSON, and the session budgets of the store."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxon.broker.guard import error_code, json_depth_exceeds, loads_bounded
from fluxon.broker.sessions import SessionStore
from fluxon.errors import BadRequest, Overloaded

HMAC_KEY = b"k" * 32
KEY = "A" * 40

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                 max_size=3),
                     max_leaves=30)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_json, st.integers(min_value=1, max_value=8))
def test_the_depth_check_on_the_bytes_agrees_with_the_parsed_depth(value, limit) -> None:
    data = json.dumps(value).encode()
    assert json_depth_exceeds(data, limit) == (_depth(value) > limit)


def test_deep_or_large_json_is_refused_before_parsing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadRequest, match="deeper than 64"):
        loads_bounded(deep, max_bytes=1 << 20, max_depth=64, what="session changes")
    with pytest.raises(BadRequest, match="exceed 10 bytes"):
        loads_bounded(b'{"data": {}}', max_bytes=10, max_depth=64, what="session changes")
    assert loads_bounded(b'{"a": [[1]]}', max_bytes=100, max_depth=3, what="x") == {"a": [[1]]}
    assert error_code(b'{"code": "bad_request", "details": ' + deep + b"}", 64) == "unparsed_error"
    assert error_code(b'{"code": "bad_request"}', 64) == "bad_request"


def _changes(**body: object) -> bytes:
    return json.dumps(body).encode()


def test_rotations_are_rate_limited_per_key_and_a_chain_of_old_tokens_follows() -> None:
    store = SessionStore(None, HMAC_KEY, rotations_per_minute=5)
    session = store.resolve(KEY, b"")
    tokens = []
    for _ in range(5):
        tokens.append(session.token)
        session = store.apply_changes(session, _changes(logout=True))
    with pytest.raises(Overloaded) as refused:
        store.apply_changes(session, _changes(logout=True))
    assert refused.value.details["limit"] == "rotations_per_minute"
    assert all(store.resolve(KEY, token).sid == session.sid for token in tokens)  # every old token follows
    other = store.resolve("B" * 40, b"")
    assert store.apply_changes(other, _changes(login=1)).user_id == 1  # another key has its own budget


def test_logged_in_sessions_leave_the_reserve_free_and_eviction_takes_the_least_recently_used() -> None:
    store = SessionStore(None, HMAC_KEY, max_sessions=10, session_reserve=0.2)
    for uid in range(8):
        store.apply_changes(store.resolve(f"{uid:040d}", b""), _changes(login=uid))
    with pytest.raises(Overloaded) as refused:
        store.apply_changes(store.resolve("x" * 40, b""), _changes(login=99))
    assert refused.value.details["limit"] == "session_reserve"
    kept = store.resolve("k" * 40, b"")
    for n in range(20):  # strangers come and go; the active anonymous session is used meanwhile
        store.resolve(f"s{n:039d}", b"")
        assert store.resolve("k" * 40, kept.token).sid == kept.sid
    assert len(store) == 10


def test_a_failed_broker_is_recorded_so_fluxon_run_exits_non_zero() -> None:
    import zmq

    from fluxon.broker import Broker, BrokerConfig
    from fluxon.endpoint import _run_broker
    from fluxon.errors import ConfigurationError
    from fluxon.worker.supervisor import Supervisor

    context = zmq.Context()
    holder = context.socket(zmq.ROUTER)
    port = holder.bind_to_random_port("tcp://127.0.0.1")
    try:
        broker = Broker(BrokerConfig(frontend=f"tcp://127.0.0.1:{port}", backend="tcp://127.0.0.1:0",
                                     control=None))
        supervisor = Supervisor(lambda: 0, 1)
        failures: list[BaseException] = []
        _run_broker(broker, supervisor, failures)  # run() binds: the port is taken, so the broker fails
        assert len(failures) == 1 and isinstance(failures[0], ConfigurationError)
        assert supervisor.run(install_signal_handlers=False) == 0  # told to stop: returns at once
    finally:
        holder.close(0)
        context.term()


def test_the_queue_is_bounded_by_bytes_and_by_a_share_per_key() -> None:
    from fluxon.broker.workers import Job, RequestQueue

    class _Session:
        def __init__(self, key: str) -> None:
            self.client_key = key

    def job(job_id: int, key: str, size: int) -> Job:
        return Job(job_id, b"rid", job_id, "echo", b"", b"x" * size, b"{}", _Session(key), None)

    queue = RequestQueue(100, 1000, share=0.5)
    assert queue.push(job(1, "a", 400)) and queue.push(job(2, "b", 400))
    assert queue.refusal(job(3, "a", 200)) == "queue_share"      # a: 600 > its 500
    assert queue.refusal(job(4, "c", 300)) == "max_queue_bytes"  # 1100 > 1000
    assert queue.push(job(5, "c", 200)) and queue.bytes == 1000
    assert queue.pop().job_id == 1 and queue.push(job(6, "a", 100)) and queue.bytes == 700
    queue.take_all()
    assert queue.bytes == 0 and queue.push(job(7, "a", 500))
