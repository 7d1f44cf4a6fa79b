"""The control socket: status, workers, sessions, drain/resume, debug, log level, stop, and admin jobs."""

from __future__ import annotations

import threading

import pytest

from fluxon import protocol as p
from fluxon.errors import BadRequest, Unavailable, WorkerLost
from support import wait_for
from test_broker_support import FakeClient, FakeWorker, serving_broker, start_broker, zctx  # noqa: F401


def test_status_workers_and_sessions(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx, credit=3)
    client = FakeClient(zctx, broker.frontend)
    client.request(1)
    job = worker.recv_job()
    status = broker.ctl("status")
    assert status["in_flight"] == 1 and status["draining"] is False and status["uptime_s"] > 0
    assert status["secure"] is False and status["frontend"] == broker.frontend
    rows = broker.ctl("workers")["workers"]
    assert len(rows) == 1
    assert (rows[0]["credit"], rows[0]["in_flight"], rows[0]["host"], rows[0]["served"]) == (3, 1, "test", 0)
    worker.reply(job, b'{"code": "view_error", "message": "boom"}', status=p.STATUS_ERROR)
    token = client.reply().token                 # first contact: the broker issued a session
    assert token
    sessions = broker.ctl("sessions")
    assert sessions["count"] == 1 == status["sessions"]
    sid = sessions["sessions"][0]["sid"]
    assert broker.ctl("sessions-kill", {"sid": sid}) == {"sid": sid, "killed": True}
    assert broker.ctl("sessions")["count"] == 0
    assert broker.ctl("workers")["workers"][0]["served"] == 1
    assert broker.ctl("status")["errors"] == {"view_error": 1}


def test_drain_queues_requests_until_resume(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx)
    assert broker.ctl("drain") == {"draining": True}
    client = FakeClient(zctx, broker.frontend)
    client.request(1)
    assert worker.no_job_for(0.3)
    assert broker.ctl("status")["queue_depth"] == 1
    broker.ctl("resume")
    worker.reply(worker.recv_job(), b"after resume")
    assert client.reply().body == b"after resume"


def test_debug_and_log_level(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx)
    assert broker.ctl("debug", {"on": True}) == {"debug": True}
    client = FakeClient(zctx, broker.frontend)
    client.request(1)
    job = worker.recv_job()
    assert b'"debug":true' in job.context
    worker.reply(job, b"")
    client.reply()
    assert broker.ctl("log-level", {"level": "debug"}) == {"level": "DEBUG"}
    assert broker.ctl("status")["debug"] is True


@pytest.mark.parametrize("args, goodbye", [({}, p.Shutdown), ({"keep_workers": True}, p.Disconnect)])
def test_stop_command_stops_the_broker_with_exit_0_and_tells_the_workers(procs, zctx, args, goodbye) -> None:
    broker, worker = serving_broker(procs, zctx)
    assert broker.ctl("stop", args)["stopping"] is True
    assert isinstance(worker.recv_message(), goodbye)
    assert broker.proc.wait(10) == 0


def test_stop_command_refuses_a_malformed_keep_workers(procs) -> None:
    broker = start_broker(procs)
    with pytest.raises(BadRequest):
        broker.ctl("stop", {"keep_workers": "yes"})
    assert broker.ctl("status")["stopping"] is False


def test_admin_waits_for_in_flight_runs_on_one_worker_and_queued_requests_follow(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx, credit=2)
    client = FakeClient(zctx, broker.frontend)
    client.request(1)
    busy_job = worker.recv_job()
    answer: dict = {}
    admin = threading.Thread(target=lambda: answer.update(
        result=broker.ctl("admin", {"op": "saveschema"}, timeout_s=10)))
    admin.start()
    try:
        wait_for(lambda: broker.ctl("status")["admin_running"], 5, message="admin operation started")
        client.request(2)                        # arrives during the admin job: waits in the queue
        assert worker.no_job_for(0.3)            # neither the ADMIN (a job is in flight) nor request 2
        worker.reply(busy_job, b"first")
        assert client.reply().body == b"first"
        op = worker.recv_message()
        assert isinstance(op, p.Admin) and op.op == {"op": "saveschema"}
        assert worker.no_job_for(0.2)            # request 2 still waits while the ADMIN runs
        worker.send(p.encode_admin_reply(op.job_id, p.STATUS_OK, {"saved": "schema_00001.sql"}))
        admin.join(10)
        assert answer["result"] == {"saved": "schema_00001.sql"}
        worker.reply(worker.recv_job(), b"second")
        assert client.reply().body == b"second"
    finally:
        admin.join(10)


def test_admin_error_and_lost_worker_are_relayed(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx, "--heartbeat-interval-s", "0.1")
    failing: dict = {}
    thread = threading.Thread(target=lambda: failing.update(error=_admin_error(broker)))
    thread.start()
    op = worker.recv_message()
    worker.send(p.encode_admin_reply(op.job_id, p.STATUS_ERROR, {"code": "schema_error", "message": "no dir"}))
    thread.join(10)
    assert failing["error"].code == "schema_error"
    thread = threading.Thread(target=lambda: failing.update(error=_admin_error(broker)))
    thread.start()
    worker.recv_message()
    worker.send(p.encode_disconnect())
    thread.join(10)
    assert isinstance(failing["error"], WorkerLost)
    worker = FakeWorker(zctx, broker.backend)
    thread = threading.Thread(target=lambda: failing.update(error=_admin_error(broker)))
    thread.start()
    op = worker.recv_message()
    with pytest.raises(Unavailable):            # a second admin while one runs is refused
        broker.ctl("admin", {"op": "schemas"})
    worker.send(p.encode_admin_reply(op.job_id, p.STATUS_OK, []))
    thread.join(10)
    assert failing["error"] is None


def _admin_error(broker):
    try:
        broker.ctl("admin", {"op": "schemas"}, timeout_s=10)
    except Exception as exc:  # the test inspects which typed error arrived
        return exc
    return None
