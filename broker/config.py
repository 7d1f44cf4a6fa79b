"""The broker's settings, as one dataclass shared by the CLI, ``fluxon run`` and tests."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fluxon.broker.limits import BrokerLimits
from fluxon.errors import ConfigurationError
from fluxon.protocol import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from fluxon.keys import DeploymentKeys

__all__ = ["BrokerConfig", "is_loopback_endpoint", "default_sessions_path", "DEFAULT_SESSIONS_PATH",
           "SESSIONS_PATH_ENV", "MEMORY_SESSIONS"]

#: Where sessions persist when nothing says otherwise: relative to the broker's current folder,
#: like Django's ``db.sqlite3`` beside its project, so a restart in the same place finds them.
DEFAULT_SESSIONS_PATH = ".fluxon/sessions.sqlite3"
#: The environment variable that replaces :data:`DEFAULT_SESSIONS_PATH` (``--sessions-db`` wins over both).
SESSIONS_PATH_ENV = "FLUXON_SESSIONS_DB"
#: The ``sessions_path`` that keeps sessions in memory only (they end with the broker).
MEMORY_SESSIONS = ":memory:"


def default_sessions_path() -> str:
    """``$FLUXON_SESSIONS_DB`` if set, else :data:`DEFAULT_SESSIONS_PATH`."""
    return os.environ.get(SESSIONS_PATH_ENV) or DEFAULT_SESSIONS_PATH


@dataclass
class BrokerConfig:
    """Where the broker binds and how it behaves.

    ``keys=None`` is plain mode (no CURVE): then every endpoint must be loopback
    (or ipc/inproc) unless ``insecure_bind_anywhere`` is set, because plain
    traffic is readable and forgeable by anyone on the network.
    """

    frontend: str = "tcp://127.0.0.1:8080"
    backend: str = "tcp://127.0.0.1:8081"
    control: str | None = "tcp://127.0.0.1:8082"
    keys: DeploymentKeys | None = None
    allow_clients_dir: str | os.PathLike | None = None
    trusted_clients_dir: str | os.PathLike | None = None
    #: The SQLite file sessions persist in (its folder is created); ``":memory:"`` or None: memory only.
    sessions_path: str | os.PathLike | None = field(default_factory=default_sessions_path)
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 3
    max_queue: int = 10_000
    max_message_bytes: int = MAX_MESSAGE_BYTES
    debug: bool = False
    insecure_bind_anywhere: bool = False
    #: How long a graceful stop waits for in-flight requests before answering them Unavailable.
    stop_timeout_s: float = 10.0
    #: How long an ``admin`` control command waits for in-flight jobs and a worker (unless it asks less).
    admin_timeout_s: float = 60.0
    #: With no worker registered for this long (since start, or since the last one left), requests
    #: get Unavailable at once; until then they wait, so restarting workers turn into no errors.
    no_worker_grace_s: float = 5.0
    #: Session housekeeping: purge expired sessions / persist last-seen times this often.
    session_purge_interval_s: float = 60.0
    session_flush_interval_s: float = 5.0
    #: A session expires this long after its client was last seen ...
    session_idle_timeout_s: float = 14 * 86400
    #: ... and this long after it was created or last rotated (login/logout), whatever its activity.
    session_lifetime_s: float = 30 * 86400
    #: Sessions kept at most; past it, the least recently seen anonymous ones are evicted.
    max_sessions: int = 100_000
    #: Log requests that take this many ms or more from arrival to reply (None: off).
    slow_request_ms: int | None = None
    #: ``HOST:PORT`` where the Prometheus metrics are served over HTTP (None: only `ctl metrics`).
    metrics_bind: str | None = None
    #: The budgets against hostile input (frames, queue bytes and shares, rotations, ...).
    limits: BrokerLimits = field(default_factory=BrokerLimits)

    @property
    def sessions_file(self) -> str | None:
        """The session file, or None when sessions live in memory only."""
        if self.sessions_path is None or os.fspath(self.sessions_path) == MEMORY_SESSIONS:
            return None
        return os.fspath(self.sessions_path)

    @property
    def secure(self) -> bool:
        """True when CURVE is on (a deployment key was given)."""
        return self.keys is not None

    def endpoints(self) -> dict[str, str]:
        """The configured endpoints by socket name (control omitted when disabled)."""
        found = {"frontend": self.frontend, "backend": self.backend}
        if self.control:
            found["control"] = self.control
        return found

    def validate(self) -> None:
        """Refuse settings that cannot work or that would expose plain traffic."""
        if self.heartbeat_interval_s <= 0 or self.heartbeat_liveness < 1:
            raise ConfigurationError("heartbeat_interval_s must be > 0 and heartbeat_liveness >= 1")
        if self.no_worker_grace_s < 0:
            raise ConfigurationError("no_worker_grace_s must be >= 0")
        if self.max_queue < 0:
            raise ConfigurationError("max_queue must be >= 0")
        if self.session_idle_timeout_s <= 0 or self.session_lifetime_s <= 0 or self.max_sessions < 1:
            raise ConfigurationError("session timeouts must be > 0 and max_sessions >= 1")
        self.limits.validate()
        if self.max_message_bytes < 1024:
            raise ConfigurationError("max_message_bytes must be at least 1024")
        if self.keys is None and not self.insecure_bind_anywhere:
            exposed = [f"{name}={ep}" for name, ep in self.endpoints().items() if not is_loopback_endpoint(ep)]
            if exposed:
                raise ConfigurationError(
                    "insecure (plain) mode binds only loopback addresses, refusing "
                    + ", ".join(exposed)
                    + ": give a private key for CURVE, bind 127.0.0.1, or pass --insecure-bind-anywhere")
        if self.keys is None and (self.allow_clients_dir or self.trusted_clients_dir):
            raise ConfigurationError("--allow-clients and --trusted-clients need secure mode (client keys "
                                     "exist only with CURVE): give a private key")


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on a loopback address or ``localhost``."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    if parts.scheme != "tcp":
        return False
    host = parts.netloc.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
