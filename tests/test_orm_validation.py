"""Validation on real SQLite files: validators, format fields, whole-row reports, typed
constraint violations, and how both cross the wire to the client."""

from __future__ import annotations

import asyncio
import decimal
import sqlite3

import pytest

from e2e_support import Cluster
from fluxon.client import AsyncConnectionHandler
from fluxon.database import models as m
from fluxon.database.manipulation import SqliteDatabase
from fluxon.errors import (
    CheckViolation, ConfigurationError, ForeignKeyViolation, IntegrityError, NotNullViolation,
    UniqueViolation, ValidationError, decode_error, encode_error,
)
from tests.apps.orm_errors_app import Member


def even(value):
    if value % 2:
        raise ValidationError("must be even")


class Person(m.Model):
    email = m.EmailField(unique=True)
    site = m.URLField(null=True)
    handle = m.SlugField(max_length=20, default="anon")
    age = m.IntegerField(validators=[m.MinValueValidator(0), m.MaxValueValidator(150), even])
    nick = m.CharField(max_length=10, validators=[m.MinLengthValidator(3)], null=True)
    price = m.DecimalField(max_digits=6, decimal_places=2, default=decimal.Decimal("1.00"),
                           validators=[m.MinValueValidator(decimal.Decimal("0.50"))])
    code = m.CharField(max_length=10, null=True, validators=[m.RegexValidator(r"^[A-Z]+$")])
    positive = m.PositiveIntegerField(default=0)


class Owner(m.Model):
    name = m.CharField(max_length=20)


class Pet(m.Model):
    owner = m.ForeignKey(Owner, on_delete=m.PROTECT)
    name = m.CharField(max_length=20)


class Toy(m.Model):
    owner = m.ForeignKey(Owner, on_delete=m.CASCADE)
    pet = m.ForeignKey(Pet, on_delete=m.CASCADE, null=True)


class Kennel(m.Model):
    toy = m.ForeignKey(Toy, on_delete=m.PROTECT)


@pytest.fixture
def db(tmp_path):
    database = SqliteDatabase(tmp_path / "validation.sqlite3",
                              models=[Person, Owner, Pet, Toy, Kennel])
    database.create_tables()
    yield database
    database.close_all()


@pytest.mark.parametrize("field, good, bad, message", [
    ("email", "ada@example.com", "ada@", "is not a valid email address"),
    ("email", "a.b+c@mail.example.org", "ada example.com", "is not a valid email address"),
    ("site", "https://example.com/a?b=1", "example.com", "is not a valid URL"),
    ("site", "http://localhost:8080/", "javascript:alert(1)", "is not a valid URL"),
    ("handle", "ada_l-1", "ada lovelace", "may contain only letters, digits, hyphens and underscores"),
    ("age", 42, -2, "must be at least 0"),
    ("age", 150, 151, "must be at most 150"),
    ("nick", "abc", "ab", "must be at least 3 characters long"),
    ("price", "0.50", "0.49", "must be at least 0.50"),
    ("code", "ABC", "abc", "has an invalid format"),
])
def test_validators_and_format_fields_accept_good_values_and_name_bad_ones(db, field, good, bad, message):
    base = {"email": "x@example.com", "age": 2}
    pk = Person.insert({**base, field: good})
    assert Person.get(Person.id == pk).to_dict()[field] == getattr(Person.get(Person.id == pk), field)
    Person.delete(Person.id == pk)
    with pytest.raises(ValidationError) as caught:
        Person.insert({**base, field: bad})
    assert caught.value.errors == {field: [message]} or message in caught.value.errors[field]
    with pytest.raises(ValidationError):
        Person.update({field: bad}, Person.id > 0, all=True)
    assert Person.count() == 0


def test_a_failing_validator_list_reports_every_message_and_empty_values_skip_them(db):
    with pytest.raises(ValidationError) as caught:
        Person.insert(email="x@example.com", age=-1)
    assert caught.value.errors == {"age": ["must be at least 0", "must be even"]}
    pk = Person.insert(email="y@example.com", age=4, handle="", nick=None)  # "" and None skip
    assert Person.get(Person.id == pk).handle == ""
    assert Person.email.max_length == 254 and Person.site.max_length == 200
    assert Person.handle.index and Person.handle.max_length == 20
    with pytest.raises(ConfigurationError):
        m.IntegerField(validators=["not callable"])


def test_full_clean_reports_every_invalid_field_of_an_instance(db):
    person = Person(email="nope", age=-3, nick="x", site="ftp:/broken", positive=-1)
    with pytest.raises(ValidationError) as caught:
        person.full_clean()
    errors = caught.value.errors
    assert set(errors) == {"email", "age", "nick", "site", "positive"}
    assert errors["age"] == ["must be at least 0", "must be odd"[:0] + "must be even"]
    assert errors["positive"] == ["must be zero or positive"]
    assert "5 invalid fields" in str(caught.value)
    assert Person.count() == 0
    Person(email="ok@example.com", age=2).full_clean()           # a valid instance passes


def test_model_validate_reports_unknown_missing_and_bad_fields_at_once(db):
    with pytest.raises(ValidationError) as caught:
        Person.validate({"email": "bad", "hits": 5, Person.nick: "x"})
    assert caught.value.errors == {
        "email": ["is not a valid email address"], "hits": ["is not a field of Person"],
        "nick": ["must be at least 3 characters long"], "age": ["is required"]}
    clean = Person.validate({Person.email: "v@example.com", "age": 8})
    assert clean == {"email": "v@example.com", "age": 8}
    assert Person.get(Person.id == Person.insert(clean)).email == "v@example.com"


def test_validation_errors_cross_the_wire_as_data():
    with pytest.raises(ValidationError) as caught:
        Person.validate({"email": "bad", "age": 3})
    rebuilt = decode_error(encode_error(caught.value))
    assert type(rebuilt) is ValidationError
    assert rebuilt.errors == caught.value.errors == {"email": ["is not a valid email address"],
                                                     "age": ["must be even"]}


def test_constraint_violations_are_typed_and_name_table_and_fields(db):
    Person.insert(email="a@example.com", age=2)
    with pytest.raises(UniqueViolation) as unique:
        Person.insert(email="a@example.com", age=4)
    assert (unique.value.table, unique.value.fields) == ("Person", ["email"])
    conn = db.connection()
    with pytest.raises(NotNullViolation) as not_null:
        db.execute('INSERT INTO "Person" ("email", "age") VALUES (?, NULL)', ["n@example.com"])
    assert (not_null.value.table, not_null.value.fields) == ("Person", ["age"])
    with pytest.raises(CheckViolation) as check:
        db.execute('UPDATE "Person" SET "positive" = -5')
    assert check.value.table == "Person" and check.value.fields == ["positive"]
    with pytest.raises(ForeignKeyViolation) as fk:
        Pet.insert(owner=999, name="rex")
    assert (fk.value.table, fk.value.fields) == ("Pet", ["owner_id"])
    assert fk.value.details["referenced_table"] == "Owner"
    assert "Pet.owner_id refers to a missing Owner" in str(fk.value)
    owner = Owner.insert(name="o")
    pet = Pet.insert(owner=owner, name="rex")
    with pytest.raises(ForeignKeyViolation) as fk_update:
        Pet.update({"owner": 12345}, Pet.id == pet)
    assert (fk_update.value.table, fk_update.value.fields) == ("Pet", ["owner_id"])
    for error in (unique.value, not_null.value, check.value, fk.value):
        assert isinstance(error, IntegrityError)
        rebuilt = decode_error(encode_error(error))
        assert type(rebuilt) is type(error) and rebuilt.fields == error.fields
        assert rebuilt.table == error.table
    assert isinstance(unique.value.__cause__, sqlite3.IntegrityError)
    assert not conn.in_transaction


def test_a_refused_protect_delete_names_the_referencing_table(db):
    owner = Owner.insert(name="o")
    Pet.insert(owner=owner, name="rex")
    with pytest.raises(ForeignKeyViolation) as refused:
        Owner.delete(Owner.id == owner)
    assert refused.value.table == "Pet" and refused.value.fields == ["owner_id"]
    assert refused.value.details["referenced_table"] == "Owner"
    assert "rows of Pet still refer to it" in str(refused.value)
    other = Owner.insert(name="p")                  # the delete cascades to Toy, PROTECTed by Kennel
    Kennel.insert(toy=Toy.insert(owner=other))
    with pytest.raises(ForeignKeyViolation) as deep:
        Owner.get(Owner.id == other).delete()
    assert deep.value.table == "Kennel" and deep.value.details["referenced_table"] == "Toy"
    assert Owner.count() == 2


def test_typed_errors_reach_the_client_as_the_same_class(procs, tmp_path, monkeypatch):
    monkeypatch.setenv("FLUXON_TEST_DB", str(tmp_path / "members.sqlite3"))
    SqliteDatabase(tmp_path / "members.sqlite3", models=[Member]).create_tables()
    cluster = Cluster(procs)
    cluster.start_broker()
    cluster.start_worker(app="tests.apps.orm_errors_app:router")

    async def main():
        async with AsyncConnectionHandler("127.0.0.1", cluster.port, timeout_s=20.0) as client:
            first = await client.send_request("join", {"email": "a@example.com", "age": 30})
            caught = []
            for payload in ({"email": "bad", "age": -1, "x": 1}, {"email": "a@example.com", "age": 2}):
                try:
                    await client.send_request("join", payload)
                except Exception as exc:   # noqa: BLE001 - the test inspects the class
                    caught.append(exc)
            return first, caught

    first, (invalid, duplicate) = asyncio.run(main())
    assert first == 1
    assert type(invalid) is ValidationError
    assert invalid.errors == {"email": ["is not a valid email address"],
                              "age": ["must be at least 0"], "x": ["is not a field of Member"]}
    assert type(duplicate) is UniqueViolation
    assert (duplicate.table, duplicate.fields) == ("Member", ["email"])
