"""Start a real broker and real workers through the CLI for the end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from support import REPO_ROOT, ProcessGroup, fluxon_argv, free_port

# The test applications are imported as ``tests.apps.*``, the name worker processes load them by
# (they run with the repository root as their current directory); plain ``pytest`` does not put
# the repository root on sys.path by itself.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

APP = "tests.apps.echo_app:router"
HEARTBEAT = "0.1"


@dataclass
class Cluster:
    """A broker and its workers, started as separate OS processes."""

    procs: ProcessGroup
    port: int = field(default_factory=free_port)
    backend_port: int = field(default_factory=free_port)
    key_args: tuple[str, ...] = ("--insecure",)
    broker: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return f"tcp://127.0.0.1:{self.backend_port}"

    def start_broker(self, *extra: str) -> subprocess.Popen:
        self.broker = self.procs.start(
            fluxon_argv("broker", "--bind", f"tcp://127.0.0.1:{self.port}", "--backend", self.backend,
                        "--control", "none", "--heartbeat-interval-s", HEARTBEAT, *self.key_args, *extra),
            cwd=REPO_ROOT, name="broker")
        self.procs.wait_log(self.broker, "broker ready")
        return self.broker

    def start_worker(self, *extra: str, wait: bool = True, app: str = APP) -> subprocess.Popen:
        proc = self.procs.start(
            fluxon_argv("worker", app, "--connect", self.backend, "--heartbeat-interval-s", HEARTBEAT,
                        *self.key_args, *extra),
            cwd=REPO_ROOT, name="worker")
        if wait:
            self.procs.wait_log(proc, "worker ready")
        self.workers.append(proc)
        return proc
