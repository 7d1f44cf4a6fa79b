"""Schema admin jobs travel console -> broker -> one worker -> fluxon.database.schema and back."""

from __future__ import annotations

import json
import subprocess

from e2e_support import Cluster
from fluxon.client import ConnectionHandler
from fluxon.worker.admin import run_admin
from support import REPO_ROOT, fluxon_argv, free_port
from tests.apps.db_app import router as db_router


def ctl(control: int, *args: str) -> dict:
    done = subprocess.run(fluxon_argv("ctl", "--control", f"tcp://127.0.0.1:{control}", "--insecure", "--json",
                                      *args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_saveschema_updateschema_and_schemas_run_on_a_worker(procs, tmp_path, monkeypatch):
    monkeypatch.setenv("FLUXON_TEST_DB", str(tmp_path / "app.sqlite3"))
    monkeypatch.setenv("FLUXON_TEST_SCHEMA_DIR", str(tmp_path / "schema"))
    (tmp_path / "schema").mkdir()
    control = free_port()
    cluster = Cluster(procs)
    cluster.broker = procs.start(fluxon_argv(
        "broker", "--bind", f"tcp://127.0.0.1:{cluster.port}", "--backend", cluster.backend,
        "--control", f"tcp://127.0.0.1:{control}", "--heartbeat-interval-s", "0.1", "--insecure"),
        cwd=REPO_ROOT, name="broker")
    procs.wait_log(cluster.broker, "broker ready")
    worker = procs.start(fluxon_argv("worker", "tests.apps.db_app:router", "--connect", cluster.backend,
                                     "--heartbeat-interval-s", "0.1", "--insecure"), cwd=REPO_ROOT, name="worker")
    procs.wait_log(worker, "worker ready")

    saved = ctl(control, "saveschema")
    assert (tmp_path / "schema" / "schema_00001.sql").exists(), saved
    ctl(control, "updateschema", "1")
    (listed,) = ctl(control, "schemas")
    assert (listed["number"], listed["current"]) == (1, True)
    with ConnectionHandler("127.0.0.1", cluster.port, timeout_s=5.0) as client:
        assert client.send_request("add_note", "after migration") == 1
    assert "admin operation 'updateschema' done" in procs.log(worker)


def test_admin_errors_are_error_dicts_not_crashes():
    ok, error = run_admin(db_router, {"op": "format-disk"})
    assert not ok and error["code"] == "bad_request" and "format-disk" in error["message"]
    ok, error = run_admin(db_router, {"op": "updateschema", "number": "one"})
    assert not ok and error["code"] == "bad_request"
    from fluxon.routing import Router
    ok, error = run_admin(Router(), {"op": "saveschema"})
    assert not ok and error["code"] == "configuration_error" and "Router(" in error["message"]
