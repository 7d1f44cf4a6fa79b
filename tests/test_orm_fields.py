"""ORM fields: every type round-trips its Python type; options behave as documented."""

from __future__ import annotations

import datetime as dt
import decimal
import pickle
import uuid

import pytest

from fluxon.database import models as m
from fluxon.database.ddl import schema_statements
from fluxon.database.manipulation import SqliteDatabase
from fluxon.database.passwords import hash_password, is_password_hash, verify_password
from fluxon.errors import ConfigurationError, IntegrityError, ValidationError


class Everything(m.Model):
    char = m.CharField(max_length=5)
    text = m.TextField()
    integer = m.IntegerField()
    big = m.BigIntegerField()
    positive = m.PositiveIntegerField()
    real = m.FloatField()
    money = m.DecimalField(max_digits=8, decimal_places=2)
    flag = m.BooleanField()
    day = m.DateField()
    clock = m.TimeField()
    moment = m.DateTimeField()
    blob = m.BinaryField()
    doc = m.JSONField()
    ident = m.UUIDField()


class Defaults(m.Model):
    ratio = m.FloatField(default=0.5)
    active = m.BooleanField(default=True)
    price = m.DecimalField(max_digits=6, decimal_places=2, default=decimal.Decimal("9.99"))
    label = m.CharField(max_length=20, default=lambda: "made")
    created = m.DateTimeField(auto_now_add=True)
    changed = m.DateTimeField(auto_now=True)
    born = m.DateField(auto_now_add=True)
    nickname = m.CharField(max_length=20, null=True)
    size = m.CharField(max_length=1, choices=[("S", "small"), ("L", "large")], default="S")
    code = m.CharField(max_length=10, unique=True, null=True)
    rank = m.IntegerField(index=True, default=0)


class Account(m.AuthorizedUser):
    username = m.CharField(max_length=50, unique=True)


@pytest.fixture
def db(tmp_path):
    database = SqliteDatabase(tmp_path / "fields.sqlite3", models=[Everything, Defaults, Account])
    database.create_tables()
    yield database
    database.close_all()


SAMPLE = {
    "char": "abcde", "text": "long text é", "integer": -7, "big": 2 ** 62, "positive": 3,
    "real": 2.25, "money": decimal.Decimal("123456.78"), "flag": False,
    "day": dt.date(2024, 2, 29), "clock": dt.time(13, 45, 1, 500),
    "moment": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
    "blob": b"\x00\xff bytes", "doc": {"a": [1, 2, {"b": None}], "c": "d"},
    "ident": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


def test_every_field_type_round_trips_its_python_type(db):
    pk = Everything.insert(SAMPLE)
    row = Everything.get(Everything.id == pk)
    for name, value in SAMPLE.items():
        got = getattr(row, name)
        assert got == value and type(got) is type(value), name
    assert row.to_dict() == {"id": pk, **SAMPLE}
    assert Everything.count(Everything.money > decimal.Decimal("99999.5")) == 1  # numeric compare
    assert Everything.count(Everything.money > 200000) == 0
    assert Everything.count(Everything.day == dt.date(2024, 2, 29)) == 1


def test_strings_are_converted_from_iso_and_digits(db):
    pk = Everything.insert({**SAMPLE, "day": "2020-05-06", "integer": "42", "money": "1.005",
                            "ident": "12345678123456781234567812345678"})
    row = Everything.get(Everything.id == pk)
    assert row.day == dt.date(2020, 5, 6)
    assert row.integer == 42
    assert row.money == decimal.Decimal("1.00")  # quantized half-even to 2 places
    assert row.ident == SAMPLE["ident"]


@pytest.mark.parametrize("name, bad", [
    ("char", "toolong"), ("char", 5), ("integer", "x1"), ("integer", True), ("positive", -1),
    ("real", "nan?"), ("money", decimal.Decimal("1234567.1")), ("money", "abc"), ("flag", "yes"),
    ("day", dt.datetime(2020, 1, 1)), ("day", "2020-13-01"), ("moment", dt.date(2020, 1, 1)),
    ("blob", "text"), ("doc", {1, 2}), ("ident", "not-a-uuid"), ("text", None),
])
def test_invalid_values_raise_validation_error_naming_the_field(db, name, bad):
    with pytest.raises(ValidationError) as info:
        Everything.insert({**SAMPLE, name: bad})
    assert name in str(info.value)
    assert Everything.count() == 0


def test_defaults_auto_now_and_auto_now_add(db):
    before = dt.datetime.now(dt.timezone.utc)
    pk = Defaults.insert({})
    row = Defaults.get(Defaults.id == pk)
    assert (row.ratio, row.active, row.price, row.label) == (0.5, True, decimal.Decimal("9.99"), "made")
    assert type(row.active) is bool and type(row.price) is decimal.Decimal
    assert row.created >= before and row.changed >= before
    assert row.born == dt.date.today()
    assert row.nickname is None and row.size == "S" and row.rank == 0
    created = row.created
    Defaults.update({Defaults.label: "changed"}, Defaults.id == pk)
    again = Defaults.get(Defaults.id == pk)
    assert again.created == created and again.changed >= row.changed and again.label == "changed"


def test_defaults_in_ddl_and_constructor(db):
    ddl = "\n".join(schema_statements([Defaults]))
    assert '"ratio" REAL NOT NULL DEFAULT 0.5' in ddl
    assert '"active" BOOLEAN NOT NULL DEFAULT 1 CHECK ("active" IN (0, 1))' in ddl
    assert '"price" DECIMAL(6, 2) NOT NULL DEFAULT \'9.99\'' in ddl
    assert 'CREATE INDEX "idx_Defaults_rank" ON "Defaults" ("rank")' in ddl
    obj = Defaults(nickname="n")
    assert obj.ratio == 0.5 and obj.label == "made" and obj.id is None
    obj.save()
    assert obj.id is not None and Defaults.get(id=obj.id).nickname == "n"


def test_unique_null_and_choices(db):
    Defaults.insert({"code": "A"})
    with pytest.raises(IntegrityError) as info:
        Defaults.insert({"code": "A"})
    assert "UNIQUE" in str(info.value)
    assert isinstance(info.value.__cause__, __import__("sqlite3").IntegrityError)
    Defaults.insert({"code": None})
    Defaults.insert({"code": None})  # NULLs never collide
    with pytest.raises(ValidationError):
        Defaults.insert({"size": "M"})
    Defaults.insert({"size": "L"})
    assert Defaults.count(Defaults.size == "L") == 1
    with pytest.raises(ValidationError):
        Defaults.insert({"ratio": None})  # not null


def test_misconfigured_fields_fail_at_definition():
    with pytest.raises(ConfigurationError):
        m.CharField(max_length=0)
    with pytest.raises(ConfigurationError):
        m.ForeignKey(to_table="Everything", on_delete=m.SET_NULL)  # needs null=True
    with pytest.raises(ConfigurationError):
        m.ForeignKey(to_table="Everything", on_delete="EXPLODE")
    with pytest.raises(ConfigurationError):
        m.DecimalField(max_digits=2, decimal_places=3)


def test_password_hashing_is_salted_versioned_and_verified():
    first, second = hash_password("secret"), hash_password("secret")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("secret", first) and not verify_password("Secret", first)
    assert not verify_password("secret", "scrypt$1$1$1$x$y") and not verify_password("secret", None)
    assert is_password_hash(first) and not is_password_hash("secret")


def test_authorized_user_stores_only_hashes(db):
    pk = Account.insert({"username": "ada", "password": "plain pw"})
    stored = db.execute('SELECT "password" FROM "Account" WHERE "id" = ?', [pk])[0][0]
    assert stored != "plain pw" and is_password_hash(stored)
    user = Account.get(Account.id == pk)
    assert user.check_password("plain pw") and not user.check_password("other")
    user.set_password("new pw")
    user.save()
    assert Account.get(username="ada").check_password("new pw")
    typed = Account(username="bob", password="typed pw")
    typed.save()
    assert is_password_hash(typed.password) and typed.check_password("typed pw")
    # A row a view returns (to_dict or pickled) never carries the hash to a client.
    assert "password" not in typed.to_dict() and "password" in typed.to_dict(include_private=True)
    assert "password" not in vars(pickle.loads(pickle.dumps(typed)))
