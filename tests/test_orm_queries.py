"""Queries, rows, injection attempts, transactions and connections on a real SQLite file."""

from __future__ import annotations

import multiprocessing
import pickle
import sqlite3
import threading
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxon.database import models as m
from fluxon.database.manipulation import SqliteDatabase, where
from fluxon.database.rows import Row, rebuild_row
from fluxon.errors import (
    ConfigurationError, DatabaseError, DoesNotExist, IntegrityError, MultipleObjectsReturned,
    ValidationError,
)


class Member(m.Model):
    username = m.CharField(max_length=60, unique=True)
    password = m.CharField(max_length=60, default="")
    score = m.IntegerField(default=0)


class Unbound(m.Model):
    name = m.CharField(max_length=10)


@pytest.fixture
def db(tmp_path):
    database = SqliteDatabase(tmp_path / "queries.sqlite3", models=[Member])
    database.create_tables()
    Member.bulk_insert({"username": f"u{i}", "password": f"secret{i}", "score": i % 4}
                       for i in range(10))
    yield database
    database.close_all()


def table(db):
    return db.execute('SELECT "id", "username", "password", "score" FROM "Member" ORDER BY "id"')


def test_connection_pragmas(db):
    conn = db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_ordering_limit_offset_count_exists(db):
    rows = Member.select().order_by(Member.score.desc(), "username").limit(3).offset(1).all()
    assert [(r.score, r.username) for r in rows] == [(3, "u7"), (2, "u2"), (2, "u6")]
    assert Member.count() == 10 and Member.count(Member.score == 0) == 3
    assert Member.select().where(Member.score > 0).limit(4).count() == 4
    assert Member.exists(Member.username == "u3") and not Member.exists(Member.username == "zz")
    assert db.Member.Check(where[Member.score == 1], fetch=2, order_by=Member.id.desc()) \
        and [r.username for r in db.Member.check(where[Member.score == 1], fetch=2,
                                                 order_by=Member.id.desc())] == ["u9", "u5"]
    assert db.Member.check(where[Member.score == 1], fetch=0) == []


def test_get_one_or_raise(db):
    assert Member.get(Member.username == "u4").score == 0
    assert Member.get(username="u5").score == 1
    with pytest.raises(DoesNotExist):
        Member.get(Member.username == "nobody")
    with pytest.raises(MultipleObjectsReturned):
        Member.get(Member.score == 2)
    assert Member.select().where(Member.username == "nobody").first() is None


def test_rows_as_instances_dicts_and_chosen_columns(db):
    row = Member.get(username="u1")
    assert isinstance(row, Member) and row.to_dict() == {"id": 2, "username": "u1",
                                                         "password": "secret1", "score": 1}
    assert db.Member.check(where[Member.id == 2], as_dict=True) == [row.to_dict()]
    slim = db.Member.check(where[Member.id == 2], columns=[Member.username])
    assert slim[0].to_dict() == {"username": "u1"}
    with pytest.raises(AttributeError, match="not loaded"):
        slim[0].score


def test_rows_pickle_and_fall_back_to_plain_rows(db):
    rows = Member.check(Member.score == 3)
    again = pickle.loads(pickle.dumps(rows))
    assert [type(r) for r in again] == [Member, Member] and again[0].to_dict() == rows[0].to_dict()
    orphan = rebuild_row("no_such_module_here", "Member", {"username": "x"})
    assert isinstance(orphan, Row) and orphan.username == "x" and orphan.to_dict() == {"username": "x"}
    assert pickle.loads(pickle.dumps(orphan)) == {"username": "x"}


def test_update_and_delete_need_where_or_all(db):
    with pytest.raises(ConfigurationError, match="all=True"):
        Member.update({"score": 9})
    with pytest.raises(ConfigurationError, match="all=True"):
        db.Member.delete()
    assert Member.update({Member.score: Member.score + 10}, Member.score == 3) == 2
    assert Member.count(Member.score >= 10) == 2
    assert Member.update({"score": 0}, all=True) == 10
    assert Member.delete(all=True) == 10 and Member.count() == 0


def test_injection_through_dict_keys_is_a_validation_error(db):
    before = table(db)
    key = "username, password) SELECT ?, group_concat(password) FROM Member /*"
    with pytest.raises(ValidationError) as info:
        Member.insert({key: "x", "username": "evil"})
    assert "username, password)" in str(info.value)
    with pytest.raises(ValidationError):
        db.update(Member, {'score" = 0 --': 1}, where[Member.id == 1])
    with pytest.raises(ValidationError):
        Member.select().order_by("score; DROP TABLE Member").all()
    assert table(db) == before


def test_injection_through_values_and_fetch_is_inert(db):
    before = table(db)
    evil = "x' OR '1'='1"
    assert db.Member.Check(where[Member.username == evil]) == []
    assert db.Member.Check(where[Member.username == "u1\" OR 1=1 --"]) == []
    pk = Member.insert({"username": "Robert'); DROP TABLE Member;--"})
    assert Member.get(id=pk).username == "Robert'); DROP TABLE Member;--"
    for fetch in ("1; DROP TABLE Member", "5", -1, 1.5, True):
        with pytest.raises(ValidationError):
            db.Member.Check(where[Member.id > 0], fetch=fetch)
    with pytest.raises(ValidationError):
        db.Member.Check("1=1")
    assert table(db)[:10] == before


def test_a_field_of_another_model_is_refused(db):
    with pytest.raises(ValidationError):
        Member.insert({Unbound.name: "x"})
    with pytest.raises(ConfigurationError, match="not bound"):
        Unbound.insert({"name": "x"})


def test_atomic_commits_rolls_back_and_nests_as_savepoints(db):
    with db.atomic():
        Member.insert(username="a1")
        with pytest.raises(IntegrityError):
            with db.atomic():
                Member.insert(username="a2")
                Member.insert(username="a1")  # unique violation rolls back to the savepoint
        Member.insert(username="a3")
    assert Member.exists(Member.username == "a1") and Member.exists(Member.username == "a3")
    assert not Member.exists(Member.username == "a2")
    with pytest.raises(RuntimeError):
        with db.atomic():
            Member.insert(username="b1")
            raise RuntimeError("boom")
    assert not Member.exists(Member.username == "b1")
    assert not db.in_transaction()

    @db.atomic()
    def twice():
        Member.insert(username="c1")
        Member.insert(username="c1")

    with pytest.raises(IntegrityError) as info:
        twice()
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert not Member.exists(Member.username == "c1")


def test_each_thread_gets_its_own_connection(db):
    seen = {}

    def work(name):
        seen[name] = id(db.connection())
        Member.insert(username=name)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(seen.values())) == 4 and id(db.connection()) not in seen.values()
    assert Member.count(Member.username.startswith("t")) == 4


def test_sqlite_errors_are_translated(db):
    with pytest.raises(DatabaseError) as info:
        db.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_save_inserts_then_updates(db):
    obj = Member(username="new")
    obj.save()
    obj.score = 7
    obj.save()
    assert Member.get(username="new").score == 7 and obj.pk == Member.get(username="new").id
    obj.delete_instance()
    assert not Member.exists(Member.username == "new")


def test_field_names_may_not_hide_model_methods():
    with pytest.raises(ConfigurationError, match="clash"):
        class Bad(m.Model):
            count = m.IntegerField()

    class Fine(m.Model):
        total = m.IntegerField(column_name="count")

    assert Fine.total.column == "count"


def test_capitalised_class_methods_and_unknown_keys_logged(db, caplog):
    pk = Member.Insert({"username": "cap"})
    assert Member.Check(Member.id == pk, fetch=1)[0].username == "cap"
    assert Member.Count(Member.id == pk) == 1
    with caplog.at_level("WARNING", logger="fluxon.security"):
        with pytest.raises(ValidationError):
            Member.Insert({"is_admin": True})
    assert "is_admin" in caplog.text
    with pytest.raises(ValidationError):
        Member.insert(["username"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_any_text_is_only_ever_a_value(db, text):
    # Whatever a client sends as a value is stored and matched literally, never run as SQL.
    with db.atomic():
        pk = Member.insert({"username": "h:" + text})
        assert [r.id for r in db.Member.check(where[Member.username == "h:" + text])] == [pk]
        assert Member.get(id=pk).username == "h:" + text
        Member.delete(Member.id == pk)
    assert Member.count() == 10


def _insert_in_child(name, parent_connection_id):
    if id(Member._meta.database.connection()) == parent_connection_id:
        raise SystemExit(3)  # the parent's connection crossed fork()
    Member.insert(username=name)


def test_a_forked_child_opens_its_own_connection(db):
    parent_conn = db.connection()
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_insert_in_child, args=("from-child", id(parent_conn)))
    child.start()
    try:
        child.join(20)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    assert db.connection() is parent_conn
    assert Member.exists(Member.username == "from-child")


def test_a_where_on_a_table_not_in_the_query_is_a_database_error(db):
    with pytest.raises(DatabaseError, match="no such column"):
        Member.check(Unbound.name == "x")


def test_iterator_streams_in_chunks_with_flat_memory(db):
    Member.insert_many({"username": f"bulk{i}", "score": i % 4} for i in range(20000))
    query = Member.select().where(Member.score == 1).order_by(Member.id)
    assert [r.id for r in query.iterator(chunk_size=7)] == [r.id for r in query]
    assert next(iter(query.dicts().iterator()))["score"] == 1
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    try:
        stream = Member.select().iterator(chunk_size=1000)
        first = next(stream)
        assert isinstance(first, Member) and len(statements) == 1
        assert Member.count() == 20010                 # other reads run while it is open
        assert sum(1 for _ in stream) == 20009
    finally:
        db.connection().set_trace_callback(None)
    tracemalloc.start()
    try:
        for _ in Member.select().iterator(chunk_size=500):
            pass
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rows = Member.select().all()
        _, listed = tracemalloc.get_traced_memory()
        del rows
    finally:
        tracemalloc.stop()
    assert streamed * 5 < listed
    with pytest.raises(ValidationError):
        next(Member.select().iterator(chunk_size=0))


def test_queries_index_and_slice(db):
    ordered = Member.select().order_by(Member.id)
    assert ordered[2].username == "u2" and [r.username for r in ordered[3:5]] == ["u3", "u4"]
    assert ordered[8:].count() == 2
    with pytest.raises(IndexError):
        ordered[10]
    with pytest.raises(ValidationError):
        ordered[-1]
