"""The worker process: one DEALER to the broker's backend, views on an asyncio loop.

Life of a worker (Paranoid Pirate, see docs/protocol.md section 4.7):

1. connect a fresh DEALER (CURVE in secure mode) and send READY with its credit
   (the concurrency) and its idempotent routes;
2. run each REQUEST (``def`` views in a thread pool, ``async def`` views on the
   loop) and answer with REPLY; answer ADMIN jobs with ADMIN_REPLY;
3. send HEARTBEAT every interval; when the broker is silent for
   ``interval * liveness`` or says DISCONNECT, close the socket and reconnect
   with a short jittered backoff, then READY again (a restarted broker is survived);
   a socket that has not connected yet is kept: libzmq retries it every
   second at most, so a worker rejoins within about a second of the broker's return;
4. on SIGTERM/SIGINT, or SHUTDOWN from the broker (the console's ``stop``), take no new work, finish in-flight requests within
   ``shutdown_timeout_s``, answer the requests that arrived meanwhile with
   ``Unavailable`` (holding them until then keeps the broker from sending more
   than our credit), send DISCONNECT and return 0.

The socket is watched through its ``zmq.FD`` (edge-triggered) with
``loop.add_reader`` and drained until it is empty, also after each send.
Malformed messages are logged and dropped; nothing from the network can stop
the loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import signal
import socket as _socket
import time
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from fluxon import protocol
from fluxon.protocol import STATUS_ERROR, STATUS_OK
from fluxon.database.backends import connect
from fluxon.database.manipulation import Database, SqliteDatabase
from fluxon.errors import ConfigurationError, ProtocolError, Unavailable, encode_error
from fluxon.keys import DeploymentKeys, derive_keys, load_private_key
from fluxon.routing import Router
from fluxon.handshake import HANDSHAKE_FAILED_EVENTS as _HANDSHAKE_FAILED
from fluxon.security import configure_curve_client
from fluxon.serialization import DecodeLimits
from fluxon.worker.admin import run_admin_fresh
from fluxon.worker.execution import Outcome, ViewRunner
from fluxon.worker.schema_check import check_schema_at_start

__all__ = ["Worker", "WorkerConfig", "open_database", "keys_for"]

log = logging.getLogger("fluxon.worker")

# Plain ints: pyzmq's enum flag arithmetic costs about a microsecond per call on the hot path.
_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)
_ZMQ_RECONNECT_IVL_MS = 100
_ZMQ_RECONNECT_IVL_MAX_MS = 1000


@dataclass
class WorkerConfig:
    """How a worker connects and behaves; ``keys=None`` is plain (unencrypted) mode."""

    connect: str = "tcp://127.0.0.1:8081"
    app: str = ""
    concurrency: int = 16
    keys: DeploymentKeys | None = None
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 3
    #: Our own backoff between sockets (after the broker was heard, then went silent or said
    #: DISCONNECT), with +-25% jitter; a socket that never heard the broker is not replaced but left
    #: to libzmq's own reconnect (every ``_ZMQ_RECONNECT_IVL_MS``, growing to ``_ZMQ_RECONNECT_IVL_MAX_MS``).
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 2.0
    shutdown_timeout_s: float = 10.0
    max_message_bytes: int = protocol.MAX_MESSAGE_BYTES
    debug: bool = False
    #: Log requests whose view ran this many ms or more (None: off; 0: every request).
    slow_request_ms: int | None = None
    #: Budgets of the restricted payload decoder; ``None``: the Router's, else the defaults.
    decode_limits: DecodeLimits | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 0xFFFF:
            raise ConfigurationError(f"concurrency must be between 1 and 65535, got {self.concurrency}")
        if self.heartbeat_interval_s <= 0 or self.heartbeat_liveness < 1:
            raise ConfigurationError("heartbeat interval must be > 0 and liveness >= 1")


def keys_for(router: Router, *, key_file: str | None = None, insecure: bool = False) -> DeploymentKeys | None:
    """The deployment keys for secure mode, or ``None`` in plain mode (``insecure``).

    The private key comes from ``key_file``, then ``$FLUXON_PRIVATE_KEY``, then
    ``Router(private_key=...)``; secure mode without any is a ConfigurationError.
    """
    if insecure:
        return None
    private_key = load_private_key(key_file, os.environ, router.private_key)
    if private_key is None:
        raise ConfigurationError("secure mode needs the deployment private key: pass --key-file FILE, set "
                                 "FLUXON_PRIVATE_KEY or give Router(private_key=...); use --insecure "
                                 "(secure=False) for local development without encryption")
    return derive_keys(private_key)


def open_database(router: Router, *, pool_size: int = 4) -> Database | None:
    """The application's database when the Router names one (URL or path), else ``None``.

    ``pool_size``: PostgreSQL connections this process keeps (the worker's concurrency).
    """
    if router.database_url:
        db: Database = connect(router.database_url, models=router.models, pool_size=pool_size,
                               password_file=getattr(router, "database_password_file", None))
    elif router.database_path:
        db = SqliteDatabase(router.database_path, models=router.models)
    else:
        return None
    log.info("database %s opened for request.db", db.display_name)
    return db


class Worker:
    """Serves one Router's views to one broker until stopped."""

    def __init__(self, router: Router, config: WorkerConfig, *, db: Database | None = None) -> None:
        self.router = router
        self.config = config
        self._db = db
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: ViewRunner | None = None
        self._generation = 0            # bumps on every reconnect; replies of older ones are dropped
        self._in_flight: set[tuple] = set()   # (generation, job_id) and admin tags not answered yet
        self._idle: asyncio.Event | None = None
        self._admin_tasks: set[asyncio.Task] = set()
        self._held: list[int] = []   # job ids that arrived while stopping
        self._outbox: list[list] = []  # replies waiting for the end of this loop iteration
        self._flush_scheduled = False  # a _flush_outbox is in the loop's ready queue
        self._jobs_started = 0
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._last_recv = 0.0
        self._backoff = config.reconnect_initial_s
        self._heard_since_connect = False
        self._connected = False
        self._waiting_logged = False
        self._announced = False
        self._reconnect_handle: asyncio.TimerHandle | None = None
        self._ready_frames = protocol.encode_worker_ready(config.concurrency, {
            "pid": os.getpid(), "host": _socket.gethostname(), "concurrency": config.concurrency,
            "app": config.app, "idempotent": router.idempotent_routes,
        })

    # ------------------------------------------------------------------ public

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or :meth:`stop`; returns the exit code (0)."""
        return asyncio.run(self.serve())

    def stop(self) -> None:
        """Ask the worker to finish in-flight requests and leave; safe from any thread."""
        loop = self._loop
        if loop is not None and self._stop_event is not None:
            loop.call_soon_threadsafe(self._stop_event.set)

    async def serve(self, *, install_signal_handlers: bool = True) -> int:
        """The worker's main coroutine."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop_event.set)
        if self._db is None:
            self._db = open_database(self.router, pool_size=self.config.concurrency)
            check_schema_at_start(self.router)
        self._runner = ViewRunner(self.router, concurrency=self.config.concurrency,
                                  debug=self.config.debug, db=self._db,
                                  decode_limits=self.config.decode_limits)
        self._ctx = zmq.Context()
        ticker = asyncio.create_task(self._heartbeat_loop())
        try:
            self._connect()
            await self._stop_event.wait()
            await self._shutdown()
        finally:
            ticker.cancel()
            self._close_socket(linger_ms=1000 if self._stopping else 0)
            self._runner.shutdown(wait=False)
            self._ctx.term()
            if self._db is not None:
                self._db.close_all()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
        log.info("worker stopped")
        return 0

    # ------------------------------------------------------------------ socket

    def _connect(self) -> None:
        """A fresh DEALER to the broker, then READY."""
        self._reconnect_handle = None
        self._generation += 1
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        sock.setsockopt(zmq.RECONNECT_IVL, _ZMQ_RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, _ZMQ_RECONNECT_IVL_MAX_MS)
        if self.config.keys is not None:
            configure_curve_client(sock, self.config.keys.broker.public, self.config.keys.worker)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED | _HANDSHAKE_FAILED)
        self._loop.add_reader(self._monitor.getsockopt(zmq.FD), self._drain_monitor)
        sock.connect(self.config.connect)
        self._sock = sock
        self._drain_monitor()  # arms the edge-triggered FD: it fires only after a first read
        self._heard_since_connect = False
        self._connected = False
        self._waiting_logged = False
        self._last_recv = time.monotonic()
        self._loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
        self._send(self._ready_frames)
        log.debug("connecting to broker at %s (READY sent, credit %d)", self.config.connect,
                  self.config.concurrency)

    def _close_socket(self, linger_ms: int = 0) -> None:
        if self._sock is None:
            return
        self._flush_outbox()
        try:
            self._loop.remove_reader(self._sock.getsockopt(zmq.FD))
            self._loop.remove_reader(self._monitor.getsockopt(zmq.FD))
            self._sock.disable_monitor()
        except (zmq.ZMQError, ValueError):
            pass
        self._monitor.close(linger=0)
        self._sock.close(linger=linger_ms)
        self._sock = self._monitor = None

    def _drain_monitor(self) -> None:
        """Reconnect on a dropped connection, saying why: a refused key (a failed CURVE handshake:
        the broker cannot decrypt our HELLO, or its ZAP refuses the worker key), or the broker
        going away (or sending more than max_message_bytes)."""
        while self._monitor is not None:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.ZMQError:  # zmq.Again included: nothing more to read
                return
            if event["event"] == zmq.EVENT_CONNECTED:  # the silence window starts now, not at the socket's making
                self._connected = True
                self._last_recv = time.monotonic()
                continue
            if event["event"] & _HANDSHAKE_FAILED:
                self._reconnect("the broker refused this worker's key (the CURVE handshake failed): check that "
                                "--key-file is this deployment's private key, the one the broker was given"
                                if self.config.keys is not None else
                                "the broker refused this plain worker (the handshake failed): the broker runs "
                                "in secure mode; give the worker --key-file", level=logging.ERROR)
            else:
                self._reconnect(f"connection to the broker dropped (the broker went away, or sent a message "
                                f"over max_message_bytes={self.config.max_message_bytes})")

    def _reconnect(self, reason: str, *, level: int = logging.WARNING) -> None:
        """Drop the socket and open a fresh one after the current backoff."""
        if self._stopping or self._reconnect_handle is not None:
            return
        self._close_socket()
        delay = self._backoff * random.uniform(0.75, 1.25)  # jitter: workers do not return in lockstep
        self._backoff = min(self._backoff * 2, self.config.reconnect_max_s)
        log.log(level, "%s; reconnecting to %s in %.2fs", reason, self.config.connect, delay)
        self._reconnect_handle = self._loop.call_later(delay, self._connect)

    def _send(self, frames: list, *, quiet: bool = False) -> None:
        """Send one message now, after the replies waiting in the outbox."""
        self._outbox.append(frames)
        self._flush_outbox(quiet=quiet)

    def _send_soon(self, frames: list) -> None:
        """Send a reply at the end of this loop iteration, together with the others finished in it.

        Replies sent one by one from separate view tasks each woke libzmq's I/O thread;
        sent as one burst they wake it once. Only used while other requests are running
        or a flush is already queued: a lone reply goes out at once (:meth:`_send`), so
        one request in flight waits for nothing.
        """
        self._outbox.append(frames)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_outbox)

    def _flush_outbox(self, *, quiet: bool = False) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        sock = self._sock
        if sock is None or not outbox:
            return
        for frames in outbox:
            try:
                protocol.send_frames(sock, frames, _NOBLOCK)
            except zmq.Again:
                (log.debug if quiet else log.warning)("no connection to the broker or its queue is full; "
                                                      "message dropped")
            except zmq.ZMQError as exc:
                log.warning("cannot send to the broker: %s", exc)
        # The FD is edge-triggered: a send may have consumed the readiness edge.
        if sock.getsockopt(_EVENTS) & _POLLIN:
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Read every message that is ready (see :func:`fluxon.protocol.receive_waiting`).

        When jobs arrived, a flush is queued behind their tasks' first steps: the replies
        of views that finish without awaiting leave in the same loop iteration as one
        burst, instead of queueing a flush for the iteration after.
        """
        sock = self._sock
        if sock is None:
            return
        started = self._jobs_started
        try:
            for frames in protocol.receive_waiting(sock):
                self._on_message(frames)
                if self._sock is not sock:  # DISCONNECT: that socket is closed, a new one comes later
                    break
        except zmq.ZMQError as exc:
            log.warning("receive from the broker failed: %s", exc)
        if self._jobs_started != started:
            self._schedule_flush()

    def _on_message(self, frames: list) -> None:
        self._last_recv = time.monotonic()
        if not self._heard_since_connect:
            self._heard_since_connect = True
            self._backoff = self.config.reconnect_initial_s
            if not self._announced:
                self._announced = True
                log.info("worker ready: connected to %s, credit %d, pid %d",
                         self.config.connect, self.config.concurrency, os.getpid())
            else:
                log.info("reconnected to the broker at %s", self.config.connect)
        try:
            message = protocol.decode_worker_message(frames)
        except ProtocolError as exc:
            log.warning("dropped a malformed message from the broker: %s", exc.message)
            return
        self._dispatch(message)

    # ------------------------------------------------------------------ messages

    def _dispatch(self, message: protocol.WorkerMessage) -> None:
        if isinstance(message, protocol.WorkerRequest):
            self._start_job(message)
        elif isinstance(message, protocol.Heartbeat):
            return
        elif isinstance(message, protocol.Disconnect):
            self._reconnect("the broker said DISCONNECT")
        elif isinstance(message, protocol.Shutdown):
            log.info("the broker said SHUTDOWN: finishing in-flight work, then exiting")
            self.stop()
        elif isinstance(message, protocol.Admin):
            self._start_admin(message)
        else:
            log.warning("dropped an unexpected %s from the broker", type(message).__name__.upper())

    def _start_job(self, job: protocol.WorkerRequest) -> None:
        if self._stopping:
            # Not run, and not answered yet: holding it keeps its credit, so the broker sends us
            # no more than our credit while in-flight requests finish (answered at goodbye).
            self._held.append(job.job_id)
            return
        payload = job.payload if isinstance(job.payload, bytes) else bytes(job.payload)
        self._jobs_started += 1
        tag = (self._generation, job.job_id)
        self._in_flight.add(tag)
        self._runner.submit(job.route, job.context, payload,
                            functools.partial(self._finish_job, tag, job.route, time.monotonic()))

    def _finish_job(self, tag: tuple[int, int], route: str, started: float, outcome: Outcome) -> None:
        self._job_done(tag)
        generation, job_id = tag
        if outcome.status != STATUS_OK:
            outcome = _failed(outcome, job_id, route)
        slow_ms = self.config.slow_request_ms
        if slow_ms is not None and (run_ms := (time.monotonic() - started) * 1000) >= slow_ms:
            log.warning("slow request %d %r: view ran %.1f ms", job_id, route, run_ms,
                        extra={"request_id": job_id, "route": route, "worker": os.getpid(),
                               "run_ms": round(run_ms, 3)})
        if generation != self._generation:
            log.info("dropped the reply to job %d: the connection it came on is gone", job_id)
            return
        frames = protocol.encode_worker_reply(job_id, outcome.status, outcome.body, changes=outcome.changes)
        if self._in_flight or self._flush_scheduled:  # more replies are coming: send them together
            self._send_soon(frames)
        else:
            self._send(frames)

    def _job_done(self, tag: tuple) -> None:
        self._in_flight.discard(tag)
        if not self._in_flight and self._idle is not None:
            self._idle.set()

    def _start_admin(self, admin: protocol.Admin) -> None:
        tag = ("admin", self._generation, admin.job_id)
        self._in_flight.add(tag)

        async def run() -> None:
            try:
                ok, result = await self._loop.run_in_executor(None, run_admin_fresh, self.router, admin.op)
            finally:
                self._job_done(tag)
            if tag[1] == self._generation:
                self._send(protocol.encode_admin_reply(admin.job_id, STATUS_OK if ok else STATUS_ERROR,
                                                       result))
        task = self._loop.create_task(run())
        self._admin_tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._admin_tasks.discard)

    # ------------------------------------------------------------------ heartbeats and shutdown

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_s
        silence_limit = interval * self.config.heartbeat_liveness
        while True:
            await asyncio.sleep(interval)
            if self._sock is None:
                continue
            self._send(protocol.encode_heartbeat(), quiet=True)
            silent_for = time.monotonic() - self._last_recv
            if silent_for > silence_limit and (self._heard_since_connect or self._connected):
                self._reconnect(f"the broker has been silent for {silent_for:.1f}s")
            elif silent_for > silence_limit and not self._waiting_logged:
                # Never connected: a fresh socket would not come sooner. libzmq keeps
                # reconnecting this one with a capped interval and READY is queued on it.
                self._waiting_logged = True
                log.info("waiting for the broker at %s (retrying every %.1fs at most)", self.config.connect,
                         _ZMQ_RECONNECT_IVL_MAX_MS / 1000)

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._reconnect_handle is not None:
            self._reconnect_handle.cancel()
            self._reconnect_handle = None
        if self._in_flight:
            log.info("stopping: finishing %d in-flight request(s) (up to %.1fs)", len(self._in_flight),
                     self.config.shutdown_timeout_s)
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), self.config.shutdown_timeout_s)
            except asyncio.TimeoutError:
                log.warning("stopping: %d request(s) did not finish in time and are abandoned",
                            len(self._in_flight))
        if self._held:
            log.info("stopping: %d request(s) that arrived meanwhile are answered Unavailable", len(self._held))
            body = encode_error(Unavailable("the worker is shutting down; send the request again"))
            for job_id in self._held:
                self._send(protocol.encode_worker_reply(job_id, STATUS_ERROR, body))
        self._send(protocol.encode_disconnect())
        log.info("said goodbye to the broker")


def _failed(outcome: Outcome, request_id: int, route: str) -> Outcome:
    """An error outcome whose details carry the request id (the one in the broker's and our log)."""
    try:
        body = json.loads(outcome.body)
        body.setdefault("details", {})["request_id"] = request_id
        encoded = json.dumps(body, default=str).encode()
    except (ValueError, AttributeError, TypeError, RecursionError):  # e.g. a hostile, deep detail: as it is
        return outcome
    log.debug("request %d %r answered %s", request_id, route, body.get("code"),
             extra={"request_id": request_id, "route": route, "worker": os.getpid(),
                    "outcome": body.get("code")})
    return outcome._replace(body=encoded)
