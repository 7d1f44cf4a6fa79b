"""Test helpers shared by every area: free endpoints, deadlines, and processes killed by PID.

Tests start real processes (broker, workers, clients) through the real CLI; these
helpers make sure each one is waited for with a deadline and killed, with its
children, whatever the test's outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent


#: Sockets that hold the ports :func:`free_port` handed out, open for the life of the test process.
_RESERVED: list[socket.socket] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 reserved for this test process until it exits.

    "Bind, read the port, close" leaves a window in which another process on a busy
    machine takes the port. Instead the port stays bound (SO_REUSEADDR, never
    listening): the kernel hands it to no other ``bind(0)`` and a plain ``bind`` of it
    fails, while libzmq, which sets SO_REUSEADDR on its listeners, can bind it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    return sock.getsockname()[1]


def free_tcp_endpoint() -> str:
    """``tcp://127.0.0.1:PORT`` with a port reserved by :func:`free_port`."""
    return f"tcp://127.0.0.1:{free_port()}"


def wait_for(predicate: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02,
             message: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the predicate may fail until the system is up
            last_exc = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {message}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def fluxon_argv(*args: str) -> list[str]:
    """argv that runs the ``fluxon`` CLI with this interpreter."""
    return [sys.executable, "-m", "fluxon.cli", *args]


class ProcessGroup:
    """Processes started by one test; :meth:`kill_all` kills each by PID (and its group)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self._count = 0

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: str | os.PathLike | None = None, name: str = "proc") -> subprocess.Popen:
        """Start ``argv`` in its own process group, its output going to a log file in ``log_dir``."""
        self._count += 1
        log_path = self.log_dir / f"{self._count:02d}-{name}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                    env=full_env, cwd=cwd, start_new_session=True)
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        """Everything ``proc`` has written so far."""
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def wait_log(self, proc: subprocess.Popen, text: str, timeout_s: float = 15.0) -> str:
        """Wait until ``text`` appears in ``proc``'s output; fail early if it exits."""
        def seen() -> bool:
            if text in self.log(proc):
                return True
            if proc.poll() is not None:
                raise AssertionError(f"process exited ({proc.returncode}) before printing {text!r}:\n"
                                     + self.log(proc)[-3000:])
            return False
        wait_for(seen, timeout_s, message=f"{text!r} in process output")
        return self.log(proc)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code; kill -9 after ``timeout_s``."""
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait(5)
        return proc.returncode

    def kill_all(self) -> None:
        """Kill every process this group started, and their process groups."""
        for proc in self.procs:
            if proc.poll() is None:
                _kill_group(proc)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _kill_group(proc: subprocess.Popen) -> None:
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


@contextmanager
def process_group(log_dir: Path) -> Iterator[ProcessGroup]:
    """A :class:`ProcessGroup` whose processes are killed when the block ends, whatever happens."""
    group = ProcessGroup(log_dir)
    try:
        yield group
    finally:
        group.kill_all()


def pid_alive(pid: int) -> bool:
    """True while a process with ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
