"""Hostile input on every broker socket: the broker logs, drops, answers when it can, and keeps serving."""

from __future__ import annotations

import struct

import pytest
import zmq

from fluxon import protocol as p
from fluxon.errors import BadRequest, ProtocolError, Unavailable
from support import fluxon_argv, wait_for
from test_broker_support import FakeClient, FakeWorker, serving_broker, start_broker, zctx  # noqa: F401

GARBAGE = [
    [b""],
    [b"garbage bytes"],
    [b"FLX2" + b"\x01" * 24],                                        # a future protocol version
    [p.CLIENT_PROTOCOL + b"\x01\x00\x00"],                            # truncated header
    [p.CLIENT_PROTOCOL + b"\x09" + b"\x00" * 30],                     # unknown command
    [p.encode_client_request(1, "r", b"x")[0], b"second", b"third"],  # too many frames
    [p.encode_worker_ready(1, {})[0]],                                # the wrong protocol
]


def _serves(broker, zctx, worker: FakeWorker, request_id: int) -> None:
    client = FakeClient(zctx, broker.frontend)
    client.request(request_id, payload=b"still here")
    job = worker.recv_job()
    worker.reply(job, job.payload)
    assert client.reply().body == b"still here"
    client.close()


def test_frontend_garbage_is_dropped_and_logged(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx)
    attacker = FakeClient(zctx, broker.frontend)
    for frames in GARBAGE:
        attacker.send(frames)
    answers = []                                 # only a header that names its request id is answered
    while not attacker.silent_for(0.3):
        answers.append(p.decode_client_reply(attacker.sock.recv_multipart()))
    assert [(a.request_id, a.status) for a in answers] == [(0, p.STATUS_ERROR)]
    _serves(broker, zctx, worker, 1)
    assert "dropped malformed message on frontend" in broker.log()
    assert broker.ctl("status")["errors"]["dropped"] == len(GARBAGE)


def test_a_malformed_request_that_names_its_id_gets_a_protocol_error(procs, zctx) -> None:
    broker = start_broker(procs)
    client = FakeClient(zctx, broker.frontend)
    bad_route = struct.pack("!4sBQIBH", p.CLIENT_PROTOCOL, p.CLIENT_REQUEST, 77, 0, 2, 0) + b"\xff\xfe"
    client.send([bad_route])
    error = client.error()
    assert isinstance(error, ProtocolError) and "UTF-8" in error.message


def test_an_oversized_message_closes_only_that_connection(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx, "--max-message-bytes", "100000")
    big = FakeClient(zctx, broker.frontend)
    big.request(1, payload=b"x" * 200_000)
    assert big.silent_for(0.3)
    wait_for(lambda: broker.ctl("status")["connections_closed"] >= 1, 5, message="the closed connection counted")
    _serves(broker, zctx, worker, 2)
    oversize_worker = FakeWorker(zctx, broker.backend, ready=False)
    oversize_worker.send([b"y" * 200_000])
    _serves(broker, zctx, worker, 3)
    oversize_admin = FakeClient(zctx, broker.control)
    oversize_admin.send(p.encode_control_command(1, "status", {"pad": "z" * 200_000}))
    assert oversize_admin.silent_for(0.3)
    assert broker.ctl("status")["workers"] == 1


def test_backend_garbage_and_unknown_jobs_are_dropped(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx)
    for frames in GARBAGE + [[b"FLXW1\x42"], [b"FLXW7\x01"], p.encode_worker_reply(999, p.STATUS_OK, b"?"),
                             p.encode_admin_reply(5, p.STATUS_OK, {}), p.encode_worker_request(1, "r", b"", b"")]:
        worker.send(frames)
    _serves(broker, zctx, worker, 1)
    log = broker.log()
    assert "dropped malformed message on backend" in log and "unknown job 999" in log


def test_control_garbage_and_bad_commands(procs, zctx) -> None:
    broker = start_broker(procs)
    admin = FakeClient(zctx, broker.control)
    for frames in GARBAGE:
        admin.send(frames)
    admin.send([struct.pack("!5sBQ", p.CONTROL_PROTOCOL, p.C_COMMAND, 9) + b"{not json"])
    result = p.decode_control_result(admin.recv_frames())
    assert (result.command_id, result.status, result.data["code"]) == (9, p.STATUS_ERROR, "protocol_error")
    with pytest.raises(BadRequest, match="unknown control command"):
        broker.ctl("rm -rf /")
    with pytest.raises(BadRequest):
        broker.ctl("debug", {"on": "yes"})
    with pytest.raises(BadRequest):
        broker.ctl("admin", {"op": "drop database"})
    assert broker.ctl("status")["workers"] == 0


def test_sigterm_finishes_in_flight_refuses_new_and_says_goodbye(procs, zctx) -> None:
    broker, worker = serving_broker(procs, zctx)
    client = FakeClient(zctx, broker.frontend)
    client.request(1)
    job = worker.recv_job()
    procs.procs[-1].send_signal(15)
    wait_for(lambda: "stopping" in broker.log(), 5, message="stop begins")
    client.request(2)
    assert isinstance(client.error(), Unavailable)
    worker.reply(job, b"finished")
    assert client.reply().body == b"finished"
    assert isinstance(worker.recv_message(heartbeat=False), p.Disconnect)
    assert broker.proc.wait(10) == 0


def test_secure_mode_is_the_default(procs) -> None:
    proc = procs.start(fluxon_argv("broker", "--bind", "tcp://127.0.0.1:0"), name="nokey",
                       env={"FLUXON_PRIVATE_KEY": ""})
    assert proc.wait(20) == 2
    assert "secure mode needs the deployment private key" in procs.log(proc)


def test_insecure_mode_refuses_public_addresses(procs) -> None:
    proc = procs.start(fluxon_argv("broker", "--insecure", "--bind", "tcp://0.0.0.0:0"),
                       name="public")
    assert proc.wait(20) == 1
    assert "binds only loopback" in procs.log(proc)


@pytest.mark.parametrize("sock_type", [zmq.REQ, zmq.PUSH])
def test_peers_of_the_wrong_socket_type_do_not_disturb(procs, zctx, sock_type) -> None:
    broker, worker = serving_broker(procs, zctx)
    odd = zctx.socket(sock_type)
    odd.setsockopt(zmq.LINGER, 0)
    odd.connect(broker.frontend)
    odd.send(b"hello")
    _serves(broker, zctx, worker, 1)
    odd.close(0)
