"""Sessions survive a broker restart by default (issue 11): `fluxon broker`, `fluxon run` and the
Python API share one rule, the default file's folder is created, ``:memory:`` opts out."""

from __future__ import annotations

import os
import signal

import pytest

from fluxon.broker import BrokerConfig
from fluxon.broker.config import DEFAULT_SESSIONS_PATH, SESSIONS_PATH_ENV
from fluxon.client import ConnectionHandler
from fluxon.endpoint import AsyncServer
from fluxon.routing import Router
from support import REPO_ROOT, fluxon_argv, free_port, wait_for

APP = "tests.apps.echo_app:router"


def _env() -> dict[str, str]:
    """No $FLUXON_SESSIONS_DB (the suite sets one): the built-in default applies."""
    os.environ.pop(SESSIONS_PATH_ENV, None)
    return {"PYTHONPATH": str(REPO_ROOT)}


def _whoami(client: ConnectionHandler):
    try:
        return client.send_request("whoami", timeout=1.0)
    except Exception:
        return None


def _start_broker(procs, cwd, port: int, backend: int, *extra: str):
    broker = procs.start(fluxon_argv("broker", "--insecure", "--bind", f"tcp://127.0.0.1:{port}",
                                     "--backend", f"tcp://127.0.0.1:{backend}", "--control", "none",
                                     "--heartbeat-interval-s", "0.1", *extra),
                         env=_env(), cwd=cwd, name="broker")
    procs.wait_log(broker, "broker ready")
    return broker


@pytest.mark.parametrize("extra, persisted", [((), True), (("--sessions-db", ":memory:"), False)],
                         ids=["default-file", "memory"])
def test_broker_sessions_survive_a_restart_by_default_gh11(procs, tmp_path, extra, persisted) -> None:
    port, backend = free_port(), free_port()
    broker = _start_broker(procs, tmp_path, port, backend, *extra)
    assert (tmp_path / DEFAULT_SESSIONS_PATH).exists() == persisted   # its folder .fluxon/ was created
    procs.start(fluxon_argv("worker", APP, "--insecure", "--connect", f"tcp://127.0.0.1:{backend}",
                            "--heartbeat-interval-s", "0.1"), env=_env(), cwd=tmp_path, name="worker")
    with ConnectionHandler("127.0.0.1", port, timeout_s=5.0) as client:
        wait_for(lambda: _whoami(client), 15, message="the worker to serve")
        client.send_request("login", 42)
        before = client.send_request("whoami")
        assert before["user_id"] == 42
        assert procs.stop(broker, signal.SIGTERM) == 0
        _start_broker(procs, tmp_path, port, backend, *extra)
        after = wait_for(lambda: _whoami(client), 15, message="the restarted broker to serve")
    if persisted:
        assert after == before                      # same session, same login
    else:
        assert after["user_id"] is None and after["sid"] != before["sid"]


def test_sessions_db_folder_is_created_for_fluxon_run_gh11(procs, tmp_path) -> None:
    port, backend, control = free_port(), free_port(), free_port()
    sessions = tmp_path / "state" / "deep" / "sessions.sqlite3"
    server = procs.start(fluxon_argv("run", APP, "--insecure", "--workers", "1", "--port", str(port),
                                     "--backend-port", str(backend), "--control-port", str(control),
                                     "--sessions-db", str(sessions)), env=_env(), cwd=tmp_path, name="run")
    procs.wait_log(server, "worker ready")
    with ConnectionHandler("127.0.0.1", port, timeout_s=5.0) as client:
        client.send_request("login", 7)
    assert sessions.exists() and (tmp_path / "state" / "deep" / "sessions.sqlite3.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / ".fluxon").exists()


def test_python_api_uses_the_same_default_gh11(monkeypatch) -> None:
    monkeypatch.delenv(SESSIONS_PATH_ENV)
    assert BrokerConfig().sessions_file == DEFAULT_SESSIONS_PATH
    assert AsyncServer(router=Router())._sessions_path() == DEFAULT_SESSIONS_PATH
    assert BrokerConfig(sessions_path=":memory:").sessions_file is None
    assert AsyncServer(router=Router(), sessions_path=":memory:")._sessions_path() == ":memory:"
    monkeypatch.setenv(SESSIONS_PATH_ENV, "/srv/fluxon/sessions.sqlite3")
    assert BrokerConfig().sessions_file == "/srv/fluxon/sessions.sqlite3"
