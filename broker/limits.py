"""The broker's resource budgets against hostile clients, and how a refusal is counted and logged.

Each limit keeps one anonymous client from taking the broker (or everyone else's share of
it) down: frames per message, queue bytes and a per-key share of the queue, re-dispatches
of a job whose worker died, session rotations per key, the share of the session cap kept
for new clients, JSON from workers, idle handshakes and the file-descriptor limit.
Every one is a ``fluxon broker`` option (:func:`limit_options`) and is described in
``docs/security.md``.
"""

from __future__ import annotations

import logging
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import click

from fluxon.errors import ConfigurationError
from fluxon.security import RejectionLog

__all__ = ["BrokerLimits", "Refusals", "limit_options", "raise_fd_limit"]

_security_log = logging.getLogger("fluxon.security")


@dataclass
class BrokerLimits:
    """The budgets of one broker (defaults suit a public deployment)."""

    #: Frames a client or worker message may have after its envelope (the protocol uses at most 3).
    max_frames: int = 16
    #: Payload bytes waiting in the request queue at most (besides ``max_queue`` requests).
    max_queue_bytes: int = 256 * 1024 * 1024
    #: The share of the queue (requests and bytes) one client key may hold.
    queue_share: float = 0.25
    #: Times a job whose worker died is sent again (idempotent routes only) before ``WorkerLost``.
    max_redispatch: int = 1
    #: Session rotations (login, logout) one client key may cause per minute.
    rotations_per_minute: int = 30
    #: The share of ``max_sessions`` that logged-in sessions may not take (kept for new clients).
    session_reserve: float = 0.1
    #: Nesting depth of the JSON a worker sends (session changes, error bodies).
    max_json_depth: int = 64
    #: Bytes of session changes a worker may send with one reply.
    max_changes_bytes: int = 1024 * 1024
    #: An incoming connection that has not finished its ZMTP/CURVE handshake by then is closed.
    handshake_timeout_ms: int = 5000
    #: Raise the soft RLIMIT_NOFILE to the hard limit at start (each connection holds a descriptor).
    raise_fd_limit: bool = True

    def validate(self) -> None:
        """Refuse budgets that cannot work."""
        if self.max_frames < 3 or self.max_queue_bytes < 1 or self.max_redispatch < 0:
            raise ConfigurationError("max_frames must be >= 3, max_queue_bytes >= 1, max_redispatch >= 0")
        if not 0 < self.queue_share <= 1 or not 0 <= self.session_reserve < 1:
            raise ConfigurationError("queue_share must be in (0, 1] and session_reserve in [0, 1)")
        if self.rotations_per_minute < 1 or self.max_json_depth < 2 or self.max_changes_bytes < 1024:
            raise ConfigurationError("rotations_per_minute >= 1, max_json_depth >= 2, max_changes_bytes >= 1024")
        if self.handshake_timeout_ms < 0:
            raise ConfigurationError("handshake_timeout_ms must be >= 0 (0: no timeout)")

    def share_of(self, total: int) -> int:
        """One client key's share of ``total`` (at least 1)."""
        return max(1, int(total * self.queue_share))


#: Each budget's option type and help; the flag is the field name with dashes (``--max-frames``).
_OPTIONS: dict[str, tuple[Any, str]] = {
    "max_frames": (click.IntRange(min=3), "Frames per message; a longer one is drained and refused."),
    "max_queue_bytes": (click.IntRange(min=1), "Payload bytes waiting for a worker before clients get Overloaded."),
    "queue_share": (click.FloatRange(0, 1, min_open=True), "Share of the queue (requests, bytes) one key may hold."),
    "max_redispatch": (click.IntRange(min=0), "Re-runs of an idempotent job whose worker died, then WorkerLost."),
    "rotations_per_minute": (click.IntRange(min=1), "Session rotations (login/logout) per client key per minute."),
    "session_reserve": (click.FloatRange(0, 1, max_open=True), "Share of --max-sessions kept from logged-in ones."),
    "max_json_depth": (click.IntRange(min=2), "Nesting depth of JSON from workers (session changes, errors)."),
    "max_changes_bytes": (click.IntRange(min=1024), "Bytes of session changes a worker may send with a reply."),
    "handshake_timeout_ms": (click.IntRange(min=0), "Close connections whose handshake takes longer (0: never)."),
}


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every budget as a ``fluxon broker`` option; the command gets them as ``limits=BrokerLimits``."""
    def build(*args: Any, **kwargs: Any) -> Any:
        values = {f.name: kwargs.pop(f.name) for f in fields(BrokerLimits) if f.name in kwargs}
        return command(*args, limits=BrokerLimits(**values), **kwargs)

    build.__name__, build.__doc__ = command.__name__, command.__doc__
    wrapped: Callable[..., Any] = build
    for name, (kind, text) in reversed(_OPTIONS.items()):
        wrapped = click.option("--" + name.replace("_", "-"), name, type=kind, default=getattr(BrokerLimits, name),
                               show_default=True, help=text)(wrapped)
    return click.option("--raise-fd-limit/--keep-fd-limit", "raise_fd_limit", default=True, show_default=True,
                        help="Raise the soft open-files limit to the hard limit at start.")(wrapped)


class Refusals:
    """A ``status`` counter per kind of refusal and a throttled ``fluxon.security`` line naming it.

    The line names the limit and the client key, at most once per key and limit per interval,
    so an attacker cannot fill the log by repeating the refused message.
    """

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self._log = RejectionLog()

    def refuse(self, limit: str, client_key: str, detail: str) -> None:
        """Count one refusal under ``limit`` and log it (throttled)."""
        self.counts[f"refused_{limit}"] += 1
        self._log.warning(("limit", limit, client_key), "refused by limit %s from key=%s: %s", limit,
                          client_key or "(plain)", detail)


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            _security_log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    return soft, hard
