"""Files the project creates are private (issue 10): 0600 whatever the umask, a warning for shared ones."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from fluxon.database.connection import open_connection
from fluxon.database.schema import _backup
from fluxon.private_files import ensure_private_file, prepare_private_database


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_database_and_its_wal_shm_and_backup_are_0600_gh10(tmp_path, umask) -> None:
    path = tmp_path / "app.sqlite3"
    conn = open_connection(str(path))
    conn.execute("CREATE TABLE secrets (hash TEXT)")
    conn.execute("INSERT INTO secrets VALUES ('scrypt$...')")
    reader = open_connection(str(path))  # a second connection: the -shm is shared
    assert reader.execute("SELECT count(*) FROM secrets").fetchone() == (1,)
    created = [path, tmp_path / "app.sqlite3-wal", tmp_path / "app.sqlite3-shm"]
    backup = Path(_backup(conn, path, 1))
    created.append(backup)
    for file in created:
        assert file.exists() and _mode(file) == 0o600, (file.name, oct(_mode(file)))
    assert open_connection(str(backup)).execute("SELECT hash FROM secrets").fetchone() == ("scrypt$...",)
    conn.close()
    reader.close()


def test_a_shared_existing_database_is_warned_about_once(tmp_path, caplog) -> None:
    path = tmp_path / "old.sqlite3"
    path.write_bytes(b"")
    path.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="fluxon.security")
    for _ in range(3):
        open_connection(str(path)).close()
    lines = [r.getMessage() for r in caplog.records if r.name == "fluxon.security"]
    assert len(lines) == 1 and str(path) in lines[0] and "644" in lines[0]
    assert _mode(path) == 0o644  # the operator's file: warned about, not changed


def test_ensure_private_file_keeps_existing_files_and_skips_memory(tmp_path) -> None:
    path = tmp_path / "f"
    assert ensure_private_file(path) is True and _mode(path) == 0o600
    path.write_text("kept")
    assert ensure_private_file(path) is False and path.read_text() == "kept"
    prepare_private_database(":memory:")
    prepare_private_database("file::memory:?cache=shared")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
