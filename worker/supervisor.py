"""Run N worker processes and keep them running: ``fluxon worker --processes N`` and ``fluxon run``.

Children are forked from the parent (so they inherit the already-loaded Router,
even one defined in ``__main__``) before the parent opens any ZeroMQ context.
Each child asks the kernel to SIGTERM it when the parent dies (Linux
``PR_SET_PDEATHSIG``), so even a ``kill -9`` of the parent leaves no orphan.
A child that dies is restarted with a growing delay; a child that exits 0 was
told to stop (the broker's SHUTDOWN: the deployment is stopping) and is not
restarted, and once every child has, the parent returns 0 too. On SIGTERM/SIGINT
the parent forwards SIGTERM, waits for the children's graceful exit, then kills
whatever is left.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

__all__ = ["Supervisor"]

log = logging.getLogger("fluxon.worker")

_PR_SET_PDEATHSIG = 1
_RESTART_DELAY_MAX_S = 30.0
_STABLE_AFTER_S = 10.0


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup still applies
        log.debug("PR_SET_PDEATHSIG is not available; children rely on the parent's cleanup")


def _child_main(target: Callable[[], int], parent_pid: int) -> None:
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    sys.exit(target())


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: BaseProcess | None = None
        self.started_at = 0.0
        self.delay = 0.5
        self.restart_at: float | None = None
        self.finished = False  # exited 0 on purpose: never restarted


class Supervisor:
    """Keeps ``count`` forked processes running ``target`` until stopped."""

    def __init__(self, target: Callable[[], int], count: int, *, stop_timeout_s: float = 15.0) -> None:
        self.target = target
        self.stop_timeout_s = stop_timeout_s
        self._slots = [_Slot(i) for i in range(count)]
        self._stop = threading.Event()
        self._mp = multiprocessing.get_context("fork")

    def start(self) -> None:
        """Fork every child now."""
        for slot in self._slots:
            self._spawn(slot)

    def stop(self) -> None:
        """Make :meth:`run` return after stopping the children; safe from signal handlers and threads."""
        self._stop.set()

    def run(self, *, install_signal_handlers: bool = True) -> int:
        """Supervise until SIGTERM/SIGINT or :meth:`stop`, then stop the children; returns 0."""
        previous = {}
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: self._stop.set())
        try:
            while not self._stop.wait(0.2):
                self._watch()
        finally:
            self.terminate()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def terminate(self) -> None:
        """SIGTERM every child, wait up to ``stop_timeout_s``, then SIGKILL the rest."""
        self._stop.set()
        alive = [slot.process for slot in self._slots if slot.process and slot.process.is_alive()]
        for proc in alive:
            _signal(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in alive:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in alive:
            if proc.is_alive():
                log.warning("worker %d did not stop in %.1fs; killing it", proc.pid, self.stop_timeout_s)
                _signal(proc.pid, signal.SIGKILL)
                proc.join(5)
        log.info("all worker processes stopped")

    def _spawn(self, slot: _Slot) -> None:
        proc = self._mp.Process(target=_child_main, args=(self.target, os.getpid()),
                                name=f"fluxon-worker-{slot.index}", daemon=False)
        proc.start()
        slot.process, slot.started_at, slot.restart_at = proc, time.monotonic(), None
        log.info("started worker process %d (pid %d)", slot.index, proc.pid)

    def _watch(self) -> None:
        now = time.monotonic()
        if all(slot.finished for slot in self._slots):
            self._stop.set()  # every child was told to stop: so is the supervisor
            return
        for slot in self._slots:
            proc = slot.process
            if slot.restart_at is not None:
                if now >= slot.restart_at and not self._stop.is_set():
                    self._spawn(slot)
                continue
            if proc is None or proc.is_alive():
                continue
            proc.join(0)
            if proc.exitcode == 0:
                if not slot.finished:
                    slot.finished = True
                    log.info("worker process %d (pid %d) exited cleanly; not restarting it",
                             slot.index, proc.pid)
                continue
            if now - slot.started_at > _STABLE_AFTER_S:
                slot.delay = 0.5
            log.warning("worker process %d (pid %d) exited with %s; restarting in %.1fs",
                        slot.index, proc.pid, proc.exitcode, slot.delay)
            slot.restart_at = now + slot.delay
            slot.delay = min(slot.delay * 2, _RESTART_DELAY_MAX_S)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
