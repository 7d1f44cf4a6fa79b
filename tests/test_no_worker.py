"""With no worker registered, requests get Unavailable naming the cause (issue 11), after a grace
that lets restarting workers come back; admin commands fail fast; a client leaving is no error."""

from __future__ import annotations

import time

import pytest

from fluxon import protocol as p
from fluxon.client import ConnectionHandler
from fluxon.errors import Unavailable
from support import fluxon_argv, wait_for
from test_broker_support import FakeClient, FakeWorker, start_broker, zctx  # noqa: F401 (fixture)


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_without_a_worker_a_request_gets_unavailable_after_the_grace_gh11(procs) -> None:
    broker = start_broker(procs, "--no-worker-grace-s", "0.5")
    with ConnectionHandler("127.0.0.1", _port(broker.frontend), timeout_s=10.0) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no worker is registered"):
            client.send_request("echo", 1)                 # waits out the grace, not the deadline
        assert time.monotonic() - started < 5.0
        with pytest.raises(Unavailable, match="no worker is registered"):
            client.send_request("echo", 1)                 # past the grace: at once
        assert broker.ctl("status")["errors"].get("unavailable", 0) >= 2


def test_a_short_deadline_gets_unavailable_before_it_passes_gh11(procs) -> None:
    broker = start_broker(procs, "--no-worker-grace-s", "60", "--heartbeat-interval-s", "0.1")
    with ConnectionHandler("127.0.0.1", _port(broker.frontend), timeout_s=1.5) as client:
        with pytest.raises(Unavailable, match="no worker is registered"):
            client.send_request("echo", 1)


def test_a_restarting_worker_gets_the_requests_sent_meanwhile_gh11(procs, zctx) -> None:
    broker = start_broker(procs, "--no-worker-grace-s", "30", "--heartbeat-interval-s", "0.1")
    first = FakeWorker(zctx, broker.backend)
    broker.wait_workers(1)
    first.send(p.encode_disconnect())   # the worker leaves, as a reloading one does
    first.close()
    broker.wait_workers(0)
    client = FakeClient(zctx, broker.frontend)
    client.request(1, timeout_ms=10_000)
    assert client.silent_for(0.5)                  # waiting in the queue, not refused
    again = FakeWorker(zctx, broker.backend)       # the worker is back
    job = again.recv_job()
    again.reply(job, b"served")
    assert client.reply().status == 0


def test_admin_commands_fail_fast_without_a_worker_gh11(procs) -> None:
    import subprocess

    from fluxon.broker import send_control_command

    broker = start_broker(procs, "--no-worker-grace-s", "0.2")
    time.sleep(0.3)  # let the grace after start pass
    for op in ({"op": "saveschema"}, {"op": "updateschema", "number": 1}, {"op": "schemas"}):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no worker is registered"):
            send_control_command(broker.control, "admin", {**op, "timeout_s": 30}, timeout_s=35)
        assert time.monotonic() - started < 10.0                  # not the 30 s deadline
    done = subprocess.run(fluxon_argv("ctl", "--insecure", "--control", broker.control, "saveschema"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no worker is registered" in done.stderr, done.stderr


def test_admin_timeout_s_is_the_brokers_deadline_too_gh11(procs, zctx) -> None:
    import subprocess

    broker = start_broker(procs)
    worker = FakeWorker(zctx, broker.backend)      # registered, but never answers the ADMIN job
    broker.wait_workers(1)
    from fluxon.broker import send_control_command
    from fluxon.errors import Timeout, WorkerLost

    started = time.monotonic()
    with pytest.raises((Timeout, WorkerLost)):                      # the broker's own answer, at 2 s
        send_control_command(broker.control, "admin", {"op": "saveschema", "timeout_s": 2}, timeout_s=30)
    assert time.monotonic() - started < 10.0
    done = subprocess.run(fluxon_argv("ctl", "--insecure", "--control", broker.control, "--timeout-s", "2",
                                      "saveschema"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    worker.close()


def test_a_client_leaving_is_not_an_error_gh11(procs, zctx) -> None:
    broker = start_broker(procs, "--heartbeat-interval-s", "0.1")
    for _ in range(3):
        client = FakeClient(zctx, broker.frontend)
        client.request(1, timeout_ms=100)
        client.error()
        client.close()
    wait_for(lambda: broker.ctl("status")["connections_closed"] >= 3, 10, message="the disconnects counted")
    status = broker.ctl("status")
    assert "disconnects" not in status["errors"]
    assert "max_message_bytes" not in broker.log()
