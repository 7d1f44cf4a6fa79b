"""Related objects on a real SQLite file and a real PostgreSQL schema: foreign keys as
objects, select_related, prefetch_related, reverse managers and both sides of
many-to-many (issue 13)."""

from __future__ import annotations

import pickle

import pytest

from fluxon.database import models as m
from fluxon.database import connect
from fluxon.database.managers import ManyToManyManager, ReverseManager
from fluxon.errors import ConfigurationError, DoesNotExist, ValidationError


class Person(m.Model):
    name = m.CharField(max_length=40)


class Tutor(m.Model):
    person = m.ForeignKey(to_table=Person)
    subject = m.CharField(max_length=40)


class Lesson(m.Model):
    title = m.CharField(max_length=40)
    tutor = m.ForeignKey(to_table=Tutor)
    substitute = m.ForeignKey(to_table=Tutor, null=True, on_delete=m.SET_NULL,
                              related_name="covered")
    size = m.IntegerField(default=0)


class Pupil(m.Model):
    name = m.CharField(max_length=40)
    lessons = m.ManyToManyField(to_table=Lesson, related_name="pupils")


class Boxed(m.Model):
    name = m.CharField(max_length=40)
    tags = m.ManyToManyField(to_table="Label", through="Boxing", related_name="boxes")


class Label(m.Model):
    text = m.CharField(max_length=20)


class Boxing(m.Model):
    boxed = m.ForeignKey(to_table=Boxed)
    label = m.ForeignKey(to_table=Label)
    note = m.CharField(max_length=20, default="")


@pytest.fixture
def db(db_url):
    database = connect(db_url, models=[Person, Tutor, Lesson, Pupil, Boxed, Label, Boxing])
    database.create_tables()
    yield database
    database.close_all()


@pytest.fixture
def school(db):
    """3 tutors (each a person), 100 lessons, 4 pupils in some of them."""
    people = [Person.insert(name=f"p{i}") for i in range(3)]
    tutors = [Tutor.insert(person=p, subject=f"s{i}") for i, p in enumerate(people)]
    Lesson.insert_many({"title": f"l{i:03}", "tutor": tutors[i % 3], "size": i,
                        "substitute": tutors[(i + 1) % 3] if i % 2 else None} for i in range(100))
    for i in range(4):
        pupil = Pupil.create(name=f"pupil{i}")
        pupil.lessons.add(*range(1 + i, 11 + i))
    return tutors


class Statements:
    """Counts the statements this thread runs: sqlite3's trace callback on SQLite; on
    PostgreSQL, the calls of the database's one statement runner."""

    def __init__(self, db) -> None:
        self.db = db
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        if hasattr(self.db, "connection"):
            self.db.connection().set_trace_callback(self.seen.append)
        else:
            run = self.db._run

            def counted(sql, params):
                self.seen.append(sql)
                return run(sql, params)
            self.db._run = counted
        return self.seen

    def __exit__(self, *exc: object) -> None:
        if hasattr(self.db, "connection"):
            self.db.connection().set_trace_callback(None)
        else:
            del self.db._run


def test_foreign_key_is_the_object_loaded_once_and_the_key_is_name_id(db, school):
    lesson = Lesson.get(title="l004")
    assert lesson.tutor_id == school[1] and lesson.to_dict()["tutor"] == school[1]
    with Statements(db) as seen:
        tutor = lesson.tutor
        assert isinstance(tutor, Tutor) and tutor.subject == "s1"
        assert lesson.tutor is tutor and lesson.tutor.person.name == "p1"
    assert len(seen) == 2                                     # the tutor, then its person
    assert lesson.substitute is None and lesson.substitute_id is None
    assert Lesson.tutor_id is Lesson.tutor                    # the column, in expressions
    assert Lesson.count(Lesson.tutor_id == school[0]) == 34
    # pickles and dicts keep the key, not the object
    again = pickle.loads(pickle.dumps(lesson))
    assert again.tutor_id == school[1] and "_cache_tutor" not in again.__dict__


def test_assigning_the_object_or_the_key_keeps_both_in_step(db, school):
    lesson = Lesson.get(title="l000")
    other = Tutor.get(id=school[2])
    lesson.tutor = other
    assert lesson.tutor_id == other.id and lesson.tutor is other
    lesson.save()
    assert Lesson.get(title="l000").tutor_id == other.id
    lesson.tutor_id = school[1]
    assert lesson.tutor.id == school[1]                       # the stale cache is not used
    lesson.tutor = school[0]                                  # a bare key also works
    assert lesson.tutor.id == school[0]
    fresh = Lesson(title="new", tutor=other)
    assert fresh.tutor is other and fresh.tutor_id == other.id
    fresh.save()
    assert Lesson.get(title="new").tutor_id == other.id
    with pytest.raises(ValidationError, match="expects a Tutor"):
        lesson.tutor = Person.get(id=1)
    with pytest.raises(ValidationError):
        lesson.tutor_id = other
    unsaved = Tutor(person=1, subject="x")
    lesson.tutor = unsaved
    assert lesson.tutor_id is None
    unsaved.save()
    assert lesson.tutor_id == unsaved.id                      # follows the object once saved


def test_select_related_loads_100_lessons_with_their_tutors_in_one_statement(db, school):
    with Statements(db) as seen:
        lessons = Lesson.select().select_related("tutor").order_by(Lesson.id).all()
        subjects = [lesson.tutor.subject for lesson in lessons]
    assert len(lessons) == 100 and len(seen) == 1 and "JOIN" in seen[0]
    assert subjects == [f"s{i % 3}" for i in range(100)]
    # without select_related, the same loop costs a statement per row (capped by the cache)
    with Statements(db) as seen:
        lessons = Lesson.select().order_by(Lesson.id).all()
        [lesson.tutor.subject for lesson in lessons]
    assert len(seen) == 101


def test_select_related_across_three_models_nullable_and_aliased_joins(db, school):
    with Statements(db) as seen:
        rows = (Lesson.select().select_related("tutor__person", "substitute__person")
                .where(Lesson.size < 4).order_by(Lesson.id).all())
        got = [(r.title, r.tutor.person.name,
                r.substitute.person.name if r.substitute else None) for r in rows]
    assert len(seen) == 1
    assert got == [("l000", "p0", None), ("l001", "p1", "p2"), ("l002", "p2", None),
                   ("l003", "p0", "p1")]
    # the first path keeps the table's own name, so filters on it work as written
    assert [r.title for r in Lesson.select().select_related("tutor")
            .where(Tutor.subject == "s2", Lesson.size < 9)] == ["l002", "l005", "l008"]
    with pytest.raises(ConfigurationError, match="not a ForeignKey"):
        Lesson.select().select_related("pupils")
    with pytest.raises(ConfigurationError):
        Lesson.select().select_related("tutor").dicts().all()


def test_reverse_foreign_key_is_a_queryable_manager(db, school):
    tutor = Tutor.get(id=school[0])
    manager = tutor.lesson_set
    assert isinstance(manager, ReverseManager)
    assert manager.count() == 34 and len(manager) == 34
    assert manager.where(Lesson.size > 90).order_by(Lesson.size.desc()).count() == 3
    assert [lesson.size for lesson in manager.where(Lesson.size > 90).order_by("-size")] == \
        [99, 96, 93]
    assert manager.order_by(Lesson.size)[0].size == 0
    assert tutor.covered.count() == 16                        # related_name
    assert bool(manager) and manager.exists()
    made = tutor.lesson_set.create(title="extra", size=500)
    assert made.tutor_id == tutor.id and tutor.lesson_set.count() == 35
    moved = Lesson.get(title="l001")
    tutor.lesson_set.add(moved)
    assert Lesson.get(title="l001").tutor_id == tutor.id and moved.tutor is tutor
    # the original API's reverse list and related()/follow() keep working
    assert sorted(x.title for x in tutor.related(Lesson, field="tutor"))[:2] == ["extra", "l000"]
    assert moved.follow("tutor").id == tutor.id
    with pytest.raises(ConfigurationError):
        tutor.related(Lesson)                                 # two keys point at Tutor


def test_many_to_many_both_sides_are_managers(db, school):
    pupil = Pupil.get(name="pupil0")
    assert isinstance(pupil.lessons, ManyToManyManager)
    assert pupil.lessons.count() == 10
    assert [x.title for x in pupil.lessons.where(Lesson.size > 7).order_by("title")] == \
        ["l008", "l009"]
    lesson = Lesson.get(title="l005")
    assert sorted(p.name for p in lesson.pupils.all()) == ["pupil0", "pupil1", "pupil2",
                                                           "pupil3"]
    assert lesson.pupils.where(Pupil.name > "pupil1").count() == 2
    assert lesson.pupils.remove(pupil) == 1 and lesson.pupils.count() == 3
    assert pupil.lessons.count() == 9
    assert lesson.pupils.add(pupil) == 1 and pupil.lessons.count() == 10
    assert pupil.lessons.add(lesson, lesson.id) == 0            # already linked: skipped
    assert Pupil.lessons.through_model.count() == 40


def test_repeated_add_through_a_model_inserts_no_duplicate(db):
    box = Boxed.create(name="b")
    label = Label.create(text="fragile")
    assert box.tags.add(label, note="x") == 1
    assert box.tags.add(label) == 0 and Boxing.count() == 1
    assert [b.name for b in label.boxes] == ["b"] and label.boxes.count() == 1


def test_prefetch_related_one_query_per_relation(db, school):
    with Statements(db) as seen:
        tutors = Tutor.select().prefetch_related("lesson_set", "covered", "person").order_by(
            Tutor.id).all()
        counts = [len(t.lesson_set) for t in tutors]
        covered = [len(t.covered.all()) for t in tutors]
        names = [t.person.name for t in tutors]
        firsts = [t.lesson_set.all()[0].title for t in tutors]
    assert len(seen) == 4
    assert counts == [34, 33, 33] and covered == [16, 17, 17] and names == ["p0", "p1", "p2"]
    assert firsts == ["l000", "l001", "l002"]
    assert tutors[0].lesson_set.where(Lesson.size < 3).count() == 1   # filtering queries again
    with Statements(db) as seen:
        pupils = Pupil.select().prefetch_related("lessons__tutor").order_by(Pupil.id).all()
        lessons = [[x.title for x in p.lessons] for p in pupils]
        subjects = {x.tutor.subject for p in pupils for x in p.lessons}
    assert len(seen) == 3
    assert lessons[1] == [f"l{i:03}" for i in range(1, 11)] and subjects == {"s0", "s1", "s2"}
    with Statements(db) as seen:
        lessons = Lesson.select().where(Lesson.size < 3).prefetch_related("pupils").all()
        assert [len(x.pupils) for x in lessons] == [1, 2, 3]
    assert len(seen) == 2
    with pytest.raises(ConfigurationError, match="no relation"):
        Tutor.select().prefetch_related("nothing").all()


def test_default_reverse_names_that_two_keys_share_are_refused(db):
    class Match(m.Model):
        home = m.ForeignKey(to_table=Person)
        away = m.ForeignKey(to_table=Person)

    person = Person.create(name="x")
    with pytest.raises(ConfigurationError, match="related_name"):
        person.match_set
    with pytest.raises(DoesNotExist):
        Lesson(title="t", tutor=12345).tutor
