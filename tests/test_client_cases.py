"""One table of cases for the sync and the async client, against a real broker and real workers."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from e2e_support import Cluster
from fluxon.client import USE_CLIENT_DEFAULT, AsyncConnectionHandler, ConnectionHandler
from fluxon.errors import (ConfigurationError, ConnectionError, RouteNotFound, SerializationError, Timeout,
                           Unauthorized, ValidationError, ViewError)
from support import process_group, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with process_group(tmp_path_factory.mktemp("client-cases")) as procs:
        cluster = Cluster(procs)
        cluster.start_broker()
        cluster.start_worker("--concurrency", "4")
        cluster.start_worker("--concurrency", "4")
        yield cluster


class SyncCaller:
    """Runs a list of calls on a ConnectionHandler; each result is a value or the raised exception."""

    def __init__(self, port: int) -> None:
        self.client = ConnectionHandler("127.0.0.1", port, timeout_s=5.0)

    def calls(self, *calls):
        out = []
        with self.client as client:
            for route, payload, kwargs in calls:
                try:
                    out.append(client.send_request(route, payload, **kwargs))
                except Exception as exc:  # the table compares exception types
                    out.append(exc)
        return out


class AsyncCaller(SyncCaller):
    def __init__(self, port: int) -> None:
        self.client = AsyncConnectionHandler("127.0.0.1", port, timeout_s=5.0)

    def calls(self, *calls):
        async def main():
            out = []
            async with self.client as client:
                for route, payload, kwargs in calls:
                    try:
                        out.append(await client.send_request(route, payload, **kwargs))
                    except Exception as exc:
                        out.append(exc)
            return out
        return asyncio.run(main())


CLIENTS = [pytest.param(SyncCaller, id="sync"), pytest.param(AsyncCaller, id="async")]

CASES = [
    # route, payload, kwargs, expected value or error type, text in the error message
    ("echo", {"a": [1, 2.5, "x"]}, {}, {"a": [1, 2.5, "x"]}, None),
    ("async_echo", 7, {}, {"async": True, "payload": 7}, None),
    ("echo", b"\x00big" * 300_000, {}, b"\x00big" * 300_000, None),   # > 64 KiB: a frame of its own
    ("nope", None, {}, RouteNotFound, "nope"),
    ("boom", None, {}, ViewError, "ZeroDivisionError"),
    ("async_boom", None, {}, ViewError, "KeyError"),
    ("invalid", None, {}, ValidationError, "name is required"),
    ("unpicklable", None, {}, SerializationError, "lock"),
    ("secret", None, {}, Unauthorized, "logged-in"),
    ("slow", 1.0, {"timeout": 0.2}, Timeout, "within 0.2s"),
]


@pytest.mark.parametrize("caller", CLIENTS)
@pytest.mark.parametrize("route, payload, kwargs, expected, text", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_case_then_next_request_succeeds(cluster, caller, route, payload, kwargs, expected, text):
    result, after = caller(cluster.port).calls((route, payload, kwargs), ("echo", "next", {}))
    if isinstance(expected, type) and issubclass(expected, Exception):
        assert type(result) is expected, result
        assert text in str(result)
    else:
        assert result == expected
    assert after == "next"  # never the late reply of a request that timed out


@pytest.mark.parametrize("caller", CLIENTS)
def test_late_reply_is_discarded(cluster, caller):
    results = caller(cluster.port).calls(("slow", 0.3, {"timeout": 0.05}), ("slow", 0.5, {}), ("echo", 1, {}))
    assert isinstance(results[0], Timeout)
    assert isinstance(results[1], int) and results[2] == 1


@pytest.mark.parametrize("caller", CLIENTS)
def test_login_session_round_trip(cluster, caller):
    before, sid, who, secret, _, after = caller(cluster.port).calls(
        ("secret", None, {}), ("login", 42, {}), ("whoami", None, {}), ("secret", None, {}),
        ("logout", None, {}), ("secret", None, {}))
    assert isinstance(before, Unauthorized) and isinstance(after, Unauthorized)
    assert who["user_id"] == 42 and who["session"] == {"logins": 1}
    assert who["sid"] != sid  # login rotated the session id
    assert secret == "the secret"


def test_async_64_concurrent_requests_all_complete_over_several_workers(cluster):
    async def main():
        async with AsyncConnectionHandler("127.0.0.1", cluster.port, timeout_s=20.0) as client:
            return await asyncio.gather(*(client.send_request("slow", 0.05) for _ in range(64)))
    pids = asyncio.run(main())
    assert len(pids) == 64
    assert set(pids) == {w.pid for w in cluster.workers}


def test_sync_client_is_safe_to_share_between_threads(cluster):
    results: dict[int, list] = {}
    with ConnectionHandler("127.0.0.1", cluster.port, timeout_s=10.0) as client:
        def work(n: int) -> None:
            results[n] = [client.send_request("echo", (n, i)) for i in range(20)]
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: [(n, i) for i in range(20)] for n in range(8)}


def test_sync_client_closes_the_socket_of_a_thread_that_ended(cluster):
    with ConnectionHandler("127.0.0.1", cluster.port, timeout_s=10.0) as client:
        assert client.send_request("echo", "main") == "main"
        for n in range(5):
            thread = threading.Thread(target=client.send_request, args=("echo", n))
            thread.start()
            thread.join(10)
        gc.collect()
        wait_for(lambda: len(client._links) == 1, 5, message="the ended threads' sockets closed")
        assert client.send_request("echo", "still") == "still"


@pytest.mark.parametrize("caller", CLIENTS)
def test_closed_client_refuses_reuse(cluster, caller):
    c = caller(cluster.port)
    assert c.calls(("echo", 1, {})) == [1]
    with pytest.raises(ConfigurationError, match="closed"):
        c.calls(("echo", 2, {}))


@pytest.mark.parametrize("caller", CLIENTS)
def test_no_broker_is_a_connection_error(caller):
    from support import free_port
    port = free_port()
    (result,) = caller(port).calls(("echo", 1, {"timeout": 0.3}))
    assert isinstance(result, ConnectionError) and "is the broker running" in str(result)


def test_plain_mode_refuses_remote_hosts_unless_trusted():
    with pytest.raises(ConfigurationError, match="server_key"):
        ConnectionHandler("192.0.2.1", 8080)
    ConnectionHandler("192.0.2.1", 8080, trust_server=True).close()
    ConnectionHandler("::1", 8080).close()
    with pytest.raises(ConfigurationError, match="needs server_key"):
        AsyncConnectionHandler("127.0.0.1", 8080, client_key="/nonexistent")
    with pytest.raises(ConfigurationError, match="40-character"):
        ConnectionHandler("127.0.0.1", 8080, server_key="not-a-key")


def test_timeout_sentinel_and_validation():
    client = ConnectionHandler("127.0.0.1", 1, timeout_s=3.0)
    assert repr(USE_CLIENT_DEFAULT) == "USE_CLIENT_DEFAULT"
    assert client._timeout_for(USE_CLIENT_DEFAULT) == 3.0 and client._timeout_for(None) is None
    with pytest.raises(ConfigurationError):
        client.send_request("echo", timeout=0)
    client.close()
