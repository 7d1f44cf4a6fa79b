"""Workers open the Router's database and hand it to views as ``request.db``."""

from __future__ import annotations

import asyncio

from e2e_support import Cluster
from fluxon.client import AsyncConnectionHandler
from fluxon.database.manipulation import SqliteDatabase
from support import REPO_ROOT, fluxon_argv


def test_two_workers_share_the_sqlite_file(procs, tmp_path, monkeypatch):
    db_path = tmp_path / "app.sqlite3"
    from tests.apps.db_app import Note
    SqliteDatabase(db_path, models=[Note]).create_tables()
    monkeypatch.setenv("FLUXON_TEST_DB", str(db_path))
    cluster = Cluster(procs)
    cluster.start_broker()
    for _ in range(2):
        proc = procs.start(fluxon_argv("worker", "tests.apps.db_app:router", "--connect", cluster.backend,
                                       "--heartbeat-interval-s", "0.1", "--insecure", "--concurrency", "4"),
                           cwd=REPO_ROOT, name="db-worker")
        procs.wait_log(proc, "worker ready")

    async def main():
        async with AsyncConnectionHandler("127.0.0.1", cluster.port, timeout_s=20.0) as client:
            ids = await asyncio.gather(*(client.send_request("add_note", f"note {i}") for i in range(40)))
            return ids, await client.send_request("count_notes")

    ids, count = asyncio.run(main())
    assert sorted(ids) == list(range(1, 41)) and count == 40
    rows = SqliteDatabase(db_path, models=[Note]).Note.check()
    assert sorted(row.text for row in rows) == sorted(f"note {i}" for i in range(40))
