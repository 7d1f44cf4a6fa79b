"""Issue 17: fluxon.testing.TestServer and the pytest plugin, on the school example."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

from fluxon.errors import Unauthorized, ValidationError
from fluxon.testing import TestServer
from support import REPO_ROOT

# What a user writes: only fluxon.testing and the application's router.
USER_TEST_FILE = '''
import time

import pytest

from examples.school.router import router
from fluxon.errors import Unauthorized
from fluxon.testing import TestServer

ADA = {"username": "ada", "password": "correct horse", "email": "ada@school.example"}


def test_signup_login_whoami():
    started = time.monotonic()
    with TestServer(router) as server:
        client = server.client()
        assert client.send_request("whoami") == {"user": None}
        with pytest.raises(Unauthorized):
            client.send_request("my_courses")
        assert client.send_request("signup", ADA)["user_id"] == 1
        client.send_request("login", {"username": "ada", "password": "correct horse"})
        assert client.send_request("whoami")["user"]["username"] == "ada"
        assert client.send_request("my_courses") == []
        assert [u.username for u in server.db.User.check(fetch=10)] == ["ada"]
    print("ELAPSED", time.monotonic() - started)


def test_with_the_fixtures(fluxon_client, fluxon_server):
    with pytest.raises(Unauthorized):
        fluxon_client.send_request("my_courses")
    assert fluxon_client.send_request("signup", ADA)["user_id"] == 1   # a fresh database per test
    assert fluxon_server.db.User.check(fetch=1)[0].username == "ada"
'''

ADA = {"username": "ada", "password": "correct horse", "email": "ada@school.example"}


@pytest.fixture(scope="module")
def school_router():
    os.environ.setdefault("SCHOOL_DATA_DIR", str(REPO_ROOT / "examples" / "school" / "var"))
    from examples.school.router import router
    return router


def test_a_users_test_file_with_the_plugin_passes_in_under_2_s(tmp_path):
    (tmp_path / "test_school.py").write_text(USER_TEST_FILE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfluxon_app = examples.school.router:router\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SCHOOL_DATA_DIR": str(tmp_path / "var")}
    # no:fluxon + -p: the plugin loads whether or not this install registered its entry point
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                             "-p", "no:fluxon", "-p", "fluxon.pytest_plugin", "--durations=0", str(tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    elapsed = float(result.stdout.split("ELAPSED ", 1)[1].split()[0])
    assert elapsed < 2.0, result.stdout


def test_starts_well_under_a_second_and_behaves_as_in_production(school_router):
    started = time.monotonic()
    with TestServer(school_router) as server:
        assert time.monotonic() - started < 1.0
        client = server.client()
        with pytest.raises(ValidationError, match="password"):
            client.send_request("signup", {**ADA, "password": "short"})
        client.send_request("signup", ADA)
        with pytest.raises(Unauthorized, match="wrong username or password"):
            client.send_request("login", {"username": "ada", "password": "nope"})
        client.send_request("login", {"username": "ada", "password": "correct horse"})
        other = server.client()                       # another client key: another session
        assert other.send_request("whoami") == {"user": None}
        assert client.send_request("whoami")["user"]["id"] == 1
        stored = server.db.execute('SELECT "password" FROM "User"')[0][0]
        assert stored.startswith("scrypt$")
        status = server.broker.status()
        assert status["secure"] is True and status["sessions"] == 2 and status["workers"] == 1


def test_async_client_and_a_fresh_database_each_time(school_router):
    async def calls(server):
        client = server.async_client()
        results = await asyncio.gather(*(client.send_request("whoami") for _ in range(8)))
        await client.aclose()
        return results
    with TestServer(school_router) as server:
        assert asyncio.run(calls(server)) == [{"user": None}] * 8
        server.client().send_request("signup", ADA)
        folder = server.folder
    assert not folder.exists()
    with TestServer(school_router) as server:
        assert server.db.User.check(fetch=10) == []



@pytest.fixture(scope="module")
def echo_server():
    """The client case table's application on a TestServer: the same cases, in secure mode."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.apps.echo_app import router
    with TestServer(router) as server:
        yield server


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_the_client_case_table_on_a_test_server(echo_server, use_async):
    from test_client_cases import CASES

    async def run_async(client):
        out = []
        for route, payload, kwargs in calls:
            try:
                out.append(await client.send_request(route, payload, **kwargs))
            except Exception as exc:  # the table compares exception types
                out.append(exc)
        await client.aclose()
        return out

    calls = [(route, payload, kwargs) for route, payload, kwargs, _, _ in CASES] + [("echo", "next", {})]
    if use_async:
        results = asyncio.run(run_async(echo_server.async_client()))
    else:
        client, results = echo_server.client(), []
        for route, payload, kwargs in calls:
            try:
                results.append(client.send_request(route, payload, **kwargs))
            except Exception as exc:
                results.append(exc)
    for (route, _, _, expected, text), result in zip(CASES, results):
        if isinstance(expected, type) and issubclass(expected, Exception):
            assert type(result) is expected and text in str(result), (route, result)
        else:
            assert result == expected, route
    assert results[-1] == "next"
