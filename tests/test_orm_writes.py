"""Writes on real SQLite files: the defects of issue 13, upserts, get_or_create, bulk inserts
returning ids, RETURNING via db.execute, and aware datetimes stored in UTC."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from fluxon.database import connect, models as m
from fluxon.database.manipulation import SqliteDatabase
from fluxon.errors import ConfigurationError, UniqueViolation, ValidationError


class Tag(m.Model):
    name = m.CharField(max_length=20)
    age = m.IntegerField(default=0)


class Token(m.Model):
    id = m.UUIDField(primary_key=True, default=uuid.uuid4)
    label = m.CharField(max_length=20)


class Learner(m.Model):
    name = m.CharField(max_length=20)
    topics = m.ManyToManyField("Topic", through="Study")


class Topic(m.Model):
    title = m.CharField(max_length=20)


class Study(m.Model):                       # a through model without a unique pair
    learner = m.ForeignKey(Learner)
    topic = m.ForeignKey(Topic)
    note = m.CharField(max_length=20, default="")


@pytest.fixture
def db(tmp_path):
    database = SqliteDatabase(tmp_path / "writes.sqlite3", models=[Tag, Token, Learner, Topic, Study])
    database.create_tables()
    yield database
    database.close_all()


def test_unknown_insert_keyword_is_a_validation_error_gh13(db):
    with pytest.raises(ValidationError) as caught:
        Tag.insert({"name": "a"}, hits=5)
    assert caught.value.details["field"] == "hits"
    with pytest.raises(ValidationError):
        db.Tag.insert({"name": "a"}, on_conflict="ignore")
    with pytest.raises(ValidationError):
        db.insert(Tag, {"name": "a"}, hits=5)
    assert Tag.count() == 0
    pk = Tag.insert({"name": "a"}, age=3)             # a keyword that is a field is kept
    assert Tag.get(Tag.id == pk).age == 3


def test_uuid_primary_key_insert_returns_the_uuid_gh13(db):
    key = Token.insert({"label": "t"})
    assert isinstance(key, uuid.UUID)
    assert Token.get(Token.id == key).label == "t"
    given = uuid.uuid4()
    assert Token.insert({"id": given, "label": "u"}) == given
    other = uuid.uuid4()
    assert Token.insert({"id": other.hex, "label": "v"}) == other      # text in, the UUID out
    token = Token(label="w")
    token.save()
    assert isinstance(token.id, uuid.UUID) and Token.get(Token.id == token.id).label == "w"


def test_set_default_with_a_callable_default_is_refused_at_definition_gh13():
    with pytest.raises(ConfigurationError, match="constant default"):
        m.ForeignKey(Tag, on_delete=m.SET_DEFAULT, default=lambda: 1)
    assert m.ForeignKey(Tag, on_delete=m.SET_DEFAULT, default=1).on_delete == m.SET_DEFAULT


def test_unsaved_instance_is_equal_to_itself_gh13(db):
    tag = Tag(name="x")
    assert tag == tag and tag in [tag] and len({tag}) == 1
    assert Tag(name="x") != Tag(name="x")           # two unsaved rows are not the same row
    tag.save()
    assert tag == Tag.get(Tag.id == tag.id)


def test_instance_delete_deletes_that_row_and_class_delete_keeps_where_gh13(db):
    first, second, third = (Tag.create(name=n) for n in "abc")
    assert first.delete() == 1
    assert [t.name for t in Tag.select().order_by(Tag.id)] == ["b", "c"]
    assert Tag.delete(Tag.id == second.id) == 1                        # class level: a where
    assert db.Tag.Delete(Tag, db.where[Tag.id == third.id]) == 1       # the original spelling
    with pytest.raises(ConfigurationError, match="every row"):
        Tag.delete()
    with pytest.raises(ConfigurationError, match="not saved"):
        Tag(name="z").delete()


def test_comparing_a_field_with_a_value_of_the_wrong_type_raises_gh13(db):
    Tag.insert(name="a", age=3)
    with pytest.raises(ValidationError, match="is not an integer"):
        Tag.select().where(Tag.age == "abc").all()
    with pytest.raises(ValidationError):
        Tag.check(Tag.age > "x")
    with pytest.raises(ValidationError):
        Token.select().where(Token.id == "not-a-uuid").all()
    assert [t.age for t in Tag.select().where(Tag.age == "3")] == [3]   # digits still convert
    assert Tag.select().where(Tag.name == "x" * 50).all() == []         # lengths are not enforced
    assert [t.name for t in Tag.select().where(Tag.name.startswith("a"))] == ["a"]


def test_repeated_m2m_add_on_a_through_model_does_not_duplicate_gh13(db):
    learner = Learner.create(name="l")
    algebra, poetry = Topic.create(title="algebra"), Topic.create(title="poetry")
    assert learner.topics.add(algebra, note="first") == 1
    assert learner.topics.add(algebra) == 0
    assert learner.topics.add(algebra, poetry.id, poetry) == 1
    assert Study.count() == 2 and len(learner.topics) == 2
    assert sorted(t.title for t in learner.topics.all()) == ["algebra", "poetry"]
    assert Study.get(topic=algebra.id).note == "first"


# -- upserts, get_or_create, bulk inserts returning ids ---------------------------------

class Member(m.Model):
    email = m.EmailField(unique=True)
    name = m.CharField(max_length=40)
    visits = m.IntegerField(default=0)
    changed = m.DateTimeField(auto_now=True)


@pytest.fixture
def both(db_url):
    """The write tests that also hold on PostgreSQL: one fresh database per backend."""
    database = connect(db_url, models=[Member, Tag, Token])
    database.create_tables()
    yield database
    database.close_all()


def test_upsert_inserts_then_updates_only_the_named_fields(both):
    first = Member.upsert({"email": "a@example.com", "name": "Ada", "visits": 1},
                          conflict=("email",), update=("name",))
    stamp = Member.get(Member.id == first).changed
    again = Member.upsert({"email": "a@example.com", "name": "Ada L", "visits": 9},
                          conflict=("email",), update=("name",))
    row = Member.get(Member.id == first)
    assert again == first and (row.name, row.visits) == ("Ada L", 1) and row.changed >= stamp
    assert both.Member.upsert({"email": "a@example.com", "name": "X", "visits": 5},
                              conflict=[Member.email]) == first           # update=None: all given
    assert (Member.get(Member.id == first).name, Member.get(Member.id == first).visits) == ("X", 5)
    assert Member.upsert({"email": "a@example.com", "name": "kept?"}, conflict=("email",),
                         update=()) == first                              # DO NOTHING
    assert Member.get(Member.id == first).name == "X" and Member.count() == 1
    other = Member.upsert({"email": "b@example.com", "name": "Bo"}, conflict=("email",))
    assert other != first and Member.count() == 2
    with pytest.raises(ConfigurationError, match="not in the data"):
        Member.upsert({"email": "a@example.com"}, conflict=("email",), update=("name",))
    with pytest.raises(ConfigurationError, match="conflict"):
        Member.upsert({"email": "c@example.com"}, conflict=())
    with pytest.raises(ValidationError):
        Member.upsert({"email": "not an address", "name": "n"}, conflict=("email",))


def test_upsert_sql_is_written_by_the_backend():
    backend = SqliteDatabase(":memory:").backend
    assert backend.upsert_clause(["email"], ["name"]) == \
        ' ON CONFLICT ("email") DO UPDATE SET "name" = excluded."name"'
    assert backend.upsert_clause(["a", "b"], []) == ' ON CONFLICT ("a", "b") DO NOTHING'
    assert backend.returning_clause(["id"]) == ' RETURNING "id"'


def test_get_or_create_and_update_or_create(both):
    ada, created = Member.get_or_create(email="a@example.com", defaults={"name": "Ada"})
    assert created and ada.name == "Ada" and ada.id is not None
    same, created = Member.get_or_create(email="a@example.com", defaults={"name": "Other"})
    assert not created and same == ada and same.name == "Ada"
    updated, created = Member.update_or_create(email="a@example.com", defaults={"visits": 3})
    assert not created and updated.id == ada.id and updated.visits == 3
    new, created = both.Member.update_or_create(defaults={"name": "Bo"}, email="b@example.com")
    assert created and new.name == "Bo" and Member.count() == 2


def _get_or_create_in_child(path: str, keys: list[str], out: Any) -> None:
    database = SqliteDatabase(path, models=[Member])
    created = [Member.get_or_create(email=key, defaults={"name": "n"})[1] for key in keys]
    out.put(sum(created))
    database.close_all()


def test_get_or_create_is_race_safe_across_processes(tmp_path):
    import multiprocessing
    path = str(tmp_path / "race.sqlite3")
    SqliteDatabase(path, models=[Member]).create_tables()
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    keys = [f"u{i}@example.com" for i in range(30)]
    children = [context.Process(target=_get_or_create_in_child, args=(path, keys, out))
                for _ in range(4)]
    for child in children:
        child.start()
    totals = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    database = SqliteDatabase(path, models=[Member])
    assert sum(totals) == len(keys) and Member.count() == len(keys)
    database.close_all()


def test_insert_many_returning_gives_the_ids_in_order(both):
    ids = Tag.insert_many([{"name": f"t{i}", "age": i} for i in range(5)], returning=True)
    assert [Tag.get(Tag.id == i).age for i in ids] == [0, 1, 2, 3, 4]
    assert Tag.insert_many([{"name": "x"}, {"age": 7, "name": "y"}, {"name": "z"}]) == 3
    assert [t.name for t in Tag.select().where(Tag.id > ids[-1]).order_by(Tag.id)] == ["x", "y", "z"]
    keys = both.Token.insert_many([{"label": "a"}, {"label": "b"}], returning=True)
    assert all(isinstance(key, uuid.UUID) for key in keys)
    assert [Token.get(Token.id == k).label for k in keys] == ["a", "b"]
    with pytest.raises(UniqueViolation):                  # one bad row: none of the batch stays
        Member.insert_many([{"email": "d@example.com", "name": "a"},
                            {"email": "d@example.com", "name": "b"}])
    assert Member.count() == 0


def test_insert_returning_through_execute_works_outside_atomic(both):
    rows = both.execute('INSERT INTO "Tag" ("name", "age") VALUES (?, ?) RETURNING "id", "name"',
                        ["r", 4])
    assert [tuple(row)[1] for row in rows] == ["r"] and not both.in_transaction()
    assert Tag.get(Tag.id == tuple(rows[0])[0]).age == 4
    changed = both.execute('UPDATE "Tag" SET "age" = "age" + 1 RETURNING "age"')
    assert [tuple(row)[0] for row in changed] == [5]


# -- aware datetimes in UTC ----------------------------------------------------------------

class Event(m.Model):
    title = m.CharField(max_length=20)
    moment = m.DateTimeField(null=True)


def test_aware_datetimes_are_stored_in_utc_and_order_across_offsets(tmp_path):
    database = SqliteDatabase(tmp_path / "events.sqlite3", models=[Event])
    database.create_tables()
    plus_two = dt.timezone(dt.timedelta(hours=2))
    Event.insert(title="later", moment=dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone.utc))
    Event.insert(title="earlier", moment=dt.datetime(2026, 1, 1, 10, 0, tzinfo=plus_two))  # 08:00Z
    Event.insert(title="naive", moment=dt.datetime(2026, 1, 1, 8, 30))       # taken as UTC
    Event.insert(title="text", moment="2026-01-01T11:15:00+03:00")           # 08:15Z
    order = [e.title for e in Event.select().order_by(Event.moment)]
    assert order == ["earlier", "text", "naive", "later"]
    cutoff = dt.datetime(2026, 1, 1, 10, 45, tzinfo=plus_two)                 # 08:45Z
    assert sorted(e.title for e in Event.select().where(Event.moment < cutoff)) == \
        ["earlier", "naive", "text"]
    stored = database.execute('SELECT "moment" FROM "Event" WHERE "title" = ?', ["earlier"])
    assert stored[0][0] == "2026-01-01T08:00:00+00:00"
    back = Event.get(title="naive").moment
    assert back.tzinfo is not None and back == dt.datetime(2026, 1, 1, 8, 30, tzinfo=dt.timezone.utc)
    database.close_all()


def test_updateschema_rewrites_datetimes_stored_before_the_utc_rule(tmp_path):
    import sqlite3
    from fluxon.database.schema import (apply_schema, normalize_database_datetimes, save_schema,
                                        snapshot_path)
    schema_dir, path = tmp_path / "schema", tmp_path / "old.sqlite3"
    save_schema([Event], schema_dir)
    conn = sqlite3.connect(path)                  # a database written before the UTC rule
    conn.executescript(snapshot_path(schema_dir, 1).read_text())
    conn.executemany('INSERT INTO "Event" ("title", "moment") VALUES (?, ?)', [
        ("later", "2026-01-01T09:00:00+00:00"), ("earlier", "2026-01-01T10:00:00+02:00"),
        ("naive", "2026-01-01 08:30:00"), ("zulu", "2026-01-01T08:15:00Z"), ("none", None),
        ("not a date", "soon")])
    conn.commit()
    result = apply_schema(1, schema_dir, path)    # updateschema 1
    assert result["normalized_datetimes"] == 3
    conn.execute('INSERT INTO "Event" ("title", "moment") VALUES (?, ?)',
                 ("late", "2026-01-01T12:00:00+02:00"))
    conn.commit()
    conn.close()
    assert "normalized_datetimes" not in apply_schema(1, schema_dir, path)   # a no-op stays one
    assert normalize_database_datetimes(path)["normalized_datetimes"] == 1     # fluxon schema utc
    assert normalize_database_datetimes(path)["normalized_datetimes"] == 0
    database = SqliteDatabase(path, models=[Event])
    order = [e.title for e in Event.select().where(Event.moment.is_null(False))
             .where(Event.title != "not a date").order_by(Event.moment)]
    assert order == ["earlier", "zulu", "naive", "later", "late"]
    assert database.execute('SELECT "moment" FROM "Event" WHERE "title" = ?', ["earlier"]) == \
        [("2026-01-01T08:00:00+00:00",)]
    database.close_all()
