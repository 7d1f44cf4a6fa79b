"""The broker's session store in PostgreSQL: the same store, its table on the server."""

from __future__ import annotations

import json

import psycopg
import pytest

from e2e_support import Cluster
from support import REPO_ROOT
from fluxon.broker.sessions import SessionStore
from fluxon.errors import InternalError, InvalidSession
from fluxon.keys import derive_keys, generate_client_keypair, generate_private_key

HMAC_KEY = derive_keys(generate_private_key()).session_hmac_key
KEY_A = generate_client_keypair().public_text
KEY_B = generate_client_keypair().public_text
NOW = 1_764_000_000.123456


def changes(**body) -> bytes:
    return json.dumps(body).encode()


def test_sessions_survive_a_restart_and_are_shared_through_postgresql(pg_url) -> None:
    clock = lambda: NOW  # noqa: E731
    first = SessionStore(pg_url, HMAC_KEY, clock=clock)
    a = first.apply_changes(first.resolve(KEY_A, b""), changes(login=5, data={"k": [1, "two"]}))
    b = first.resolve(KEY_B, b"")
    first.apply_changes(b, changes(data={"x": 1}))
    first.apply_changes(first.resolve(KEY_B, b.token), changes(data={"x": 2}))  # an upsert of the row
    first.close()
    second = SessionStore(pg_url, HMAC_KEY, clock=clock)   # a second broker on the same table
    a2, b2 = second.resolve(KEY_A, a.token), second.resolve(KEY_B, b"")
    assert (a2.sid, a2.user_id, a2.data, a2.token) == (a.sid, 5, {"k": [1, "two"]}, a.token)
    assert b2.data == {"x": 2} and b2.created_at == NOW   # DOUBLE PRECISION keeps the microseconds
    assert second.kill(a2.sid)
    second.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM fluxon_sessions").fetchone() == (1,)
        kinds = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'fluxon_sessions' "
                                  "AND table_schema = current_schema()").fetchall())
    assert kinds["created_at"] == "double precision" and kinds["issued"] == "bigint"
    third = SessionStore(pg_url, derive_keys(generate_private_key()).session_hmac_key, clock=clock)
    with pytest.raises(InvalidSession):
        third.resolve(KEY_A, a.token)
    third.close()


def test_a_lost_server_is_an_internal_error_not_a_crash(pg_server, pg_url, caplog) -> None:
    store = SessionStore(pg_url.replace("postgres:@", "postgres:hunter2@"), HMAC_KEY)
    session = store.resolve(KEY_A, b"")
    with psycopg.connect(pg_server.url, autocommit=True) as admin:   # as a server restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db._conn.info.backend_pid,))
    with pytest.raises(InternalError):
        store.apply_changes(session, changes(data={"y": 1}))
    assert store.apply_changes(session, changes(data={"y": 2})).data == {"y": 2}  # reconnected
    store.close()
    assert SessionStore(pg_url, HMAC_KEY).resolve(KEY_A, session.token).data == {"y": 2}
    assert "hunter2" not in caplog.text and "hunter2" not in repr(store.path)


def test_broker_keeps_its_sessions_in_postgresql(procs, pg_url) -> None:
    cluster = Cluster(procs)
    cluster.start_broker("--sessions-db", pg_url)
    log = procs.log(cluster.broker)
    assert "loaded 0 sessions from postgresql://" in log
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM fluxon_sessions").fetchone() == (0,)
    # the URL is not a path: no folder or token-key file named after it appears in the broker's cwd
    assert not (REPO_ROOT / "postgresql:").exists()
