"""The console's schema commands act on the models as they are on disk (issue 11), and the
read-only `schemas` does not pause dispatch."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading

from fluxon import protocol as p
from fluxon.broker import send_control_command
from support import fluxon_argv
from test_broker_support import FakeClient, FakeWorker, start_broker, zctx  # noqa: F401 (fixture)

MODELS_V1 = """
from fluxon.database import models

class Pupil(models.Model):
    name = models.CharField(max_length=50)
"""
ROUTER = """
import os
from fluxon.routing import Router
from . import models

HERE = os.path.dirname(os.path.abspath(__file__))
router = Router(mapping={"ping": lambda request: "pong"}, models=models,
                database_path=os.path.join(HERE, "var", "app.sqlite3"),
                database_schema_dir=os.path.join(HERE, "var", "schema"))
"""


def _ctl(broker, *args: str) -> dict:
    done = subprocess.run(fluxon_argv("ctl", "--insecure", "--control", broker.control, "--json", *args),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_saveschema_sees_models_edited_after_the_worker_started_gh11(procs, tmp_path) -> None:
    app = tmp_path / "diskapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(textwrap.dedent(MODELS_V1))
    (app / "router.py").write_text(textwrap.dedent(ROUTER))
    broker = start_broker(procs)
    worker = procs.start(fluxon_argv("worker", "diskapp.router:router", "--insecure", "--connect", broker.backend),
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, name="worker")
    procs.wait_log(worker, "worker ready")
    assert _ctl(broker, "saveschema")["number"] == 1
    (app / "models.py").write_text(textwrap.dedent(MODELS_V1) + "    age = models.IntegerField(null=True)\n")
    second = _ctl(broker, "saveschema")                   # the same worker, not restarted
    assert second["created"] and second["number"] == 2, second
    assert '"age"' in (app / "var" / "schema" / "schema_00002.sql").read_text()
    assert [row["number"] for row in _ctl(broker, "schemas")] == [1, 2]
    applied = _ctl(broker, "updateschema", "2")
    assert applied["number"] == 2 and "backup" in applied


def test_schemas_does_not_pause_dispatch_gh11(procs, zctx) -> None:
    broker = start_broker(procs)
    worker = FakeWorker(zctx, broker.backend, credit=2)
    broker.wait_workers(1)
    answer: dict = {}
    asking = threading.Thread(target=lambda: answer.setdefault(
        "schemas", send_control_command(broker.control, "admin", {"op": "schemas"}, timeout_s=10)))
    asking.start()
    admin = worker.recv_message()
    assert isinstance(admin, p.Admin)                     # the worker has the read-only job ...
    client = FakeClient(zctx, broker.frontend)
    client.request(1, timeout_ms=5000)
    job = worker.recv_job()                               # ... and still gets requests meanwhile
    worker.reply(job, b"ok")
    assert client.reply().status == p.STATUS_OK
    worker.send(p.encode_admin_reply(admin.job_id, p.STATUS_OK, []))
    asking.join(10)
    assert answer["schemas"] == []
