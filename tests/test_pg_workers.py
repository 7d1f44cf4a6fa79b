"""Two ``fluxon worker`` processes (two hosts, as far as they know) and one PostgreSQL.

A broker and two workers share the session's server: concurrent read-modify-write
transactions from four client processes lose nothing, and a server restart under load
costs the requests in flight a ``DatabaseError`` and nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import sys

from e2e_support import Cluster
from fluxon.client import AsyncConnectionHandler
from fluxon.database import PostgresDatabase
from fluxon.errors import DatabaseError
from support import REPO_ROOT, fluxon_argv

APP = "tests.apps.pg_app:router"

# One client process: BUMPS sequential read-modify-write requests; prints how many failed.
CLIENT = """
import asyncio, sys
from fluxon.client import AsyncConnectionHandler

async def main(port, count):
    failures = 0
    async with AsyncConnectionHandler("127.0.0.1", port, timeout_s=30.0) as client:
        for _ in range(count):
            try:
                await client.send_request("bump")
            except Exception as exc:
                failures += 1
                print("error", type(exc).__name__, exc, file=sys.stderr)
    print(f"failures={failures}")

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


SECRET = "s3cret-pw"


def _start_workers(procs, cluster: Cluster, url: str) -> list:
    """One worker reads the URL (with a password) from the environment, the other from its flag."""
    secret_url = url.replace("postgres:@", f"postgres:{SECRET}@", 1)  # trust auth ignores it
    assert SECRET in secret_url
    workers = []
    for extra, env in ((("--concurrency", "4"), {"FLUXON_DATABASE_URL": secret_url}),
                       (("--concurrency", "4", "--database-url", url), None)):
        proc = procs.start(fluxon_argv("worker", APP, "--connect", cluster.backend,
                                       "--heartbeat-interval-s", "0.1", "--insecure", *extra),
                           cwd=REPO_ROOT, name="pg-worker", env=env)
        procs.wait_log(proc, "worker ready")
        workers.append(proc)
    return workers


def _tables(url: str) -> PostgresDatabase:
    from tests.apps.pg_app import Counter, Entry
    db = PostgresDatabase(url, models=[Counter, Entry])
    db.create_tables()
    return db


def test_four_clients_bump_one_counter_through_two_workers(procs, pg_url):
    db = _tables(pg_url)
    db.Counter.insert(value=0)
    cluster = Cluster(procs)
    cluster.start_broker()
    workers = _start_workers(procs, cluster, pg_url)
    clients = [procs.start([sys.executable, "-c", CLIENT, str(cluster.port), "500"], cwd=REPO_ROOT,
                           name="pg-client") for _ in range(4)]
    for client in clients:
        client.wait(timeout=120)
    logs = [procs.log(client) for client in clients]
    assert all("failures=0" in log for log in logs), [log[-2000:] for log in logs]
    assert db.Counter.get(id=1).value == 2000
    db.close_all()
    # the password is in neither the workers' output, nor argv (ps), nor what views see
    names = asyncio.run(_ask_many(cluster.port, "whoami", 8))
    assert all("***" in name or "postgres:@" in name for name in names)
    for proc in workers:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as cmdline:
            assert SECRET.encode() not in cmdline.read()
    assert all(SECRET not in text for text in [procs.log(p) for p in procs.procs] + names)


async def _ask_many(port: int, route: str, count: int) -> list:
    async with AsyncConnectionHandler("127.0.0.1", port, timeout_s=20.0) as client:
        return await asyncio.gather(*(client.send_request(route) for _ in range(count)))


def test_a_server_restart_costs_database_errors_and_loses_nothing(procs, pg_server, pg_url):
    db = _tables(pg_url)
    cluster = Cluster(procs)
    cluster.start_broker()
    _start_workers(procs, cluster, pg_url)
    acknowledged: list[int] = []
    failures: list[BaseException] = []

    async def send(client, text: str) -> None:
        try:
            acknowledged.append(await client.send_request("add_entry", text))
        except DatabaseError as exc:
            failures.append(exc)

    async def main() -> None:
        async with AsyncConnectionHandler("127.0.0.1", cluster.port, timeout_s=30.0) as client:
            await asyncio.gather(*(send(client, f"before {i}") for i in range(40)))
            assert len(acknowledged) == 40 and not failures
            loop = asyncio.get_running_loop()
            stop = loop.run_in_executor(None, pg_server.stop, "fast")
            while not stop.done() or len(failures) < 2:  # keep the load on through the outage
                await asyncio.gather(*(send(client, "during") for _ in range(4)))
                if stop.done() and len(failures) >= 2:
                    break
            await stop
            await loop.run_in_executor(None, pg_server.start)
            deadline = loop.time() + 30
            resumed = 0
            while resumed < 20:  # service resumes by itself: no worker restarts
                before = len(acknowledged)
                await send(client, "after")
                resumed = resumed + 1 if len(acknowledged) > before else 0
                assert loop.time() < deadline, f"no recovery: {failures[-1:]}"

    asyncio.run(main())
    assert failures and all(isinstance(exc, DatabaseError) for exc in failures)
    db.close_all()  # its idle connection died with the server: check with a new pool
    check = PostgresDatabase(pg_url)
    stored = {row[0] for row in check.execute('SELECT "id" FROM "Entry"')}
    assert set(acknowledged) <= stored
    check.close_all()
    assert all(proc.poll() is None for proc in procs.procs)  # no worker was restarted
