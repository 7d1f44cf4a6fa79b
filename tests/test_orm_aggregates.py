"""Aggregates, GROUP BY / HAVING, annotate, distinct and subqueries on a real SQLite file
and a real PostgreSQL schema, each checked against hand-written SQL on the same data
(issue 13)."""

from __future__ import annotations

import datetime

import pytest

from fluxon.database import models as m
from fluxon.database.expressions import fn
from fluxon.database import connect
from fluxon.errors import ConfigurationError, ValidationError


class Coach(m.Model):
    name = m.CharField(max_length=30)


class Class(m.Model):
    title = m.CharField(max_length=30)
    coach = m.ForeignKey(to_table=Coach, null=True, on_delete=m.SET_NULL)
    seats = m.IntegerField()
    starts = m.DateField()


@pytest.fixture
def db(db_url):
    database = connect(db_url, models=[Coach, Class])
    database.create_tables()
    coaches = [Coach.insert(name=n) for n in ("ann", "bob", "cid", "dee")]
    Class.insert_many({"title": f"c{i}", "coach": coaches[i % 3] if i % 7 else None,
                       "seats": (i * 7) % 23, "starts": datetime.date(2026, 1, 1 + i % 28)}
                      for i in range(60))
    yield database
    database.close_all()


def test_group_by_having_matches_hand_written_sql(db):
    query = (Class.select(Class.coach, fn.COUNT(Class.id).alias("n"),
                          fn.SUM(Class.seats).alias("seats"))
             .group_by(Class.coach).having(fn.COUNT(Class.id) > 2).order_by(Class.coach))
    got = [(r["coach"], r["n"], r["seats"]) for r in query.dicts()]
    expected = db.execute('SELECT "coach_id", COUNT("id"), SUM("seats") FROM "Class" '
                          'GROUP BY "coach_id" HAVING COUNT("id") > 2 ORDER BY "coach_id"')
    assert got == [tuple(r) for r in expected] and len(got) == 4   # NULL coach is a group too
    rows = query.all()                                 # as instances: the aggregate is an attribute
    assert isinstance(rows[1], Class) and rows[1].coach_id == got[1][0] and rows[1].n == got[1][1]
    assert query.count() == 4
    # ordering by the alias, and a having on a named expression
    top = Class.select(Class.coach, fn.COUNT(Class.id).alias("n")).where(
        Class.coach.is_null(False)).group_by(Class.coach).order_by("-n", Class.coach).first()
    assert (top.coach_id, top.n) == tuple(db.execute(
        'SELECT "coach_id", COUNT(*) AS n FROM "Class" WHERE "coach_id" IS NOT NULL '
        'GROUP BY "coach_id" ORDER BY n DESC, "coach_id" LIMIT 1')[0])


def test_aggregate_returns_a_dict(db):
    result = Class.select().where(Class.seats > 5).aggregate(
        total=fn.SUM(Class.seats), n=fn.COUNT(Class.id), low=fn.MIN(Class.seats),
        high=fn.MAX(Class.seats), mean=fn.AVG(Class.seats), first=fn.MIN(Class.starts))
    row = db.execute('SELECT SUM(seats), COUNT(id), MIN(seats), MAX(seats), AVG(seats), '
                     'MIN(starts) FROM "Class" WHERE seats > 5')[0]
    assert result == {"total": row[0], "n": row[1], "low": row[2], "high": row[3],
                      "mean": row[4], "first": datetime.date.fromisoformat(row[5])}
    limited = Class.select().order_by(Class.seats.desc()).limit(5).aggregate(s=fn.SUM(Class.seats))
    assert limited == {"s": sum(r[0] for r in db.execute(
        'SELECT seats FROM "Class" ORDER BY seats DESC LIMIT 5'))}
    assert Class.select().where(Class.seats > 99).aggregate(s=fn.SUM(Class.seats)) == {"s": None}
    with pytest.raises(ValidationError):
        Class.select().aggregate()
    with pytest.raises(ConfigurationError):
        Class.select().group_by(Class.coach).aggregate(n=fn.COUNT(Class.id))


def test_annotate_on_a_joined_model(db):
    rows = (Coach.select().join(Class, outer=True).group_by(Coach)
            .annotate(n=fn.COUNT(Class.id), seats=fn.COALESCE(fn.SUM(Class.seats), 0))
            .order_by(Coach.name).all())
    expected = db.execute('SELECT c.name, COUNT(k.id), COALESCE(SUM(k.seats), 0) FROM "Coach" c '
                          'LEFT JOIN "Class" k ON k.coach_id = c.id GROUP BY c.id ORDER BY c.name')
    assert [(r.name, r.n, r.seats) for r in rows] == [tuple(r) for r in expected]
    assert rows[-1].name == "dee" and rows[-1].n == 0 and rows[-1].seats == 0


def test_distinct(db):
    coaches = Class.select(Class.coach).distinct().order_by(Class.coach).dicts().all()
    assert [r["coach"] for r in coaches] == [r[0] for r in db.execute(
        'SELECT DISTINCT coach_id FROM "Class" ORDER BY coach_id')]
    assert Class.select(Class.coach).distinct().count() == 4
    assert Class.select(Class.coach).count() == 60


def test_subqueries_in_and_exists(db):
    busy = Class.select(Class.coach).where(Class.seats > 20)
    names = sorted(c.name for c in Coach.select().where(Coach.id.in_(busy)))
    expected = sorted(r[0] for r in db.execute(
        'SELECT name FROM "Coach" WHERE id IN (SELECT coach_id FROM "Class" WHERE seats > 20)'))
    assert names == expected and names
    # a query of whole rows stands for its primary keys
    small = Class.select().where(Class.seats < 3)
    assert Class.count(Class.id.in_(small)) == len(db.execute('SELECT 1 FROM "Class" WHERE seats < 3'))
    assert Class.count(Class.id.not_in(small)) == 60 - Class.count(Class.id.in_(small))
    # correlated EXISTS, as fn.EXISTS and as query.exists(), also negated
    teaching = Class.select().where(Class.coach == Coach.id)
    with_classes = Coach.select().where(fn.EXISTS(teaching)).order_by(Coach.name)
    assert [c.name for c in with_classes] == ["ann", "bob", "cid"]
    assert [c.name for c in Coach.select().where(~teaching.exists())] == ["dee"]
    # parameters of the subquery stay in place and convert by the inner columns
    late = Class.select(Class.coach).where(Class.starts > datetime.date(2026, 1, 27))
    assert Coach.select().where(Coach.id.in_(late) & (Coach.name != "zz")).count() == \
        db.execute('SELECT COUNT(*) FROM "Coach" WHERE id IN (SELECT coach_id FROM "Class" '
                   "WHERE starts > '2026-01-27') AND name != 'zz'")[0][0]
    # exists() still answers in Python
    assert Class.select().where(Class.seats == 0).exists()
    assert not Class.select().where(Class.seats == 999).exists()


def test_self_join_with_a_table_alias(db):
    other = Class.alias("other")
    pairs = (Class.select(Class.title, other.title.alias("twin"))
             .join(other, on=(other.seats == Class.seats) & (other.id > Class.id))
             .where(Class.seats == 0).order_by(Class.id, other.id).dicts().all())
    expected = db.execute('SELECT a.title, b.title FROM "Class" a JOIN "Class" b '
                          'ON b.seats = a.seats AND b.id > a.id WHERE a.seats = 0 '
                          'ORDER BY a.id, b.id')
    assert [(r["title"], r["twin"]) for r in pairs] == [tuple(r) for r in expected] and pairs
    both = Coach.select(Coach.name, other.title).join(other).where(other.seats == 0).dicts().all()
    assert both and set(both[0]) == {"name", "title"}
    with pytest.raises(ConfigurationError):
        Class.alias("_hidden")
    with pytest.raises(AttributeError):
        other.nothing
