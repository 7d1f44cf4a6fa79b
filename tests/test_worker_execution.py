"""The worker's view execution and error mapping, in process."""

from __future__ import annotations

import asyncio
import json
import pickle

import pytest
from hypothesis import given, settings, strategies as st

from fluxon.errors import (BadRequest, RouteNotFound, SerializationError, Unauthorized,
                           ValidationError, ViewError, decode_error)
from fluxon.serialization import dumps, loads_trusted
from fluxon.protocol import STATUS_ERROR, STATUS_OK
from fluxon.worker.execution import ViewRunner

import e2e_support  # noqa: F401  (puts the repository root on sys.path for tests.apps)
from tests.apps.echo_app import router


@pytest.fixture
def runner():
    runner = ViewRunner(router, concurrency=4)
    yield runner
    runner.shutdown()


def run(runner, route, payload=None, context=None, raw=None):
    ctx = json.dumps(context or {}).encode()
    return asyncio.run(runner.run(route, ctx, dumps(payload) if raw is None else raw))


def test_sync_and_async_views_return_pickled_results(runner):
    status, changes, body = run(runner, "echo", {"a": [1, 2]})
    assert (status, changes, loads_trusted(body)) == (STATUS_OK, b"", {"a": [1, 2]})
    status, _, body = run(runner, "async_echo", 5)
    assert (status, loads_trusted(body)) == (STATUS_OK, {"async": True, "payload": 5})


@pytest.mark.parametrize("route, payload, context, error, text", [
    ("nope", None, None, RouteNotFound, "nope"),
    ("boom", None, None, ViewError, "ZeroDivisionError: boom on purpose"),
    ("async_boom", None, None, ViewError, "KeyError"),
    ("invalid", None, None, ValidationError, "name is required"),
    ("unpicklable", None, None, SerializationError, "lock"),
    ("secret", None, None, Unauthorized, "logged-in"),
])
def test_failures_map_to_typed_errors(runner, route, payload, context, error, text):
    status, changes, body = run(runner, route, payload, context)
    exc = decode_error(body)
    assert status == STATUS_ERROR and changes == b""
    assert type(exc) is error and text in exc.message
    assert exc.remote_traceback is None


def test_view_error_carries_type_and_traceback_only_in_debug(runner):
    exc = decode_error(run(runner, "boom", context={"debug": True}).body)
    assert isinstance(exc, ViewError) and exc.exc_type == "ZeroDivisionError"
    assert "Traceback" in exc.remote_traceback


def test_forbidden_payload_is_bad_request_unless_trusted(runner):
    evil = pickle.dumps(ValueError("x"))
    exc = decode_error(run(runner, "echo", raw=evil).body)
    assert isinstance(exc, BadRequest) and "builtins.ValueError" in exc.message
    status, _, body = run(runner, "echo", raw=evil, context={"trusted": True})
    assert status == STATUS_OK and isinstance(loads_trusted(body), ValueError)


def test_malformed_context_is_bad_request(runner):
    body = asyncio.run(runner.run("echo", b"\xff{", dumps(1))).body
    assert isinstance(decode_error(body), BadRequest)


def test_login_changes_and_login_required(runner):
    outcome = run(runner, "login", 9, {"sid": "s1", "data": {}})
    assert outcome.status == STATUS_OK
    assert json.loads(outcome.changes) == {"login": 9, "data": {"logins": 1}}
    assert loads_trusted(run(runner, "secret", context={"uid": 9}).body) == "the secret"


@pytest.fixture(scope="module")
def shared_runner():
    runner = ViewRunner(router, concurrency=2)
    yield runner
    runner.shutdown()


@settings(max_examples=150, deadline=None)
@given(route=st.sampled_from(["echo", "whoami", "secret", "nope", ""]) | st.text(max_size=20),
       context=st.binary(max_size=64) | st.builds(lambda d: json.dumps(d).encode(),
                                                 st.dictionaries(st.sampled_from(["sid", "uid", "data", "trusted",
                                                                                  "debug", "peer", "key"]),
                                                                 st.none() | st.integers() | st.text(max_size=5)
                                                                 | st.booleans())),
       payload=st.binary(max_size=64) | st.builds(lambda b: pickle.dumps(b, protocol=5), st.binary(max_size=32)))
def test_no_request_bytes_can_make_the_runner_raise(shared_runner, route, context, payload):
    outcome = asyncio.run(shared_runner.run(route, context, payload))
    assert outcome.status in (STATUS_OK, STATUS_ERROR)
    if outcome.status == STATUS_ERROR:
        assert decode_error(outcome.body).code != "protocol_error"  # always a well-formed error body

