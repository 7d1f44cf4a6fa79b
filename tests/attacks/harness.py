"""The shared attack harness: a secure broker and worker started through the CLI, an innocent client.

An attack test starts an :class:`AttackCluster` (``fluxon broker`` + ``fluxon worker`` in secure
mode with a real deployment key, anonymous client keys, the control socket on), runs an
:class:`InnocentClient` thread that sends requests in a loop and records every reply and its
latency, attacks, then asserts what issue 10 asks for::

    cluster = attack_cluster()                        # the fixture of tests/attacks/conftest.py
    with cluster.innocent() as innocent:
        baseline = cluster.rss_kb(cluster.broker)
        ...attack...
        innocent.wait_replies(5)                      # the innocent client kept being served
    cluster.assert_alive()                            # no broker or worker process died
    innocent.assert_served(within_s=2.0)              # every innocent reply, each within 2 s
    assert_rss_within(cluster.rss_kb(cluster.broker), baseline, 64 * 1024)

Every process is started by a :class:`support.ProcessGroup` and killed by PID at the end.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from fluxon.broker.control import send_control_command
from fluxon.client import ConnectionHandler
from fluxon.errors import FluxonError
from fluxon.keys import CurveKeyPair, DeploymentKeys, derive_keys, generate_client_keypair, \
    generate_private_key, write_private_key
from fluxon.security import configure_curve_client
from support import REPO_ROOT, ProcessGroup, fluxon_argv, free_port, pid_alive, wait_for

__all__ = ["APP", "AttackCluster", "InnocentClient", "Reply", "assert_rss_within", "make_attack_cluster",
           "raw_client_socket", "rss_kb"]

APP = "tests.apps.attack_app:router"
HEARTBEAT = "0.1"
#: Worker-side deaths as the ``--processes`` supervisor logs them (see worker/supervisor.py).
_DEATH_LINE = "exited with"


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (the worker processes of a ``--processes`` supervisor)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def assert_rss_within(current_kb: int, baseline_kb: int, bound_kb: int, what: str = "RSS") -> None:
    """Fail when ``current_kb`` grew more than ``bound_kb`` over ``baseline_kb``."""
    assert current_kb - baseline_kb <= bound_kb, (
        f"{what} grew {(current_kb - baseline_kb) / 1024:.1f} MiB over its baseline "
        f"({baseline_kb / 1024:.1f} MiB); the bound is {bound_kb / 1024:.1f} MiB")


@dataclass
class Reply:
    """One innocent request: when it was sent, how long its answer took, and what came back."""

    sent_at: float
    latency_s: float
    ok: bool
    error: str = ""


class InnocentClient:
    """A thread sending ``route``/``payload`` requests in a loop and recording each reply and latency.

    It uses its own anonymous client key, as a legitimate user would; its requests have a
    timeout longer than the 2 s the tests allow, so a slow answer is recorded as slow, not lost.
    """

    def __init__(self, cluster: AttackCluster, route: str = "echo", payload: Any = "innocent",
                 *, pause_s: float = 0.02, timeout_s: float = 6.0) -> None:
        self.cluster, self.route, self.payload = cluster, route, payload
        self.pause_s, self.timeout_s = pause_s, timeout_s
        self.replies: list[Reply] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="innocent-client", daemon=True)

    def start(self) -> InnocentClient:
        self._thread.start()
        self.wait_replies(1, timeout_s=15.0)  # served before the attack starts
        return self

    def _run(self) -> None:
        with self.cluster.client(timeout_s=self.timeout_s) as client:
            for i in itertools.count():
                if self._stop.is_set():
                    return
                payload = self.payload if self.payload is not None else i
                sent = time.monotonic()
                try:
                    ok = client.send_request(self.route, payload) == payload
                    error = "" if ok else "wrong answer"
                except FluxonError as exc:
                    ok, error = False, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.replies.append(Reply(sent, time.monotonic() - sent, ok, error))
                self._stop.wait(self.pause_s)

    def count(self) -> int:
        with self._lock:
            return len(self.replies)

    def wait_replies(self, n: int, timeout_s: float = 10.0) -> None:
        """Wait until ``n`` more replies than now have arrived (the client is still being served)."""
        target = self.count() + n
        wait_for(lambda: self.count() >= target, timeout_s, message=f"{n} more innocent replies")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    def assert_served(self, within_s: float = 2.0) -> None:
        """Every innocent request got its right answer, each within ``within_s``."""
        with self._lock:
            replies = list(self.replies)
        assert replies, "the innocent client got no reply at all"
        failed = [r for r in replies if not r.ok]
        assert not failed, f"{len(failed)} of {len(replies)} innocent requests failed, first: {failed[0].error}"
        slowest = max(r.latency_s for r in replies)
        assert slowest <= within_s, (f"the slowest of {len(replies)} innocent replies took {slowest:.2f} s "
                                     f"(bound {within_s} s)")


@dataclass
class AttackCluster:
    """A secure broker (control socket on) and its worker, started as separate OS processes."""

    procs: ProcessGroup
    root: Path
    keys: DeploymentKeys
    key_file: Path
    port: int = field(default_factory=free_port)
    backend_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    broker: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def frontend(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        return f"tcp://127.0.0.1:{self.backend_port}"

    @property
    def control(self) -> str:
        return f"tcp://127.0.0.1:{self.control_port}"

    def start_broker(self, *extra: str) -> subprocess.Popen:
        self.broker = self.procs.start(fluxon_argv(
            "broker", "--bind", self.frontend, "--backend", self.backend, "--control", self.control,
            "--heartbeat-interval-s", HEARTBEAT, "--key-file", str(self.key_file), "--no-console", *extra),
            cwd=REPO_ROOT, name="broker")
        self.procs.wait_log(self.broker, "broker ready")
        return self.broker

    def start_worker(self, *extra: str, app: str = APP, wait: bool = True) -> subprocess.Popen:
        proc = self.procs.start(fluxon_argv(
            "worker", app, "--connect", self.backend, "--heartbeat-interval-s", HEARTBEAT,
            "--key-file", str(self.key_file), *extra), cwd=REPO_ROOT, name="worker")
        self.workers.append(proc)
        if wait:
            self.procs.wait_log(proc, "worker ready")
            wait_for(lambda: self.status()["workers"] >= len(self.workers), 15,
                     message="the worker to register with the broker")
        return proc

    # ------------------------------------------------------------------ clients

    def client(self, pair: CurveKeyPair | None = None, *, timeout_s: float = 10.0) -> ConnectionHandler:
        """A client with ``pair`` or a fresh anonymous key (the attacker's position)."""
        return ConnectionHandler("127.0.0.1", self.port, server_key=self.keys.broker.public,
                                 client_key=pair or generate_client_keypair(), timeout_s=timeout_s)

    @contextmanager
    def innocent(self, route: str = "echo", payload: Any = "innocent", **kwargs: Any) -> Iterator[InnocentClient]:
        """An :class:`InnocentClient` running for the block (stopped at its end, whatever happens)."""
        innocent = InnocentClient(self, route, payload, **kwargs)
        try:
            yield innocent.start()
        finally:
            innocent.stop()

    def status(self) -> dict[str, Any]:
        """The broker's ``status`` (over the CURVE control socket, with the admin key)."""
        return send_control_command(self.control, "status", keys=self.keys, timeout_s=5.0)

    # ------------------------------------------------------------------ process health

    def worker_pids(self) -> list[int]:
        """PIDs of the processes that run views: each worker, or each child of a supervisor."""
        pids: list[int] = []
        for proc in self.workers:
            pids += children(proc.pid) or [proc.pid]
        return pids

    def rss_kb(self, proc: subprocess.Popen | int) -> int:
        return rss_kb(proc if isinstance(proc, int) else proc.pid)

    def worker_deaths(self) -> int:
        """Worker processes the supervisors saw die (``--processes`` > 1 restarts them)."""
        return sum(self.procs.log(proc).count(_DEATH_LINE) for proc in self.workers)

    def assert_alive(self, *, allowed_worker_deaths: int = 0) -> None:
        """No broker or worker process exited, and at most ``allowed_worker_deaths`` children died."""
        for proc in [self.broker, *self.workers]:
            assert proc is not None and proc.poll() is None and pid_alive(proc.pid), (
                f"process {proc.args[3] if proc else '?'} died ({proc.returncode if proc else '-'}):\n"
                + (self.procs.log(proc)[-3000:] if proc else ""))
        deaths = self.worker_deaths()
        assert deaths <= allowed_worker_deaths, (f"{deaths} worker process deaths (allowed "
                                                 f"{allowed_worker_deaths})")

    def broker_log(self) -> str:
        return self.procs.log(self.broker)


@contextmanager
def raw_client_socket(cluster: AttackCluster, pair: CurveKeyPair | None = None) -> Iterator[zmq.Socket]:
    """A CURVE DEALER connected to the frontend, for attacks the client library would not send.

    It has a context (an I/O thread) of its own, so a big attack does not queue up in front of
    the innocent client's messages inside the test process.
    """
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    try:
        configure_curve_client(sock, cluster.keys.broker.public, pair or generate_client_keypair())
        sock.connect(cluster.frontend)
        yield sock
    finally:
        sock.close(0)
        context.term()


def make_attack_cluster(procs: ProcessGroup, root: Path, *broker_args: str, workers: int = 1,
                        worker_args: tuple[str, ...] = (), app: str = APP) -> AttackCluster:
    """Write a deployment key, start the broker with ``broker_args`` and ``workers`` workers."""
    private_key = generate_private_key()
    key_file = root / "deploy.key"
    write_private_key(key_file, private_key)
    cluster = AttackCluster(procs, root, derive_keys(private_key), key_file)
    cluster.start_broker(*broker_args)
    for _ in range(workers):
        cluster.start_worker(*worker_args, app=app)
    return cluster
