"""``fluxon run --reload``: new worker processes when a Python file of the application changes.

The broker keeps running (and with it the sessions and the queue); only the workers
are replaced, one generation at a time:

1. a change to a ``*.py`` file under the application's folder is seen by ``watchfiles``
   (inotify on Linux, FSEvents on macOS, polling where neither works);
2. a new generation of workers starts as fresh interpreters (``fluxon worker APP``),
   so they import the code as it is on disk now;
3. once each of them has registered with the broker, the broker is told (control
   command ``retire``) to send the old generation nothing more, then the old workers
   get SIGTERM and finish their in-flight requests: no request is refused, each one
   runs on an old worker before the switch or on a new one after it;
4. when a new worker exits before registering (a syntax error, an import error) its
   error output is printed, the rest of its generation is stopped, and the old
   workers keep serving until the next change.

Worker processes die with this process (Linux parent-death signal), as forked ones do.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fluxon.logs import json_logs

if TYPE_CHECKING:
    from fluxon.broker import Broker
    from fluxon.keys import DeploymentKeys

__all__ = ["Reloader", "watched_folder"]

log = logging.getLogger("fluxon.reload")

#: How long a new generation may take to register before it counts as failed.
_REGISTER_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0
_CRASH_RETRY_S = 5.0


def watched_folder(app: str) -> Path:
    """The folder to watch for APP (already imported): its top-level package's, or its module's."""
    module_name = app.partition(":")[0]
    top = sys.modules.get(module_name.split(".")[0])
    paths = list(getattr(top, "__path__", None) or ())
    if paths:
        return Path(paths[0]).resolve()
    file = getattr(sys.modules.get(module_name), "__file__", None)
    return Path(file).resolve().parent if file else Path.cwd()


def _preexec() -> None:
    """In the child: die with the parent (as forked workers do) and ignore the terminal's Ctrl-C."""
    from fluxon.worker.supervisor import _die_with_parent

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its workers with SIGTERM


class _Generation:
    """One set of worker processes started from the code on disk at one moment."""

    def __init__(self, number: int, argv: Sequence[str], count: int) -> None:
        self.number = number
        self.procs: list[subprocess.Popen] = []
        self.errors: list[tuple[subprocess.Popen, object]] = []
        for _ in range(count):
            err = tempfile.TemporaryFile()
            proc = subprocess.Popen(list(argv), stderr=err, preexec_fn=_preexec)
            self.procs.append(proc)
            self.errors.append((proc, err))

    def pids(self) -> set[int]:
        return {proc.pid for proc in self.procs}

    def failed(self) -> subprocess.Popen | None:
        """A process of this generation that exited (non-zero) before it was replaced, if any."""
        return next((proc for proc in self.procs if proc.poll() not in (None, 0)), None)

    def error_output(self, proc: subprocess.Popen) -> str:
        for candidate, err in self.errors:
            if candidate is proc:
                err.seek(0)
                return err.read().decode(errors="replace")
        return ""

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL what is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for _, err in self.errors:
            err.close()


class Reloader:
    """Runs the workers of ``fluxon run --reload`` and replaces them when the code changes."""

    def __init__(self, broker: Broker, worker_argv: Sequence[str], count: int, folder: Path, *,
                 keys: DeploymentKeys | None = None) -> None:
        self.broker = broker
        self.keys = keys
        self.worker_argv = list(worker_argv)
        self.count = count
        self.folder = folder
        self._stop = threading.Event()
        self._numbers = iter(range(1, 1 << 30))
        self.current: _Generation | None = None
        self._retry_at = 0.0

    def stop(self) -> None:
        """Make :meth:`run` return (from a signal handler or another thread)."""
        self._stop.set()

    def run(self) -> int:
        """Start the first generation, then reload on every change until stopped; returns 0."""
        try:
            from watchfiles import PythonFilter, watch
        except ImportError as exc:
            raise click.ClickException("--reload needs watchfiles: pip install 'fluxon[reload]'") from exc
        previous = {sig: signal.signal(sig, lambda *_: self._stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.current = self._start_generation()
            if self.current is None:
                raise click.ClickException("the workers could not start; see the error above")
            log.info("watching %s for changes to Python files", self.folder)
            for changes in watch(self.folder, watch_filter=PythonFilter(), stop_event=self._stop,
                                 debounce=100, step=50, rust_timeout=500, yield_on_timeout=True):
                if self._stop.is_set() or self._finished():
                    break
                if changes or self._crashed():
                    names = sorted({os.path.relpath(path, self.folder) for _, path in changes})
                    log.info("changed: %s; starting new workers", ", ".join(names))
                    self.reload()
        finally:
            if self.current is not None:
                self.current.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _finished(self) -> bool:
        """Every current worker exited 0: the broker said SHUTDOWN (the console's ``stop``)."""
        return self.current is not None and all(proc.poll() == 0 for proc in self.current.procs)

    def _crashed(self) -> bool:
        """A current worker died: start a new generation (as the supervisor restarts forked ones)."""
        crashed = self.current.failed() if self.current is not None else None
        if crashed is not None and time.monotonic() < self._retry_at:
            return False  # the last attempt failed too: wait for a change, or retry later
        if crashed is not None:
            self._retry_at = time.monotonic() + _CRASH_RETRY_S
            log.warning("worker %d exited with %s; starting new workers", crashed.pid, crashed.returncode)
        return crashed is not None

    def reload(self) -> bool:
        """Start a new generation; on success retire the old one. False (old kept) on failure."""
        new = self._start_generation()
        if new is None:
            return False
        old, self.current = self.current, new
        if old is not None:
            self._retire(old)
            self._wait_idle(old)
            old.stop()
        log.info("reloaded: worker generation %d serves (pids %s)", new.number,
                 ", ".join(map(str, sorted(new.pids()))))
        return True

    def _retire(self, generation: _Generation) -> None:
        from fluxon.broker.control import send_control_command
        from fluxon.errors import FluxonError

        try:
            send_control_command(self.broker.control_endpoint, "retire", {"pids": sorted(generation.pids())},
                                 keys=self.keys, timeout_s=5.0)
        except FluxonError as exc:  # they still stop gracefully; requests they hold get Unavailable
            log.warning("could not retire the old workers before stopping them: %s", exc.message)

    def _wait_idle(self, generation: _Generation) -> None:
        """Until the broker has the replies of every request it gave ``generation`` (or a deadline).

        A SIGTERM before that could reach a worker ahead of a request already on its way to
        it, which a stopping worker answers ``Unavailable``.
        """
        pids = generation.pids()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while time.monotonic() < deadline and any(
                w.in_flight for w in self.broker.workers if w.info.get("pid") in pids):
            time.sleep(0.02)

    def _start_generation(self) -> _Generation | None:
        generation = _Generation(next(self._numbers), self.worker_argv, self.count)
        deadline = time.monotonic() + _REGISTER_TIMEOUT_S
        while not self._stop.is_set():
            registered = {w.info.get("pid") for w in self.broker.workers}
            if generation.pids() <= registered:
                return generation
            failed = generation.failed()
            if failed is not None or time.monotonic() > deadline:
                why = generation.error_output(failed).rstrip() if failed is not None else \
                    f"the new workers did not register within {_REGISTER_TIMEOUT_S:g} s"
                log.error("reload failed, the previous workers keep serving:\n%s", why)
                if not json_logs():
                    click.echo(f"fluxon run --reload: the new code does not load; the previous workers keep "
                               f"serving.\n{why}", err=True)
                generation.stop(timeout_s=2.0)
                return None
            time.sleep(0.05)
        generation.stop()
        return None
