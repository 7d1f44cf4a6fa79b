"""Query expressions: SQL text + parameters (assertSQL style) and the rows they return."""

from __future__ import annotations

import datetime as dt

import pytest

from fluxon.database import models as m
from fluxon.database.expressions import compile_node, fn, where
from fluxon.database.manipulation import SqliteDatabase


class Person(m.Model):
    name = m.CharField(max_length=50)
    email = m.CharField(max_length=80, null=True)
    age = m.IntegerField(default=0)
    born = m.DateField(null=True)
    active = m.BooleanField(default=True)


def assert_sql(node, sql, params):
    assert compile_node(node) == (sql, params)


def test_comparisons_become_parameters():
    assert_sql(Person.name == "x", '"name" = ?', ["x"])
    assert_sql(Person.age != 3, '"age" != ?', [3])
    assert_sql(Person.age < 3, '"age" < ?', [3])
    assert_sql(Person.age <= 3, '"age" <= ?', [3])
    assert_sql(Person.age > 3, '"age" > ?', [3])
    assert_sql(Person.age >= 3, '"age" >= ?', [3])
    assert_sql(3 < Person.age, '"age" > ?', [3])  # reflected by Python


def test_none_means_is_null():
    assert_sql(Person.email == None, '"email" IS NULL', [])  # noqa: E711
    assert_sql(Person.email != None, '"email" IS NOT NULL', [])  # noqa: E711


def test_brackets_follow_the_tree():
    a, b, c = Person.name == "a", Person.age > 1, Person.email == "c"
    assert_sql(a & (b | c), '"name" = ? AND ("age" > ? OR "email" = ?)', ["a", 1, "c"])
    assert_sql((a & b) | c, '"name" = ? AND "age" > ? OR "email" = ?', ["a", 1, "c"])
    assert_sql((a | b) & c, '("name" = ? OR "age" > ?) AND "email" = ?', ["a", 1, "c"])
    assert_sql(a & b & c, '"name" = ? AND "age" > ? AND "email" = ?', ["a", 1, "c"])
    assert_sql(~(a | b), 'NOT ("name" = ? OR "age" > ?)', ["a", 1])
    assert_sql(a & ~b, '"name" = ? AND NOT ("age" > ?)', ["a", 1])
    assert_sql(Person.age - (Person.age - 1) == 1, '"age" - ("age" - ?) = ?', [1, 1])


def test_in_like_between_and_helpers():
    assert_sql(Person.age.in_([1, 2]), '"age" IN (?, ?)', [1, 2])
    assert_sql(Person.age.in_([]), '(1 = 0)', [])
    assert_sql(Person.age.not_in([]), '(1 = 1)', [])
    assert_sql(Person.name.like("a%"), "\"name\" LIKE ? ESCAPE '\\'", ["a%"])
    assert_sql(Person.name.startswith("5%_"), "\"name\" LIKE ? ESCAPE '\\'", ["5\\%\\_%"])
    assert_sql(Person.name.contains("x"), "\"name\" LIKE ? ESCAPE '\\'", ["%x%"])
    assert_sql(Person.age.between(1, 9), '"age" BETWEEN ? AND ?', [1, 9])
    assert_sql(fn.lower(Person.name) == "a", 'LOWER("name") = ?', ["a"])


def test_values_are_converted_to_the_columns_stored_form():
    assert_sql(Person.born > dt.date(2000, 1, 2), '"born" > ?', ["2000-01-02"])
    assert_sql(Person.active == True, '"active" = ?', [1])  # noqa: E712
    assert_sql(Person.born.in_([dt.date(2000, 1, 2)]), '"born" IN (?)', ["2000-01-02"])


def test_boolean_keywords_raise_a_helpful_type_error():
    with pytest.raises(TypeError, match="&"):
        (Person.age > 1) and (Person.age < 5)
    with pytest.raises(TypeError):
        not (Person.age > 1)
    with pytest.raises(TypeError):
        if Person.age.in_([1]):
            pass
    # == / != nodes answer by identity so membership tests work.
    assert Person.name in [Person.age, Person.name]
    assert Person.email not in [Person.age, Person.name]
    assert {Person.name: 1}[Person.name] == 1


def test_identifiers_are_quoted_and_escaped():
    class Odd(m.Model):
        weird = m.IntegerField(column_name='we"ird')

        class Meta:
            table_name = 'odd "table"'

    assert_sql(Odd.weird == 1, '"we""ird" = ?', [1])
    assert compile_node(Odd.weird == 1, qualify=True)[0] == '"odd ""table"""."we""ird" = ?'


@pytest.fixture
def db(tmp_path):
    database = SqliteDatabase(tmp_path / "expr.sqlite3", models=[Person])
    database.create_tables()
    Person.insert_many([
        {"name": "ann", "email": "a@x", "age": 30, "born": dt.date(1994, 1, 1)},
        {"name": "bob", "email": None, "age": 17},
        {"name": "cy%", "email": "c@x", "age": 45, "active": False},
        {"name": "email", "email": "e@x", "age": 5},
    ])
    yield database
    database.close_all()


def names(rows):
    return sorted(r.name for r in rows)


def test_expressions_return_the_right_rows(db):
    check = db.Person.Check
    assert names(check(where[(Person.age > 10) & ((Person.name == "bob") | (Person.email == "c@x"))])) \
        == ["bob", "cy%"]
    assert names(check(where[((Person.age > 10) & (Person.name == "bob")) | (Person.email == "c@x")])) \
        == ["bob", "cy%"]
    assert names(check(where[Person.email == None])) == ["bob"]  # noqa: E711
    assert names(check(where[Person.email != None])) == ["ann", "cy%", "email"]  # noqa: E711
    assert check(where[Person.age.in_([])]) == []
    assert len(check(where[Person.age.not_in([])])) == 4
    assert names(check(where[Person.name.startswith("cy%")])) == ["cy%"]
    assert names(check(where[Person.name.startswith("c_")])) == []
    assert names(check(where[Person.born < dt.date(2000, 1, 1)])) == ["ann"]
    assert names(check(where[~(Person.active == True)])) == ["cy%"]  # noqa: E712
    assert names(check(where[Person.age.between(5, 17)])) == ["bob", "email"]


def test_a_value_equal_to_a_column_name_matches_only_that_value(db):
    # The seed compared against the email column when given "email" as a value.
    rows = db.Person.Check(where[Person.name == "email"])
    assert [r.name for r in rows] == ["email"]
    assert db.Person.Check(where[Person.name == '"email"']) == []
