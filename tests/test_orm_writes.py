"""Writes on real SQLite files: the defects of issue 13, upserts, get_or_create, bulk inserts
returning ids, RETURNING via db.execute, and aware datetimes stored in UTC."""

from __future__ import annotations

import uuid

import pytest

from fluxon.database import models as m
from fluxon.database.manipulation import SqliteDatabase
from fluxon.errors import ConfigurationError, ValidationError


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
