"""The ORM on PostgreSQL beside SQLite: connect(url), types, errors, transactions, DDL.

Every test marked with the ``db_url`` fixture runs on both backends; the ones about
PostgreSQL only (column types, URL masking, a restarted server) use ``pg_url``.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import uuid

import pytest

from fluxon.database import PostgresDatabase, SqliteDatabase, connect, models as Models
from fluxon.database.backends import PostgresBackend, mask_url
from fluxon.database.backends.postgresql import _placeholders
from fluxon.database.ddl import schema_statements
from fluxon.errors import ConfigurationError, DatabaseError, IntegrityError


class Sample(Models.Model):
    name = Models.CharField(max_length=40, unique=True)
    hits = Models.IntegerField(default=0)
    big = Models.BigIntegerField(null=True)
    ratio = Models.FloatField(null=True)
    price = Models.DecimalField(max_digits=30, decimal_places=10, null=True)
    flag = Models.BooleanField(default=False)
    body = Models.TextField(null=True)
    day = Models.DateField(null=True)
    at = Models.TimeField(null=True)
    stamp = Models.DateTimeField(null=True)
    blob = Models.BinaryField(null=True)
    doc = Models.JSONField(null=True)
    token = Models.UUIDField(null=True)


class Tagged(Models.Model):
    sample = Models.ForeignKey(to_table=Sample, on_delete=Models.CASCADE)
    label = Models.CharField(max_length=20, default="it's 100%?")


MODELS = [Sample, Tagged]

VALUES = {
    "name": "every type", "hits": 2**40, "big": -(2**62), "ratio": 0.1,
    "price": decimal.Decimal("12345678901234567890.0123456789"), "flag": True,
    "body": "text with 'quotes', %s, ? and \u00e9", "day": datetime.date(2024, 2, 29),
    "at": datetime.time(23, 59, 58, 123456),
    "stamp": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc),
    "blob": b"\x00\x01\xffbytes", "doc": {"a": [1, 2.5, None, True], "b": {"c": "d"}},
    "token": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


@pytest.fixture
def db(db_url):
    database = connect(db_url, models=MODELS)
    database.create_tables()
    yield database
    database.close_all()


def test_connect_picks_the_database_for_the_url(tmp_path, pg_url):
    assert isinstance(connect(tmp_path / "plain.sqlite3"), SqliteDatabase)
    relative = connect("sqlite:///relative.sqlite3")
    assert isinstance(relative, SqliteDatabase) and relative.path == "relative.sqlite3"
    absolute = connect(f"sqlite:///{tmp_path}/abs.sqlite3")
    assert absolute.path == f"{tmp_path}/abs.sqlite3"
    pg = connect(pg_url, models=MODELS, pool_size=3)
    assert isinstance(pg, PostgresDatabase) and pg.pool_size == 3
    assert pg.backend.name == "postgresql" and pg.backend.features.transactional_ddl
    assert not relative.backend.features.transactional_ddl
    with pytest.raises(ConfigurationError):
        PostgresDatabase("mysql://x/y")


def test_every_field_type_comes_back_identical(db):
    pk = db.Sample.insert(VALUES)
    row = db.Sample.get(id=pk)
    for name, value in VALUES.items():
        got = getattr(row, name)
        assert got == value and type(got) is type(value), name
    assert db.Sample.insert(name="defaults") == pk + 1
    fresh = db.Sample.get(name="defaults")
    assert (fresh.hits, fresh.flag, fresh.price, fresh.doc) == (0, False, None, None)


def test_queries_compare_in_the_stored_form(db):
    db.Sample.insert(VALUES)
    db.Sample.insert(name="b", flag=False, price=decimal.Decimal("1.5"),
                     stamp=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    S = Sample
    assert [r.name for r in db.Sample.check(db.where[S.flag == True])] == ["every type"]  # noqa: E712
    assert db.Sample.count(db.where[S.price == decimal.Decimal("1.5")]) == 1  # SQLite: text past 15 digits
    assert db.Sample.count(db.where[S.stamp < datetime.datetime(2021, 1, 1,
                                                                tzinfo=datetime.timezone.utc)]) == 1
    assert db.Sample.count(db.where[S.token == VALUES["token"]]) == 1
    assert db.Sample.count(db.where[S.name.in_([])]) == 0
    assert db.Sample.count(db.where[S.name.not_in([])]) == 2
    assert db.Sample.count(db.where[S.body.contains("100%")]) == 0
    assert db.Sample.count(db.where[S.body.contains("%s, ?")]) == 1
    assert [r.name for r in db.Sample.select().order_by("name").offset(1)] == ["every type"]
    assert db.update(Sample, {S.hits: S.hits + 5}, db.where[S.name == "b"]) == 1
    assert db.Sample.get(name="b").hits == 5


def test_defaults_with_quotes_and_percent_and_foreign_keys(db):
    pk = db.Sample.insert(name="s")
    tag = db.Tagged.insert(sample=pk)
    assert db.Tagged.get(id=tag).label == "it's 100%?"
    assert db.execute('SELECT "label" FROM "Tagged" WHERE "label" LIKE ?', ["%100%"]) == [("it's 100%?",)]
    with pytest.raises(IntegrityError):
        db.Tagged.insert(sample=pk + 99)
    db.Sample.delete(db.where[Sample.id == pk])
    assert db.Tagged.count() == 0  # ON DELETE CASCADE


@pytest.mark.parametrize("bad", [
    lambda db: db.Sample.insert(name="dup") and db.Sample.insert(name="dup"),
    lambda db: db.execute('INSERT INTO "Sample" ("name", "hits", "flag") VALUES (NULL, 0, ?)', [False]),
])
def test_constraint_violations_are_integrity_errors(db, bad):
    with pytest.raises(IntegrityError):
        bad(db)
    assert db.Sample.count() <= 1


def test_other_errors_are_database_errors_and_the_database_stays_usable(db):
    with pytest.raises(DatabaseError) as info:
        db.execute("SELECT * FROM no_such_table")
    assert not isinstance(info.value, IntegrityError)
    assert db.Sample.count() == 0


def test_atomic_commits_rolls_back_and_nests_as_savepoints(db):
    with db.atomic():
        db.Sample.insert(name="kept")
        with pytest.raises(IntegrityError):
            with db.atomic():
                db.Sample.insert(name="inner")
                db.Sample.insert(name="kept")
        assert db.in_transaction()
    assert not db.in_transaction()
    assert [r.name for r in db.Sample.check()] == ["kept"]
    with pytest.raises(RuntimeError):
        with db.atomic():
            db.Sample.insert(name="gone")
            raise RuntimeError("roll back")
    assert db.Sample.count() == 1

    @db.atomic()
    def add(name: str) -> None:
        db.Sample.insert(name=name)

    add("decorated")
    assert db.Sample.count() == 2


def test_atomic_read_modify_write_from_threads_loses_nothing(db):
    pk = db.Sample.insert(name="counter")

    def bump() -> None:
        for _ in range(25):
            with db.atomic():
                current = db.Sample.get(id=pk).hits
                db.update(Sample, {Sample.hits: current + 1}, db.where[Sample.id == pk])

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert db.Sample.get(id=pk).hits == 100


def test_postgresql_columns_have_their_natural_types():
    ddl = "\n".join(schema_statements(MODELS, backend=PostgresBackend()))
    for column in ['"id" BIGINT NOT NULL GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY',
                   '"price" NUMERIC(30, 10)', '"flag" BOOLEAN NOT NULL DEFAULT FALSE',
                   '"stamp" TIMESTAMPTZ', '"blob" BYTEA', '"doc" JSONB', '"token" UUID',
                   '"ratio" DOUBLE PRECISION', '"hits" BIGINT NOT NULL DEFAULT 0',
                   '"sample_id" BIGINT NOT NULL REFERENCES "Sample" ("id") ON DELETE CASCADE',
                   '"label" VARCHAR(20) NOT NULL DEFAULT \'it\'\'s 100%?\'']:
        assert column in ddl
    assert "CHECK" not in ddl and "AUTOINCREMENT" not in ddl


@pytest.mark.parametrize("sql, expected", [
    ('SELECT "a" FROM "t" WHERE "a" = ? AND "b" LIKE ?', 'SELECT "a" FROM "t" WHERE "a" = %s AND "b" LIKE %s'),
    ("SELECT '?', '100%' WHERE x = ?", "SELECT '?', '100%%' WHERE x = %s"),
    ('SELECT "odd?""name" FROM t WHERE a % 2 = ?', 'SELECT "odd?""name" FROM t WHERE a %% 2 = %s'),
    ("SELECT 'it''s ?' || ?", "SELECT 'it''s ?' || %s"),
])
def test_placeholders_outside_quotes_become_psycopg_ones(sql, expected):
    assert _placeholders(sql) == expected


def test_a_password_never_shows(pg_server, tmp_path, caplog):
    url = "postgresql://app:s3cret-pw@127.0.0.1:1/app?password=again&sslmode=disable"
    masked = mask_url(url)
    assert "s3cret" not in masked and "again" not in masked and "app:***@127.0.0.1:1" in masked
    assert mask_url("host=x password='p w' user=u") == "host=x password=*** user=u"
    db = PostgresDatabase(url, models=MODELS, pool_timeout_s=0.5)
    with pytest.raises(DatabaseError) as info:
        db.Sample.count()
    db.close_all()
    text = repr(db) + str(info.value) + repr(info.value.details) + caplog.text
    assert "s3cret" not in text and "again" not in text
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    # a password file: the trust-auth server ignores it, but it must be read and used
    with_file = PostgresDatabase(pg_server.new_schema_url(), models=MODELS, password_file=secret)
    assert with_file._connections._connect_kwargs == {"password": "from-a-file"}
    assert with_file.execute("SELECT 1") == [(1,)]
    with_file.close_all()
    with pytest.raises(ConfigurationError):
        PostgresDatabase(pg_server.url, password_file=tmp_path / "missing")


def test_statement_timeout_cancels_long_statements(pg_url):
    db = PostgresDatabase(pg_url, statement_timeout_s=0.2)
    with pytest.raises(DatabaseError) as info:
        db.execute("SELECT pg_sleep(5)")
    assert info.value.details.get("sqlstate") == "57014"  # query_canceled
    assert db.execute("SELECT 2") == [(2,)]
    db.close_all()


def test_streaming_reads_rows_from_a_server_side_cursor(pg_url):
    db = PostgresDatabase(pg_url, models=MODELS)
    db.create_tables()
    db.insert_many(Sample, [{"name": f"n{i}"} for i in range(50)])
    seen = [row[0] for row in db.stream('SELECT "name" FROM "Sample" WHERE "id" > ? ORDER BY "id"',
                                        [10], batch_size=7)]
    assert seen == [f"n{i}" for i in range(10, 50)]
    with db.atomic():
        assert len(list(db.stream('SELECT 1 FROM "Sample"'))) == 50
    db.close_all()


def test_router_database_url_and_the_worker_pool_size(pg_url, tmp_path):
    from fluxon.routing import Router
    from fluxon.worker.core import open_database

    sqlite_router = Router(database_url=f"sqlite:///{tmp_path}/r.sqlite3", models=MODELS)
    assert sqlite_router.database_path == f"{tmp_path}/r.sqlite3" and sqlite_router.database_url is None
    assert isinstance(open_database(sqlite_router), SqliteDatabase)
    router = Router(database_url=pg_url, models=MODELS)
    db = open_database(router, pool_size=7)
    assert isinstance(db, PostgresDatabase) and db.pool_size == 7 and db.models == {
        "Sample": Sample, "Tagged": Tagged}
    db.create_tables()
    assert db.Sample.count() == 0
    db.close_all()
    assert open_database(Router()) is None
    with pytest.raises(ConfigurationError):
        Router(database_url=42)
