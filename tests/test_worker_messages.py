"""Messages that name the real cause, on the worker's side (issue 11): a refused key, a view's
traceback in debug mode, an application that fails to import, Ctrl-C during start-up, a database
that is not on the models' snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time

import pytest

from fluxon.client import ConnectionHandler
from fluxon.errors import DatabaseError, ViewError
from fluxon.keys import derive_keys, generate_private_key, write_private_key
from support import REPO_ROOT, fluxon_argv, wait_for
from test_broker_support import start_broker


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_a_worker_with_another_deployments_key_says_its_key_was_refused_gh11(procs, tmp_path) -> None:
    ours, theirs = tmp_path / "ours.key", tmp_path / "theirs.key"
    private_key = generate_private_key()
    write_private_key(ours, private_key)
    write_private_key(theirs, generate_private_key())
    broker = start_broker(procs, "--key-file", str(ours), keys=derive_keys(private_key))
    worker = procs.start(fluxon_argv("worker", "tests.apps.echo_app:router", "--key-file", str(theirs),
                                     "--connect", broker.backend), cwd=REPO_ROOT, name="worker")
    log = procs.wait_log(worker, "the broker refused this worker's key")
    assert "max_message_bytes" not in log
    assert broker.ctl("status")["workers"] == 0


def test_a_views_traceback_reaches_the_log_and_str_of_viewerror_in_debug_gh11(procs) -> None:
    broker = start_broker(procs)
    worker = procs.start(fluxon_argv("worker", "tests.apps.echo_app:router", "--insecure", "--debug",
                                     "--connect", broker.backend), cwd=REPO_ROOT, name="worker")
    procs.wait_log(worker, "worker ready")
    with ConnectionHandler("127.0.0.1", _port(broker.frontend), timeout_s=10.0) as client:
        with pytest.raises(ViewError) as raised:
            client.send_request("boom")
    text = str(raised.value)
    assert text.startswith("ZeroDivisionError: boom on purpose")
    assert "remote traceback" in text and "Traceback (most recent call last)" in text
    assert raised.value.remote_traceback.rstrip() in text
    wait_for(lambda: "Traceback (most recent call last)" in procs.log(worker), 5, message="the worker's traceback")
    assert str(ViewError("plain")) == "plain"


def _broken_app(tmp_path, body: str) -> None:
    app = tmp_path / "brokenapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "views.py").write_text(body)
    (app / "router.py").write_text("from fluxon.routing import Router\nfrom . import views\n"
                                   "router = Router(mapping={'x': lambda request: 1})\n")


@pytest.mark.parametrize("command", [["worker"], ["run", "--insecure"], ["schema", "save"]])
def test_an_app_that_fails_to_import_is_one_clear_line_gh11(tmp_path, command) -> None:
    _broken_app(tmp_path, "def view(request):\n    return 1 +\n")
    argv = fluxon_argv(*command[:1], *command[1:], "brokenapp.router:router") if command[0] != "schema" \
        else fluxon_argv("schema", "save", "brokenapp.router:router")
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, done.stderr
    assert "SyntaxError" in error_lines[0] and "views.py, line 2" in error_lines[0]


def test_ctrl_c_during_start_up_prints_nothing_alarming_gh11(procs, tmp_path) -> None:
    _broken_app(tmp_path, "import time\ntime.sleep(30)\n")          # a slow import
    worker = procs.start(fluxon_argv("worker", "brokenapp.router:router", "--insecure", "--processes", "1"),
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, name="worker")
    time.sleep(1.0)
    os.killpg(worker.pid, signal.SIGINT)                           # Ctrl-C reaches the whole group
    assert worker.wait(15) in (1, 130, -signal.SIGINT)
    assert "Traceback" not in procs.log(worker), procs.log(worker)


def test_a_worker_says_which_schema_to_apply_and_no_such_table_says_why_gh11(procs, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FLUXON_TEST_DB", str(tmp_path / "app.sqlite3"))
    monkeypatch.setenv("FLUXON_TEST_SCHEMA_DIR", str(tmp_path / "schema"))
    broker = start_broker(procs)
    worker = procs.start(fluxon_argv("worker", "tests.apps.db_app:router", "--insecure", "--connect", broker.backend),
                         cwd=REPO_ROOT, name="worker")
    log = procs.wait_log(worker, "worker ready")
    assert "fluxon schema save tests.apps.db_app:router" in log and "fluxon schema apply 1" in log
    with ConnectionHandler("127.0.0.1", _port(broker.frontend), timeout_s=10.0) as client:
        with pytest.raises(DatabaseError, match="no such table.*fluxon schema apply N APP"):
            client.send_request("count_notes")
    subprocess.run(fluxon_argv("schema", "save", "tests.apps.db_app:router"), cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=60)
    subprocess.run(fluxon_argv("schema", "apply", "1", "tests.apps.db_app:router"), cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=60)
    again = procs.start(fluxon_argv("worker", "tests.apps.db_app:router", "--insecure", "--connect", broker.backend),
                        cwd=REPO_ROOT, name="worker2")
    assert "does not match the models" not in procs.wait_log(again, "worker ready")
