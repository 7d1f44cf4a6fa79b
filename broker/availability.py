"""Whether the broker has a worker to give requests to, and how long it waits for one.

A broker without workers would otherwise queue every request until its client gives
up with a bare ``Timeout``, which names no cause. Instead, once no worker has been
registered for ``no_worker_grace_s`` (counted from the broker's start or from the
moment the last worker left), requests are answered at once with
``Unavailable("no worker is registered ...")``, and so are the ones that were
waiting. The grace keeps a restart of the workers (``--reload``, a crash the
supervisor restarts, a broker restart the workers reconnect to) from turning into
errors: requests sent meanwhile wait in the queue and are served when a worker is back.
A request whose deadline comes before the grace ends gets the same answer just
before its deadline, so that its client learns the cause rather than timing out.
"""

from __future__ import annotations

from fluxon.errors import Unavailable

__all__ = ["WorkerAbsence"]


class WorkerAbsence:
    """Tracks since when no worker is registered; :meth:`refuses` says when requests must be refused."""

    def __init__(self, grace_s: float, now: float) -> None:
        self.grace_s = grace_s
        self._since: float | None = now  # a broker starts without workers: the grace runs from its start

    def update(self, worker_count: int, now: float) -> None:
        """Call whenever a worker registers or is removed."""
        if worker_count:
            self._since = None
        elif self._since is None:
            self._since = now

    def refuses(self, worker_count: int, now: float) -> bool:
        """True when there is no worker and the grace after the last one left has passed."""
        return not worker_count and self._since is not None and now - self._since >= self.grace_s

    def error(self, now: float, what: str = "the request") -> Unavailable:
        """The answer for a refused request or admin operation."""
        absent = f" (none for {now - self._since:.1f}s)" if self._since is not None else ""
        return Unavailable(f"no worker is registered with the broker{absent} to run {what}; "
                           "start one with `fluxon worker APP --connect BACKEND`",
                           details={"workers": 0})
