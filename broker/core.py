"""The broker: one thread, one loop over the frontend, backend and control ROUTERs.

Each wake-up drains every ready socket (NOBLOCK receives until none is left, capped
per round for fairness) before waiting again, the pattern that
measured 1.4x faster than an asyncio loop; the loop waits in epoll on the sockets'
``zmq.FD`` (see :mod:`fluxon.broker.readiness`, several times cheaper in system
calls than ``zmq.Poller``). The hot path handles two frames per message (the ROUTER
envelope and one header+body frame), never decodes a payload and never
unpickles anything. The replies and dispatches a round produces leave together at
its end (:meth:`Broker._flush`), so libzmq's I/O thread wakes once per burst.

Dispatch is credit based: a worker's READY announces how many requests it runs
at once; the least recently used worker with free credit gets the next request;
when none has credit, requests wait in a bounded queue (past ``max_queue`` requests
or ``max_queue_bytes``, or past one client key's share of either, the client gets
``Overloaded`` at once; see :mod:`fluxon.broker.limits`). A queued request whose client deadline
passed is answered with ``Timeout`` and never runs (the client has given up and
discards it; answering keeps the behaviour observable). Heartbeats go both ways;
a silent worker is removed and its in-flight jobs are re-queued at the front when
its READY declared the route idempotent (at most ``max_redispatch`` times: a poison
request must not crash-loop the pool), else answered with ``WorkerLost``. Every
message and every loop round runs under a guard (:mod:`fluxon.broker.guard`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from fluxon import protocol as p
from fluxon.broker.availability import WorkerAbsence
from fluxon.broker.config import BrokerConfig
from fluxon.broker.control import AdminOperation, ControlError, run_control_command
from fluxon.broker.metrics import BrokerMetrics, MetricsServer, make_registry, render_text
from fluxon.broker.guard import FrameReceiver, MessageGuard, ThrottledLog, TooManyFrames, error_code
from fluxon.broker.limits import Refusals, raise_fd_limit
from fluxon.broker.readiness import SocketReadiness
from fluxon.broker.sessions_bridge import SessionBridge
from fluxon.broker.sockets import bind_backend, bind_control, bind_frontend
from fluxon.broker.workers import Job, RequestQueue, WorkerPool, WorkerState
from fluxon.errors import (FluxonError, InternalError, Overloaded, ProtocolError, Timeout, Unavailable,
                           WorkerLost, encode_error)
from fluxon.logs import log_slow_request
from fluxon.security import start_authenticator
from fluxon.types import RoutingId

__all__ = ["Broker"]

log = logging.getLogger("fluxon.broker")

#: Messages taken from one socket per wake-up before the others get their turn.
_DRAIN_LIMIT = 512
_RATE_WINDOW_S = 5.0

_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)  # plain ints: pyzmq's enum flag arithmetic costs ~1 µs a call


class Broker:
    """Routes client requests to workers; see the module docstring for the rules.

    ``start()`` binds (endpoints then readable as ``frontend_endpoint`` etc.),
    ``run()`` serves until stopped (it calls ``start()`` if needed), ``stop()``
    may be called from any thread or a signal handler.
    """

    def __init__(self, config: BrokerConfig) -> None:
        config.validate()
        self.config = config
        self.frontend_endpoint: str | None = None
        self.backend_endpoint: str | None = None
        self.control_endpoint: str | None = None
        self.ready = threading.Event()
        self._context: zmq.Context | None = None
        self._auth: Any = None
        self._wake_endpoint = f"inproc://fluxon-broker-wake-{id(self):x}"
        self._stop_requested = threading.Event()
        self._shutdown_workers = False  # stop(): workers reconnect; the console's stop sets it
        self._workers = WorkerPool()
        self._limits = limits = config.limits
        self._queue = RequestQueue(config.max_queue, limits.max_queue_bytes, limits.queue_share)
        self._sessions: SessionBridge | None = None
        self._next_job_id = 1
        self._paused = False            # drain: dispatch stopped, requests queue up
        self._stopping = False          # graceful stop: new requests get Unavailable
        self._stop_deadline = 0.0
        self._admin: AdminOperation | None = None
        self._started_at = time.monotonic()
        self._absence = WorkerAbsence(config.no_worker_grace_s, self._started_at)
        self.connections_closed = 0     # peers that left: counted, but not an error
        self._requests_total = 0
        self._rate_samples: deque[tuple[float, int]] = deque()
        self.error_counts: Counter[str] = Counter()
        self.metrics = BrokerMetrics()  # bumped here, read at scrape time (broker/metrics.py)
        self._metrics_registry: Any = None
        self._metrics_server: MetricsServer | None = None
        self._slow_s = config.slow_request_ms / 1000 if config.slow_request_ms is not None else None
        self._refusals = Refusals(self.error_counts)
        self._guard = MessageGuard(self.error_counts, ThrottledLog("exceptions survived", logging.ERROR))
        self._receivers: dict[str, FrameReceiver] = {}  # by socket name: frames capped per message
        self._drop_log = ThrottledLog("malformed messages dropped")
        self._disconnect_log = ThrottledLog("connections closed", logging.DEBUG)
        self._monitors: dict[zmq.Socket, str] = {}
        self._readiness: SocketReadiness | None = None
        self._outbox: list[tuple[zmq.Socket, RoutingId, list, Job | None]] = []  # see _flush
        self._flushing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind the sockets (and start ZAP in secure mode); idempotent."""
        if self._context is not None:
            return
        config = self.config
        if config.limits.raise_fd_limit:
            soft, hard = raise_fd_limit()
            log.info("open-files limit: %d (hard %d)", soft, hard)
        self._context = zmq.Context()
        try:
            if config.keys is not None:
                self._auth = start_authenticator(self._context, config.keys,
                                                 allow_clients_dir=config.allow_clients_dir)
            self._sessions = SessionBridge.open(config)
            self.frontend, self.frontend_endpoint = bind_frontend(self._context, config)
            self.backend, self.backend_endpoint = bind_backend(self._context, config)
            self.control = None
            if config.control:
                self.control, self.control_endpoint = bind_control(self._context, config)
            self._wake = self._context.socket(zmq.PULL)
            self._wake.bind(self._wake_endpoint)
            self._monitors = {self.frontend.get_monitor_socket(zmq.EVENT_DISCONNECTED): "frontend",
                              self.backend.get_monitor_socket(zmq.EVENT_DISCONNECTED): "backend"}
            limits = config.limits
            self._receivers = {"frontend": FrameReceiver(limits.max_frames, metadata=True, secure=config.secure),
                               "backend": FrameReceiver(limits.max_frames),
                               "control": FrameReceiver(limits.max_frames)}
            self._readiness = SocketReadiness([s for s in (self.frontend, self.backend, self.control, self._wake)
                                               if s is not None])
            if config.metrics_bind:
                self._metrics_server = MetricsServer(self.metrics_registry, config.metrics_bind)
        except BaseException:
            self._close()
            raise
        if config.keys is None:
            log.warning("INSECURE MODE: no CURVE encryption or authentication; traffic is readable and "
                        "forgeable by anyone who can reach %s", ", ".join(
                            ep for ep in (self.frontend_endpoint, self.backend_endpoint, self.control_endpoint)
                            if ep))

    def stop(self) -> None:
        """Ask ``run()`` to stop gracefully; safe from any thread and from signal handlers."""
        self._stop_requested.set()
        context = self._context
        if context is None:
            return
        try:
            with context.socket(zmq.PUSH) as poke:
                poke.setsockopt(zmq.LINGER, 0)
                poke.connect(self._wake_endpoint)
                poke.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the loop notices the flag within one heartbeat interval anyway

    def run(self) -> None:
        """Serve until stopped, then shut down gracefully (see :meth:`_begin_stop`).

        Each round runs under a guard: whatever one round raises (``RecursionError``,
        ``MemoryError``, a bug) is counted and logged, throttled, and the loop goes on.
        """
        self.start()
        now = time.monotonic()
        self._next = {"tick": now + self.config.heartbeat_interval_s,
                      "purge": now + self.config.session_purge_interval_s,
                      "flush": now + self.config.session_flush_interval_s}
        public_key = self.config.keys.broker.public_text if self.config.keys is not None else None
        # Single-quoted: Z85 keys hold $, !, ( and #, which a shell would interpret.
        log.info("broker ready frontend=%s backend=%s control=%s public_key=%s", self.frontend_endpoint,
                 self.backend_endpoint, self.control_endpoint or "-",
                 f"'{public_key}'" if public_key else "- (plain mode)",
                 extra={"frontend": self.frontend_endpoint, "backend": self.backend_endpoint,
                        "control": self.control_endpoint, "public_key": public_key,
                        "metrics": self.metrics_url})
        self.ready.set()
        try:
            while True:
                try:
                    if self._round():
                        break
                except Exception as exc:  # noqa: BLE001 - survive it, see the docstring
                    self._guard.caught("the broker loop", exc)
        finally:
            self._finish_stop()

    def _round(self) -> bool:
        """One wake-up: drain the ready sockets, housekeeping when due, flush; True once stopped."""
        next_at = self._next
        ready = self._readiness.wait(max(0.0, next_at["tick"] - time.monotonic()))
        if self.backend in ready:
            self._drain_backend()
        if self.frontend in ready:
            self._drain_frontend()
        if self.control is not None and self.control in ready:
            self._drain_control()
        if self._wake in ready:
            self._drain_wake()
        if self._stop_requested.is_set() and not self._stopping:
            self._begin_stop()
        now = time.monotonic()
        if now >= next_at["tick"]:
            next_at["tick"] = now + self.config.heartbeat_interval_s
            self._tick(now)
            for monitor, name in self._monitors.items():  # off the poll set: polled once per tick
                self._drain_monitor(monitor, name)
        if now >= next_at["purge"]:
            next_at["purge"] = now + self.config.session_purge_interval_s
            self._sessions.purge()
        if now >= next_at["flush"]:
            next_at["flush"] = now + self.config.session_flush_interval_s
            self._sessions.flush()
        if self._admin is not None:
            self._advance_admin(now)
        self._flush()
        return self._stopping and (self._workers.in_flight_count() == 0 or now >= self._stop_deadline)

    # ------------------------------------------------------------------ frontend (clients)

    def _waiting(self, sock: zmq.Socket, receive: Callable[[zmq.Socket], Any]) -> Iterator[Any]:
        """The messages waiting on ``sock``, at most ``_DRAIN_LIMIT`` per round (then it is marked for the next)."""
        return p.receive_waiting(sock, receive, limit=_DRAIN_LIMIT, at_limit=self._readiness.mark)

    def _intake(self, sock: zmq.Socket, name: str, handle: Callable[[RoutingId, list | None, str, str], None]) -> None:
        """Receive what waits on ``sock`` (frames capped per message) and ``handle`` each message.

        A message over ``max_frames`` is drained a bounded number of frames per round and
        refused; an exception ``handle`` raises is survived (:class:`MessageGuard`).
        """
        receiver = self._receivers[name]
        try:
            if receiver.draining:
                receiver.drain(sock)
            for rid, frames, key, peer in self._waiting(sock, receiver.receive):
                try:
                    handle(rid, frames, key, peer)
                except Exception as exc:  # noqa: BLE001 - one message must not stop the loop
                    self._guard.caught(f"a {name} message", exc)
        except zmq.Again:  # the surplus of a long message is drained further next round
            self._readiness.mark(sock)
        except TooManyFrames as exc:
            self._refusals.refuse("max_frames", receiver.source_key, f"{name}: {exc}")
            self._readiness.mark(sock)
        else:
            if receiver.draining:
                self._readiness.mark(sock)

    def _drain_frontend(self) -> None:
        self._intake(self.frontend, "frontend", self._on_client_message)

    def _decode(self, socket_name: str, rid: RoutingId, frames: list | None,
                decode: Callable[[list], Any]) -> tuple[Any, ProtocolError | None]:
        """(message, None), or (None, the error) with the drop counted and logged; (None, None) when empty."""
        if frames is None:
            self._dropped(socket_name, rid, "message without a body frame")
            return None, None
        try:
            return decode(frames), None
        except ProtocolError as exc:
            self._dropped(socket_name, rid, exc.message)
            return None, exc

    def _on_client_message(self, client: RoutingId, frames: list | None, key: str, peer: str) -> None:
        request, error = self._decode("frontend", client, frames, p.decode_client_request)
        if request is not None:
            self.metrics.bytes_in += sum(map(len, frames))
            self._on_client_request(client, request, key, peer)
        elif error is not None and error.details.get("request_id") is not None:
            self._reply_error(client, error.details["request_id"], error)

    def _on_client_request(self, client: RoutingId, request: p.ClientRequest, key: str, peer: str) -> None:
        self._requests_total += 1
        if self._stopping:
            self._reply_error(client, request.request_id, Unavailable("the broker is shutting down"))
            return
        try:
            session, context = self._sessions.resolve(key, request.token, peer)
        except FluxonError as exc:
            self._reply_error(client, request.request_id, exc)
            return
        now = time.monotonic()
        deadline = now + request.timeout_ms / 1000 if request.timeout_ms else None
        job = Job(self._next_job_id, client, request.request_id, request.route, request.token,
                  request.payload, context, session, deadline)
        job.received_at = now
        self._next_job_id += 1
        if self._queue or self._paused or self._admin_holds() or not self._dispatch(job):
            if self._absence.refuses(len(self._workers), time.monotonic()):
                self._reply_error(client, request.request_id, self._absence.error(time.monotonic()))
                return
            if not self._queue.push(job):
                self._queue_full(job, key)

    def _queue_full(self, job: Job, key: str) -> None:
        """Answer ``Overloaded`` naming the bound that refused ``job``, and count it."""
        queue = self._queue
        limit = queue.refusal(job) or "max_queue"
        what = {"max_queue": f"the broker's queue is full ({queue.max_len} requests)",
                "max_queue_bytes": f"the broker's queue holds its limit of {queue.max_bytes} payload bytes",
                "queue_share": f"this client key holds its share of the queue ({queue.share_len} requests, "
                               f"{queue.share_bytes} bytes)"}[limit]
        self._refusals.refuse(limit, key, f"{job.route!r} of {job.size} bytes")
        self._reply_error(job.client, job.request_id, Overloaded(what, details={"limit": limit}))

    def _reply_error(self, client: RoutingId, request_id: int, exc: FluxonError) -> None:
        self.error_counts[exc.code] += 1
        self.metrics.refusals[exc.code] += 1
        body = encode_error(exc, include_traceback=self.config.debug)
        self._send_client(client, p.encode_client_reply(request_id, p.STATUS_ERROR, body))

    # ------------------------------------------------------------------ outgoing messages

    def _post(self, sock: zmq.Socket, routing_id: RoutingId, frames: list, job: Job | None = None) -> None:
        """Queue a message for the end of this loop round (:meth:`_flush`); ``job`` when it dispatches one."""
        self._outbox.append((sock, routing_id, frames, job))

    def _flush(self) -> None:
        """Send the messages queued this round back to back: client replies and dispatched jobs.

        Sent one at a time between the decoding of the next messages, nearly every send found
        libzmq's I/O thread asleep and paid for waking it; sent together they share its
        wake-ups and the peers receive them in larger batches (a few percent less CPU per
        request over all processes at 64 in flight; see bench/README.md). Per peer,
        messages leave in the order they were queued.

        A dispatch that cannot be delivered (EHOSTUNREACH: the worker vanished; or its queue
        is full) removes the worker: its jobs that never left are queued again at the front,
        since they never ran; the ones it had received are settled as for any lost worker.
        """
        # Re-entered from a send made while flushing (a control result, when a lost worker ends an
        # admin operation): the running flush sends whatever is queued meanwhile.
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._outbox:
                outbox, self._outbox = self._outbox, []
                unreachable: set[RoutingId] = set()
                for index, (sock, rid, frames, job) in enumerate(outbox):
                    if rid in unreachable and sock is self.backend:
                        continue  # its jobs were queued again by _undeliverable
                    try:
                        self._send_now(sock, rid, frames)
                    except zmq.ZMQError as exc:
                        if sock is self.backend:
                            unreachable.add(rid)
                            self._undeliverable(rid, exc, [j for s, r, _, j in outbox[index:]
                                                           if j is not None and r == rid and s is sock])
                        else:  # HWM reached for that client: it is not reading its replies
                            log.warning("reply to client %s dropped: %s", rid.hex(), exc)
        finally:
            self._flushing = False

    def _undeliverable(self, rid: RoutingId, exc: zmq.ZMQError, unsent: list[Job]) -> None:
        """A send to worker ``rid`` failed: remove it and queue its unsent jobs again at the front."""
        log.warning("worker %s unreachable (%s); removing it", rid.hex(), exc)
        worker = self._workers.get(rid)
        if worker is not None:
            for job in unsent:
                worker.in_flight.pop(job.job_id, None)
            self._remove_worker(worker, "unreachable")
        if self._stopping:  # nothing is dispatched any more
            for job in unsent:
                self._reply_error(job.client, job.request_id, Unavailable("the broker is shutting down"))
            return
        for job in reversed(unsent):
            self._queue.push_front(job)
        self._pump()

    def _send(self, sock: zmq.Socket, routing_id: RoutingId, frames: list) -> None:
        """Send a message now, after the queued ones (raises zmq.ZMQError on its first frame)."""
        self._flush()
        self._send_now(sock, routing_id, frames)

    def _send_now(self, sock: zmq.Socket, routing_id: RoutingId, frames: list) -> None:
        """Send envelope + frames to one ROUTER peer without blocking (raises zmq.ZMQError on the first frame).

        Every send goes through here because a send may consume the socket's FD signal:
        the socket is marked for the next drain (see ``broker/readiness.py``).
        """
        self._readiness.mark(sock)
        send = sock.send
        send(routing_id, _MORE_NOBLOCK)
        if len(frames) == 1:  # the usual message: one header+body frame
            send(frames[0], _NOBLOCK)
            return
        last = len(frames) - 1
        for index, frame in enumerate(frames):
            send(frame, _MORE_NOBLOCK if index < last else _NOBLOCK, copy=not isinstance(frame, zmq.Frame))

    def _send_client(self, client: RoutingId, frames: list) -> None:
        self.metrics.bytes_out += sum(map(len, frames))
        self._post(self.frontend, client, frames)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, job: Job) -> bool:
        """Assign ``job`` to the LRU worker with free credit (sent at the end of the round); False when none has."""
        worker = self._workers.next_ready()
        if worker is None:
            return False
        self._post(self.backend, worker.routing_id,
                   p.encode_worker_request(job.job_id, job.route, job.context, job.payload), job)
        self._workers.assign(worker, job)
        job.dispatched_at = time.monotonic()
        return True

    def _pump(self) -> None:
        """Hand queued jobs to workers while some have credit (not while paused or an admin job waits)."""
        queue = self._queue
        if not queue or self._paused or self._admin_holds():  # after every backend drain: usually empty
            return
        now = time.monotonic()
        while queue and self._workers.has_ready():
            job = queue.pop()
            if job.deadline is not None and job.deadline <= now:
                self._expire(job)
                continue
            if not self._dispatch(job):
                queue.push_front(job)
                return

    def _admin_holds(self) -> bool:
        """True while an admin operation that writes (saveschema, updateschema) holds dispatch."""
        return self._admin is not None and not self._admin.read_only

    def _refuse_absent(self, now: float) -> None:
        """With no worker: answer the queued jobs Unavailable once the grace passed, or just before
        their deadline (see :mod:`fluxon.broker.availability`)."""
        count = len(self._workers)
        if count or not self._queue:
            return
        if self._absence.refuses(count, now):
            doomed = self._queue.take_all()
        else:  # two ticks ahead: the client would give up before the next tick could answer
            doomed = self._queue.take_due(now + 2 * self.config.heartbeat_interval_s)
        for job in doomed:
            self._reply_error(job.client, job.request_id, self._absence.error(now))

    def _expire(self, job: Job) -> None:
        """Answer a queued job whose client deadline passed with ``Timeout``; it never runs."""
        self._reply_error(job.client, job.request_id,
                          Timeout("the request's deadline passed while it waited for a worker"))

    # ------------------------------------------------------------------ backend (workers)

    def _drain_backend(self) -> None:
        self._intake(self.backend, "backend", self._on_worker_message)
        self._pump()

    def _on_worker_message(self, rid: RoutingId, frames: list | None, _key: str = "", _peer: str = "") -> None:
        worker = self._workers.get(rid)
        if worker is not None:
            worker.last_seen = time.monotonic()
        message, _ = self._decode("backend", rid, frames, p.decode_worker_message)
        if message is None:
            return
        kind = type(message)
        if kind is p.WorkerReply:
            if worker is None:
                self._dropped("backend", rid, "REPLY from an unregistered worker")
                self._send_worker(rid, p.encode_disconnect())
            else:
                self._on_worker_reply(worker, message)
        elif kind is p.Heartbeat:
            if worker is None:  # e.g. the broker restarted: make the worker reconnect and re-announce
                self._send_worker(rid, p.encode_disconnect())
        elif kind is p.WorkerReady:
            self._on_worker_ready(rid, message)
        elif kind is p.Disconnect:
            if worker is not None:
                log.info("worker %s said goodbye", rid.hex())
                self._remove_worker(worker, "disconnected")
        elif kind is p.AdminReply:
            self._on_admin_reply(rid, message)
        else:
            self._dropped("backend", rid, f"{kind.__name__} is not a worker -> broker message")

    def _on_worker_ready(self, rid: RoutingId, ready: p.WorkerReady) -> None:
        worker, replaced = self._workers.register(rid, ready.credit, ready.info, time.monotonic())
        if replaced is not None:
            self._settle_lost_jobs(replaced, "re-registered")
        self._absence.update(len(self._workers), time.monotonic())
        log.info("worker %s registered: pid=%s host=%s credit=%d", rid.hex(), ready.info.get("pid"),
                 ready.info.get("host"), ready.credit)

    def _on_worker_reply(self, worker: WorkerState, reply: p.WorkerReply) -> None:
        job = self._workers.complete(worker, reply.job_id)
        if job is None:
            self._dropped("backend", worker.routing_id, f"REPLY for unknown job {reply.job_id}")
            return
        try:
            token = self._sessions.settle(job.session, job.token, reply.changes)
        except FluxonError as exc:
            limit = exc.details.get("limit")
            if limit:  # a budget (rotations, logged-in share, JSON depth/size): the client's doing
                self._refusals.refuse(limit, job.session.client_key, f"{job.route!r}: {exc.message}")
            else:
                log.error("worker %s sent unusable session changes for job %d: %s",
                          worker.routing_id.hex(), job.job_id, exc)
            self._reply_error(job.client, job.request_id, exc)
            return
        outcome = "ok"
        if reply.status != p.STATUS_OK:
            outcome = error_code(reply.body, self._limits.max_json_depth)
            self.error_counts[outcome] += 1
        elapsed_s = time.monotonic() - job.dispatched_at
        self.metrics.observe(job.route, outcome, elapsed_s)
        if self._slow_s is not None and time.monotonic() - job.received_at >= self._slow_s:
            log_slow_request(log, job, worker.routing_id.hex(), outcome, elapsed_s)
        self._send_client(job.client, p.encode_client_reply(job.request_id, reply.status, reply.body,
                                                            token=token))

    def _send_worker(self, rid: RoutingId, frames: list) -> bool:
        try:
            self._send(self.backend, rid, frames)
            return True
        except zmq.ZMQError:
            return False

    def _remove_worker(self, worker: WorkerState, why: str) -> None:
        if self._workers.remove(worker.routing_id) is None:
            return
        self._absence.update(len(self._workers), time.monotonic())
        log.info("worker %s removed (%s) with %d job(s) in flight", worker.routing_id.hex(), why,
                 len(worker.in_flight))
        self._settle_lost_jobs(worker, why)

    def _settle_lost_jobs(self, worker: WorkerState, why: str) -> None:
        """Re-queue the idempotent jobs of a lost worker at the front; answer the others WorkerLost."""
        jobs = sorted(worker.in_flight.values(), key=lambda j: j.job_id, reverse=True)
        worker.in_flight.clear()
        for job in jobs:
            if job.route not in worker.idempotent or self._stopping:
                self._reply_error(job.client, job.request_id, WorkerLost(
                    f"the worker running {job.route!r} was lost ({why})", details={"route": job.route}))
            elif job.redispatched < self._limits.max_redispatch:
                job.redispatched += 1
                log.info("re-dispatching idempotent job %d (%s) of lost worker", job.job_id, job.route)
                self._queue.push_front(job)
            else:  # a poison request: each run takes a worker down; it must not crash-loop the pool
                self._refusals.refuse("max_redispatch", job.session.client_key,
                                      f"gave up {job.route!r}: its worker was lost {job.redispatched + 1} times")
                self._reply_error(job.client, job.request_id, WorkerLost(
                    f"the worker running {job.route!r} was lost ({why}) after {job.redispatched} "
                    f"re-dispatch(es): the request was given up",
                    details={"route": job.route, "given_up": True, "runs": job.redispatched + 1}))
        if self._admin is not None and self._admin.worker == worker.routing_id:
            self.end_admin_lost()

    # ------------------------------------------------------------------ heartbeats and housekeeping

    def _tick(self, now: float) -> None:
        """Once per heartbeat interval: expire silent workers, heartbeat the others, expire queued jobs."""
        silence_s = self.config.heartbeat_interval_s * self.config.heartbeat_liveness
        for worker in self._workers.expired(now, silence_s):
            log.warning("worker %s silent for %.1f s: removed", worker.routing_id.hex(), now - worker.last_seen)
            self._remove_worker(worker, "heartbeat expired")
        heartbeat = p.encode_heartbeat()
        for worker in self._workers:
            if not self._send_worker(worker.routing_id, heartbeat):
                self._remove_worker(worker, "unreachable")
        for job in self._queue.take_expired(now):
            self._expire(job)
        self._refuse_absent(now)
        self._rate_samples.append((now, self._requests_total))
        while self._rate_samples and now - self._rate_samples[0][0] > _RATE_WINDOW_S:
            self._rate_samples.popleft()
        self._pump()

    def _dropped(self, socket_name: str, peer: RoutingId, why: str) -> None:
        """Count and log a dropped message (throttled: a flood cannot fill the log)."""
        self.error_counts["dropped"] += 1
        self.metrics.refusals["dropped"] += 1
        self._drop_log.log("dropped malformed message on %s from %s: %s", socket_name, peer.hex(), why)

    def _drain_monitor(self, monitor: zmq.Socket, name: str) -> None:
        """Count connections libzmq closed: mostly a peer that left, which is no error (no INFO line,
        nothing under ``errors``); the DEBUG line names the other cause, an oversized message."""
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            self.connections_closed += 1
            if log.isEnabledFor(logging.DEBUG):
                self._disconnect_log.log("connection closed on %s socket (%s): the peer left, or sent a "
                                         "message over max_message_bytes=%d", name,
                                         event.get("endpoint", b"").decode(errors="replace"),
                                         self.config.max_message_bytes)

    def _drain_wake(self) -> None:
        for _ in p.receive_waiting(self._wake):
            pass  # a wake-up carries nothing: the loop checks the stop flag after this

    # ------------------------------------------------------------------ control socket

    def _drain_control(self) -> None:
        self._intake(self.control, "control", self._on_control_message)

    def _on_control_message(self, rid: RoutingId, frames: list | None, _key: str = "", _peer: str = "") -> None:
        command, error = self._decode("control", rid, frames, p.decode_control_command)
        if command is None:
            if error is not None and "command_id" in error.details:
                self.send_control_result(rid, error.details["command_id"], p.STATUS_ERROR, error.to_dict())
            return
        try:
            result = run_control_command(self, rid, command)
        except ControlError as exc:
            self.send_control_result(rid, command.command_id, p.STATUS_ERROR, exc.error.to_dict())
            return
        except Exception as exc:  # a bug in a command must not stop the broker
            log.exception("control command %r failed", command.command)
            self.send_control_result(rid, command.command_id, p.STATUS_ERROR,
                                     InternalError(f"{type(exc).__name__}: {exc}").to_dict())
            return
        if result is not AdminOperation.PENDING:
            self.send_control_result(rid, command.command_id, p.STATUS_OK, result)

    def send_control_result(self, rid: RoutingId, command_id: int, status: int, data: Any) -> None:
        """Answer a control client (also used by a finished admin operation)."""
        try:
            self._send(self.control, rid, p.encode_control_result(command_id, status, data))
        except zmq.ZMQError as exc:
            log.warning("control result dropped: %s", exc)

    # ------------------------------------------------------------------ admin operations

    def begin_admin(self, operation: AdminOperation) -> None:
        """Pause dispatch until ``operation`` is done (called by the ``admin`` control command)."""
        self._admin = operation
        log.info("admin operation %s%s", operation.op.get("op"),
                 "" if operation.read_only else ": pausing dispatch")

    def _advance_admin(self, now: float) -> None:
        admin = self._admin
        if admin.job_id is None:
            if self._absence.refuses(len(self._workers), now):
                self._end_admin(p.STATUS_ERROR, self._absence.error(now, admin.op.get("op")).to_dict())
            elif now >= admin.deadline:
                self._end_admin(p.STATUS_ERROR, Timeout("admin operation timed out waiting for "
                                                        "in-flight requests and a worker").to_dict())
            elif len(self._workers) and (admin.read_only or self._workers.in_flight_count() == 0):
                worker = self._workers.next_ready() or (next(iter(self._workers)) if admin.read_only else None)
                job_id, self._next_job_id = self._next_job_id, self._next_job_id + 1
                if worker is not None and self._send_worker(worker.routing_id, p.encode_admin(job_id, admin.op)):
                    admin.job_id, admin.worker = job_id, worker.routing_id
                    log.info("admin operation %s sent to worker %s", admin.op.get("op"), worker.routing_id.hex())
        elif now >= admin.deadline:
            self._end_admin(p.STATUS_ERROR, Timeout("the worker did not answer the admin operation").to_dict())

    def _on_admin_reply(self, rid: RoutingId, reply: p.AdminReply) -> None:
        admin = self._admin
        if admin is None or admin.job_id != reply.job_id or admin.worker != rid:
            self._dropped("backend", rid, f"ADMIN_REPLY for unknown job {reply.job_id}")
            return
        self._end_admin(reply.status, reply.result)

    def end_admin_lost(self) -> None:
        """The worker running the admin operation was lost."""
        self._end_admin(p.STATUS_ERROR, WorkerLost("the worker running the admin operation was lost").to_dict())

    def _end_admin(self, status: int, data: Any) -> None:
        admin, self._admin = self._admin, None
        if admin is None:
            return
        # Logged before the answer leaves: a console on the broker's own terminal prints the answer
        # and its prompt after this line, not through it.
        log.info("admin operation %s finished (%s)%s", admin.op.get("op"),
                 "ok" if status == p.STATUS_OK else "error", "" if admin.read_only else ": resuming dispatch")
        self.send_control_result(admin.control_client, admin.command_id, status, data)
        self._pump()

    # ------------------------------------------------------------------ state for the control commands

    @property
    def workers(self) -> WorkerPool:
        """The worker registry (read by control commands)."""
        return self._workers

    @property
    def metrics_registry(self) -> Any:
        """This broker's prometheus_client CollectorRegistry (made on first use)."""
        if self._metrics_registry is None:
            self._metrics_registry = make_registry(self)
        return self._metrics_registry

    @property
    def metrics_url(self) -> str | None:
        """Where the HTTP metrics endpoint listens (``--metrics-bind``), else None."""
        server = self._metrics_server
        if server is None:
            return None
        host = f"[{server.host}]" if ":" in server.host else server.host
        return f"http://{host}:{server.port}/metrics"

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text format (the ``metrics`` control command)."""
        return render_text(self.metrics_registry)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a worker (read by the metrics collector)."""
        return len(self._queue)

    @property
    def sessions(self) -> SessionBridge:
        """The session store bridge (opened by ``start()``; control commands run only after it)."""
        return self._sessions

    @property
    def admin_running(self) -> bool:
        """True while an admin operation holds dispatch."""
        return self._admin is not None

    def set_paused(self, paused: bool) -> None:
        """Drain (True: requests wait in the queue) or resume dispatch."""
        self._paused = paused
        log.info("dispatch %s", "paused (drain)" if paused else "resumed")
        self._pump()

    def request_stop(self, *, shutdown_workers: bool = True) -> None:
        """Stop gracefully from inside the loop (the ``stop`` control command).

        With ``shutdown_workers`` the workers get SHUTDOWN and exit once their in-flight work is
        done (the whole deployment stops); without it they get DISCONNECT and keep reconnecting,
        waiting for the next broker (a restart or an upgrade of the broker alone).
        """
        self._shutdown_workers = shutdown_workers
        self._stop_requested.set()

    def status(self) -> dict[str, Any]:
        """The broker's state as plain data (the ``status`` control command)."""
        now = time.monotonic()
        rate = 0.0
        if len(self._rate_samples) >= 2:
            (t0, n0), (t1, n1) = self._rate_samples[0], self._rate_samples[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        return {
            "uptime_s": round(now - self._started_at, 3),
            "frontend": self.frontend_endpoint, "backend": self.backend_endpoint,
            "control": self.control_endpoint, "secure": self.config.secure,
            "workers": len(self._workers), "in_flight": self._workers.in_flight_count(),
            "queue_depth": len(self._queue), "max_queue": self._queue.max_len,
            "requests_total": self._requests_total, "requests_per_s": round(rate, 1),
            "errors": dict(self.error_counts), "connections_closed": self.connections_closed,
            "sessions": len(self._sessions),
            "draining": self._paused, "stopping": self._stopping, "admin_running": self._admin is not None,
            "debug": self.config.debug,
        }

    # ------------------------------------------------------------------ graceful stop

    def _begin_stop(self) -> None:
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.config.stop_timeout_s
        log.info("stopping: no new requests; waiting up to %.1f s for %d in-flight request(s)",
                 self.config.stop_timeout_s, self._workers.in_flight_count())
        for job in self._queue.take_all():
            self._reply_error(job.client, job.request_id, Unavailable("the broker is shutting down"))
        if self._admin is not None:
            self._end_admin(p.STATUS_ERROR, Unavailable("the broker is shutting down").to_dict())

    def _finish_stop(self) -> None:
        try:
            if self._context is not None and not self._context.closed:
                goodbye = p.encode_shutdown() if self._shutdown_workers else p.encode_disconnect()
                for worker in self._workers:
                    for job in worker.in_flight.values():
                        self._reply_error(job.client, job.request_id,
                                          Unavailable("the broker stopped before the worker answered"))
                    self._send_worker(worker.routing_id, goodbye)
                self._flush()
        finally:
            self._close()
            log.info("broker stopped")

    def _close(self) -> None:
        """Release what ``start()`` acquired: the session store (flushed), sockets, ZAP, the context."""
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self._sessions is not None:
            self._sessions.close()
        for name in ("frontend", "backend"):
            sock = getattr(self, name, None)
            if sock is not None and self._monitors:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
        for monitor in self._monitors:
            monitor.close(0)
        self._monitors = {}
        if self._readiness is not None:
            self._readiness.close()
            self._readiness = None
        for name in ("frontend", "backend", "control", "_wake"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
