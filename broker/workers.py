"""The broker's view of its workers and requests: one registry, one bounded queue.

All worker state lives in :class:`WorkerPool` (a dict by routing id plus an LRU
ordered dict of the workers with free credit), so removing a worker is a
``dict.pop(key, None)``: a worker that is not there cannot crash the broker
(the ZeroMQ guide's broker dies on ``list.remove`` of a missing worker).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from fluxon.broker.sessions import Session
from fluxon.types import Body, JobId, JSONObject, RequestId, RoutingId

__all__ = ["Job", "WorkerState", "WorkerPool", "RequestQueue"]


class Job:
    """One client request from arrival to reply."""

    __slots__ = ("job_id", "client", "request_id", "route", "token", "payload", "context",
                 "session", "deadline", "received_at", "dispatched_at", "owner", "size", "redispatched")

    def __init__(self, job_id: JobId, client: RoutingId, request_id: RequestId, route: str,
                 token: bytes, payload: Body, context: bytes, session: Session, deadline: float | None) -> None:
        self.job_id = job_id
        self.client = client
        self.request_id = request_id
        self.route = route
        self.token = token
        self.payload = payload
        self.context = context
        self.session = session
        self.deadline = deadline
        self.received_at = 0.0     # monotonic times, for the latency metrics and the slow-request log
        self.dispatched_at = 0.0
        #: Whose share of the queue it uses: the client key (the routing id in plain mode).
        self.owner: str | bytes = (session.client_key if session is not None else "") or client
        self.size = len(payload)
        #: Times it was sent again after its worker died (see ``BrokerLimits.max_redispatch``).
        self.redispatched = 0


class WorkerState:
    """One registered worker: its credit, its jobs in flight and its last sign of life."""

    __slots__ = ("routing_id", "credit", "info", "idempotent", "last_seen", "in_flight", "served")

    def __init__(self, routing_id: RoutingId, credit: int, info: JSONObject, now: float) -> None:
        self.routing_id = routing_id
        self.credit = credit
        self.info = info
        routes = info.get("idempotent", ())
        self.idempotent = frozenset(r for r in routes if isinstance(r, str)) if isinstance(routes, list) \
            else frozenset()
        self.last_seen = now
        self.in_flight: dict[JobId, Job] = {}
        self.served = 0

    @property
    def free(self) -> int:
        """Requests this worker can still take."""
        return self.credit - len(self.in_flight)

    def describe(self, now: float) -> JSONObject:
        """The worker as a row for the control socket."""
        return {"id": self.routing_id.hex(), "host": self.info.get("host"), "pid": self.info.get("pid"),
                "app": self.info.get("app"), "credit": self.credit, "in_flight": len(self.in_flight),
                "served": self.served, "heartbeat_age_s": round(now - self.last_seen, 3)}


class WorkerPool:
    """Every registered worker, and the least recently used ones with free credit first."""

    def __init__(self) -> None:
        self._workers: dict[RoutingId, WorkerState] = {}
        self._ready: OrderedDict[RoutingId, WorkerState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._workers)

    def __iter__(self) -> Iterator[WorkerState]:
        return iter(list(self._workers.values()))

    def get(self, routing_id: RoutingId) -> WorkerState | None:
        """The worker with this routing id, or None."""
        return self._workers.get(routing_id)

    def register(self, routing_id: RoutingId, credit: int, info: JSONObject,
                 now: float) -> tuple[WorkerState, WorkerState | None]:
        """Add a worker (a READY); returns it and the registration it replaced, if any."""
        replaced = self.remove(routing_id)
        worker = WorkerState(routing_id, credit, info, now)
        self._workers[routing_id] = worker
        self._ready[routing_id] = worker
        return worker, replaced

    def remove(self, routing_id: RoutingId) -> WorkerState | None:
        """Forget a worker; None when it was not registered. Its in-flight jobs stay on the returned state."""
        self._ready.pop(routing_id, None)
        return self._workers.pop(routing_id, None)

    def has_ready(self) -> bool:
        """True when some worker has free credit."""
        return bool(self._ready)

    def next_ready(self) -> WorkerState | None:
        """The least recently used worker with free credit, or None."""
        for worker in self._ready.values():
            return worker
        return None

    def assign(self, worker: WorkerState, job: Job) -> None:
        """Record ``job`` as running on ``worker`` and move the worker to the back of the LRU order."""
        worker.in_flight[job.job_id] = job
        if worker.free > 0:
            self._ready.move_to_end(worker.routing_id)
        else:
            self._ready.pop(worker.routing_id, None)

    def complete(self, worker: WorkerState, job_id: JobId) -> Job | None:
        """Take ``job_id`` off ``worker`` (a REPLY) and give back its credit; None when unknown."""
        job = worker.in_flight.pop(job_id, None)
        if job is None:
            return None
        worker.served += 1
        if worker.free > 0 and worker.routing_id in self._workers and worker.routing_id not in self._ready:
            self._ready[worker.routing_id] = worker
        return job

    def retire(self, routing_id: RoutingId) -> bool:
        """Send ``routing_id`` no more requests (its credit drops to 0); its running jobs finish."""
        worker = self._workers.get(routing_id)
        if worker is None:
            return False
        worker.credit = 0
        self._ready.pop(routing_id, None)
        return True

    def expired(self, now: float, silence_s: float) -> list[WorkerState]:
        """Workers silent for longer than ``silence_s``."""
        return [w for w in self._workers.values() if now - w.last_seen > silence_s]

    def in_flight_count(self) -> int:
        """Jobs running on all workers together."""
        return sum(len(w.in_flight) for w in self._workers.values())


class RequestQueue:
    """Requests waiting for a worker, oldest first, bounded by count and payload bytes.

    One owner (client key) may hold at most ``share`` of either bound, so a single key
    cannot fill the queue and starve everyone else.
    """

    def __init__(self, max_len: int, max_bytes: int = 1 << 62, share: float = 1.0) -> None:
        self.max_len, self.max_bytes = max_len, max_bytes
        self.share_len, self.share_bytes = max(1, int(max_len * share)), max(1, int(max_bytes * share))
        self.bytes = 0
        self._jobs: deque[Job] = deque()
        self._by_owner: dict[str | bytes, list[int]] = {}  # owner -> [jobs, bytes] waiting

    def __len__(self) -> int:
        return len(self._jobs)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def refusal(self, job: Job) -> str | None:
        """Why ``job`` cannot be queued (the limit's name), or None when it can."""
        if len(self._jobs) >= self.max_len:
            return "max_queue"
        if self.bytes + job.size > self.max_bytes:
            return "max_queue_bytes"
        held = self._by_owner.get(job.owner)
        if held is not None and (held[0] >= self.share_len or held[1] + job.size > self.share_bytes):
            return "queue_share"
        return None

    def push(self, job: Job) -> bool:
        """Queue ``job`` at the back; False when a bound (see :meth:`refusal`) refuses it."""
        if self.refusal(job) is not None:
            return False
        self._jobs.append(job)
        self._count(job, 1)
        return True

    def push_front(self, job: Job) -> None:
        """Put a job back at the front (re-dispatch of an idempotent request); may exceed the bounds."""
        self._jobs.appendleft(job)
        self._count(job, 1)

    def pop(self) -> Job | None:
        """The oldest waiting job, or None."""
        if not self._jobs:
            return None
        job = self._jobs.popleft()
        self._count(job, -1)
        return job

    def take_expired(self, now: float) -> list[Job]:
        """Remove and return the jobs whose client deadline has passed."""
        return self.take_due(now)

    def take_due(self, before: float) -> list[Job]:
        """Remove and return the jobs whose client deadline comes at or before ``before``."""
        if not any(j.deadline is not None and j.deadline <= before for j in self._jobs):
            return []
        due = [j for j in self._jobs if j.deadline is not None and j.deadline <= before]
        self._jobs = deque(j for j in self._jobs if j.deadline is None or j.deadline > before)
        for job in due:
            self._count(job, -1)
        return due

    def take_all(self) -> list[Job]:
        """Empty the queue, returning what was in it."""
        jobs, self._jobs = list(self._jobs), deque()
        self._by_owner.clear()
        self.bytes = 0
        return jobs

    def _count(self, job: Job, sign: int) -> None:
        self.bytes += sign * job.size
        held = self._by_owner.setdefault(job.owner, [0, 0])
        held[0] += sign
        held[1] += sign * job.size
        if held[0] <= 0:
            del self._by_owner[job.owner]
