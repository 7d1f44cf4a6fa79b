"""A real `fluxon worker` process against a fake broker ROUTER bound by the test."""

from __future__ import annotations

import json
import signal
import time

import pytest
import zmq

from fluxon import protocol
from fluxon.errors import RouteNotFound, Unavailable, ViewError, decode_error
from fluxon.serialization import dumps, loads_trusted
from support import REPO_ROOT, fluxon_argv, wait_for

APP = "tests.apps.echo_app:router"


class FakeBroker:
    """A backend ROUTER that speaks the worker protocol by hand."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.worker_id: bytes | None = None

    def recv(self, want: type, timeout_s: float = 10.0):
        """The next message of type ``want`` from the worker (heartbeats are skipped)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000) + 1):
                continue
            ident, *frames = self.sock.recv_multipart()
            self.worker_id = ident
            message = protocol.decode_worker_message(frames)
            if isinstance(message, want):
                return message
        raise AssertionError(f"no {want.__name__} from the worker within {timeout_s}s")

    def send(self, frames: list) -> None:
        self.sock.send_multipart([self.worker_id, *frames])

    def call(self, job_id: int, route: str, payload=None, context: dict | None = None):
        self.send(protocol.encode_worker_request(job_id, route, json.dumps(context or {}).encode(),
                                                 dumps(payload)))
        reply = self.recv(protocol.WorkerReply)
        assert reply.job_id == job_id
        return reply


@pytest.fixture
def broker():
    ctx = zmq.Context()
    fake = FakeBroker(ctx)
    yield fake
    fake.sock.close(0)
    ctx.term()


def start_worker(procs, endpoint: str, *extra: str):
    return procs.start(fluxon_argv("worker", APP, "--connect", endpoint, "--insecure",
                                   "--heartbeat-interval-s", "0.1", "--concurrency", "4", *extra),
                       cwd=REPO_ROOT, name="worker")


def test_ready_request_reply_and_graceful_stop(procs, broker):
    proc = start_worker(procs, broker.endpoint)
    ready = broker.recv(protocol.WorkerReady)
    assert ready.credit == 4 and ready.info["idempotent"] == ["idem_slow"]
    assert ready.info["pid"] == proc.pid
    reply = broker.call(1, "echo", {"a": 1})
    assert (reply.status, loads_trusted(reply.body)) == (protocol.STATUS_OK, {"a": 1})
    assert isinstance(decode_error(broker.call(2, "nope").body), RouteNotFound)
    assert isinstance(decode_error(broker.call(3, "boom").body), ViewError)
    procs.wait_log(proc, "worker ready")
    # SIGTERM with a request in flight: it finishes, then new work is refused, then goodbye.
    broker.send(protocol.encode_worker_request(4, "slow", b"{}", dumps(0.5)))
    procs.wait_log(proc, "started slow")
    proc.send_signal(signal.SIGTERM)
    procs.wait_log(proc, "stopping: finishing 1 in-flight request")
    broker.send(protocol.encode_worker_request(5, "echo", b"{}", dumps(1)))
    replies = {r.job_id: r for r in (broker.recv(protocol.WorkerReply), broker.recv(protocol.WorkerReply))}
    assert replies[4].status == protocol.STATUS_OK
    assert isinstance(decode_error(replies[5].body), Unavailable)
    broker.recv(protocol.Disconnect)
    assert proc.wait(10) == 0


JUNK = [
    [b"garbage"],
    [b"FLXW9\x02" + b"\x00" * 20],                               # wrong version
    [b"FLXW1\x02\x00\x00"],                                       # truncated header
    [b"FLXW1\x02" + b"\x00" * 8 + b"\xff" + b"\x00\x00\x00\x01"],   # lengths do not add up
    [b"FLXW1\x7f"],                                               # unknown command
    [b"FLXW1\x04", b"a", b"b"],                                   # too many frames
    [b"FLXW1\x03" + b"\x00" * 13],                                # a REPLY sent to a worker
]


def test_malformed_messages_are_logged_and_dropped(procs, broker):
    proc = start_worker(procs, broker.endpoint)
    broker.recv(protocol.WorkerReady)
    for number, junk in enumerate(JUNK, start=1):
        broker.send(junk)
        reply = broker.call(number, "echo", f"still alive {number}")
        assert loads_trusted(reply.body) == f"still alive {number}"
        wait_for(lambda: procs.log(proc).count("dropped") >= number, 5,
                 message=f"a log line about dropped message {number}")
    assert proc.poll() is None


def test_oversized_message_does_not_crash_the_worker(procs, broker):
    proc = start_worker(procs, broker.endpoint, "--max-message-bytes", "100000")
    broker.recv(protocol.WorkerReady)
    broker.send([b"FLXW1\x02" + b"\x00" * 13, b"x" * 200_000])
    # The worker's MAXMSGSIZE drops the connection; its DEALER reconnects and it keeps serving.
    reply = wait_for(lambda: _try_call(broker, 8), 10, message="the worker serving again")
    assert loads_trusted(reply.body) == "ok" and proc.poll() is None
    assert "max_message_bytes=100000" in procs.log(proc)


def _try_call(broker: FakeBroker, job_id: int):
    try:
        broker.send(protocol.encode_worker_request(job_id, "echo", b"{}", dumps("ok")))
        return broker.recv(protocol.WorkerReply, timeout_s=0.3)
    except (AssertionError, zmq.ZMQError):
        return None


def test_silent_broker_makes_worker_reconnect_and_send_ready_again(procs, broker):
    proc = start_worker(procs, broker.endpoint)
    broker.recv(protocol.WorkerReady)
    # Say nothing: after interval * liveness the worker opens a fresh socket and announces itself again.
    broker.recv(protocol.WorkerReady, timeout_s=10)
    assert "reconnecting" in procs.log(proc)
    broker.send(protocol.encode_disconnect())
    broker.recv(protocol.WorkerReady, timeout_s=10)
