"""Shared pieces of the broker tests: a broker process and raw pyzmq stand-ins for clients and workers.

The fake peers speak the wire protocol with plain DEALER sockets, so the broker is
tested on its own, without the real worker or client library.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from fluxon import protocol as p
from fluxon.errors import FluxonError, decode_error
from support import ProcessGroup, fluxon_argv, free_tcp_endpoint, wait_for

__all__ = ["BrokerProc", "FakeWorker", "FakeClient", "serving_broker", "start_broker", "zctx"]


class BrokerProc:
    """A ``fluxon broker`` process and its endpoints."""

    def __init__(self, procs: ProcessGroup, proc: Any, frontend: str, backend: str, control: str,
                 keys: Any = None) -> None:
        self.procs, self.proc = procs, proc
        self.frontend, self.backend, self.control = frontend, backend, control
        self.keys = keys

    def log(self) -> str:
        return self.procs.log(self.proc)

    def ctl(self, command: str, args: dict | None = None, timeout_s: float = 5.0) -> Any:
        from fluxon.broker import send_control_command
        return send_control_command(self.control, command, args, keys=self.keys, timeout_s=timeout_s)

    def wait_workers(self, count: int) -> None:
        wait_for(lambda: self.ctl("status")["workers"] == count, 10, message=f"{count} worker(s) registered")


def start_broker(procs: ProcessGroup, *extra: str, keys: Any = None, env: dict | None = None) -> BrokerProc:
    """Start a broker on free loopback ports (plain mode unless ``extra`` gives a key) and wait until ready."""
    frontend, backend, control = free_tcp_endpoint(), free_tcp_endpoint(), free_tcp_endpoint()
    argv = fluxon_argv("broker", "--bind", frontend, "--backend", backend, "--control", control, *extra)
    if keys is None and "--key-file" not in extra:
        argv.append("--insecure")
    proc = procs.start(argv, name="broker", env=env)
    procs.wait_log(proc, "broker ready")
    return BrokerProc(procs, proc, frontend, backend, control, keys)


def serving_broker(procs: ProcessGroup, context: zmq.Context, *extra: str,
                   credit: int = 1) -> tuple[BrokerProc, FakeWorker]:
    """A broker with one registered fake worker."""
    broker = start_broker(procs, *extra)
    worker = FakeWorker(context, broker.backend, credit=credit)
    broker.wait_workers(1)
    return broker, worker


class _Peer:
    def __init__(self, context: zmq.Context, endpoint: str, curve: tuple | None = None) -> None:
        self.sock = context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            from fluxon.security import configure_curve_client
            configure_curve_client(self.sock, *curve)
        self.sock.connect(endpoint)

    def send(self, frames: list) -> None:
        self.sock.send_multipart(frames)

    def recv_frames(self, timeout_s: float = 5.0) -> list[bytes]:
        if not self.sock.poll(timeout_s * 1000):
            raise AssertionError(f"nothing received within {timeout_s}s")
        return self.sock.recv_multipart()

    def silent_for(self, seconds: float) -> bool:
        """True when nothing arrives for ``seconds``."""
        return not self.sock.poll(seconds * 1000)

    def close(self) -> None:
        self.sock.close(0)


class FakeWorker(_Peer):
    """A worker made of one DEALER: READY on start, then explicit replies and heartbeats."""

    def __init__(self, context: zmq.Context, endpoint: str, *, credit: int = 1, idempotent: tuple = (),
                 curve: tuple | None = None, ready: bool = True) -> None:
        super().__init__(context, endpoint, curve)
        self.credit, self.idempotent = credit, list(idempotent)
        if ready:
            self.send_ready()

    def send_ready(self) -> None:
        self.send(p.encode_worker_ready(self.credit, {"pid": os.getpid(), "host": "test", "app": "fake",
                                                      "concurrency": self.credit,
                                                      "idempotent": self.idempotent}))

    def recv_message(self, timeout_s: float = 5.0, *, heartbeat: bool = True) -> p.WorkerMessage:
        """The next non-heartbeat message; keeps heartbeating meanwhile unless told not to."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no worker message within {timeout_s}s")
            if heartbeat:
                self.send(p.encode_heartbeat())
            if self.sock.poll(min(left, 0.05) * 1000):
                msg = p.decode_worker_message(self.sock.recv_multipart())
                if not isinstance(msg, p.Heartbeat):
                    return msg

    def recv_job(self, timeout_s: float = 5.0) -> p.WorkerRequest:
        msg = self.recv_message(timeout_s)
        assert isinstance(msg, p.WorkerRequest), msg
        return msg

    def reply(self, job: p.WorkerRequest, body: bytes, *, status: int = p.STATUS_OK, changes: bytes = b"") -> None:
        self.send(p.encode_worker_reply(job.job_id, status, body, changes=changes))

    def no_job_for(self, seconds: float) -> bool:
        """True when no REQUEST arrives for ``seconds`` (heartbeating meanwhile)."""
        try:
            msg = self.recv_message(seconds)
        except AssertionError:
            return True
        raise AssertionError(f"unexpected message {msg!r}")


class FakeClient(_Peer):
    """A client made of one DEALER."""

    def request(self, request_id: int, route: str = "echo", payload: bytes = b"payload", *,
                token: bytes = b"", timeout_ms: int = 0) -> None:
        self.send(p.encode_client_request(request_id, route, payload, token=token, timeout_ms=timeout_ms))

    def reply(self, timeout_s: float = 5.0) -> p.ClientReply:
        return p.decode_client_reply(self.recv_frames(timeout_s))

    def error(self, timeout_s: float = 5.0) -> FluxonError:
        """The next reply, which must be an error, as the typed error."""
        reply = self.reply(timeout_s)
        assert reply.status == p.STATUS_ERROR, reply
        return decode_error(bytes(reply.body))


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)
