"""ORM fields: every type round-trips its Python type; options behave as documented."""

from __future__ import annotations

import datetime as dt
import decimal
import pickle
import uuid
from pathlib import Path

import pytest

from apps import school_v1
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
    assert first != second and first.startswith("scrypt$16384$8$5$")
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


# -- issue 11: the original Fluxon API runs as written ----------------------------------

# the original README's school models, with the imports renamed as README.md's table says
ORIGINAL_MODELS = Path(school_v1.__file__).read_text()


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for model modules written by the test (removed afterwards)."""
    import sys
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def write_module(folder, name: str, text: str):
    import importlib
    (folder / f"{name}.py").write_text(text)
    importlib.invalidate_caches()
    return importlib.import_module(name)


class Texts(m.Model):
    title = m.CharField(max_length=20)
    body = m.TextField()
    optional = m.CharField(max_length=5, null=True)
    size = m.CharField(max_length=1, choices=["S", "L"])
    secret = m.PasswordField()


def test_char_and_text_fields_default_to_the_empty_string(tmp_path):
    db = SqliteDatabase(tmp_path / "texts.sqlite3", models=[Texts])
    db.create_tables()
    assert Texts.title.default == "" and Texts.body.default == ""
    assert Texts.optional.default is m.Field().default          # null=True: NULL, as in Django
    assert not Texts.size.has_default and not Texts.secret.has_default
    ddl = schema_statements([Texts])[0]
    assert "\"title\" VARCHAR(20) NOT NULL DEFAULT ''" in ddl
    assert "\"body\" TEXT NOT NULL DEFAULT ''" in ddl
    lines = {line.strip().split(" ")[0]: line for line in ddl.splitlines()}
    assert "DEFAULT" not in lines['"secret"'] + lines['"size"']  # a password never defaults
    pk = Texts.insert({"size": "S", "secret": "pw"})
    row = Texts.get(Texts.id == pk)
    assert (row.title, row.body, row.optional) == ("", "", None)
    assert Texts(size="L").title == ""
    with pytest.raises(IntegrityError):
        Texts.insert({"size": "S"})                              # no password: NOT NULL
    db.close_all()


def test_an_old_snapshot_migrates_cleanly_to_the_empty_string_default(module_dir, tmp_path):
    from fluxon.database.schema import apply_schema, render_snapshot, save_schema, snapshot_path
    models = write_module(module_dir, "original_models_old", ORIGINAL_MODELS)
    schema_dir, path = tmp_path / "schema", tmp_path / "school.sqlite3"
    new_statements = schema_statements(models)
    old_statements = [s.replace(" DEFAULT ''", "") for s in new_statements]
    assert old_statements != new_statements
    schema_dir.mkdir()
    snapshot_path(schema_dir, 1).write_text(render_snapshot(1, old_statements))
    apply_schema(1, schema_dir, path)
    import sqlite3
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO \"User\" (username, password, email, user_creation_date) "
                 "VALUES ('old', 'h', 'old@x', '2020-01-01')")
    conn.commit()
    conn.close()
    saved = save_schema(models, schema_dir)
    assert saved["created"] and saved["number"] == 2
    assert "DEFAULT ''" in snapshot_path(schema_dir, 2).read_text()
    result = apply_schema(2, schema_dir, path)
    assert result["operations"]
    db = SqliteDatabase(path, models=models)
    assert [u.email for u in db.User.check()] == ["old@x"]
    new_id = db.User.insert({db.User.username: "new", db.User.password: "pw"})
    assert db.User.get(db.User.id == new_id).email == ""
    db.close_all()


def test_the_original_readme_code_runs_as_written(module_dir, tmp_path):
    from fluxon.database.manipulation import SqliteDatabase, where   # the original import
    from fluxon.database.schema import apply_schema, save_schema
    models = write_module(module_dir, "original_models", ORIGINAL_MODELS)
    User = models.User
    save_schema(models, tmp_path / "schema")                        # saveschema
    apply_schema(1, tmp_path / "schema", tmp_path / "database.sqlite3")   # updateschema 1

    db = SqliteDatabase(tmp_path / "database.sqlite3", models=models)
    first = db.User.insert({
        db.User.username: "username",
        db.User.password: "password"
    })
    db.update(User, {db.User.email: "newemail@example.com"},
              db.where[db.User.username == "username"])
    users = db.User.Check(db.where[db.User.username == "username"], fetch=1)
    assert [u.email for u in users] == ["newemail@example.com"]
    assert users[0].check_password("password")

    def signup(request_pyload):                                     # the original signup view
        User.Insert(request_pyload)
        return {"status": "200", "message": "Signed up successfully"}

    assert signup({"username": "test", "password": "test123"})["status"] == "200"
    assert db.User.Delete(User, where[db.User.id == first]) == 1
    assert [u.username for u in db.User.Check(db.where[db.User.id > 0])] == ["test"]
    db.close_all()


def test_reloading_a_models_module_the_newest_definition_wins(module_dir, tmp_path):
    import importlib
    models = write_module(module_dir, "reloaded_models", ORIGINAL_MODELS)
    first_student = models.Student
    db = SqliteDatabase(tmp_path / "one.sqlite3", models=models)
    models = importlib.reload(models)
    assert models.Student is not first_student
    second = SqliteDatabase(tmp_path / "two.sqlite3", models=models)   # raised ConfigurationError
    second.create_tables()
    courses = models.Student.courses
    assert courses.through_model is models.Enrollment
    assert courses.source_fk.rel_model is models.Student and courses.rel_model is models.Course
    assert second.Student.model is models.Student and second.User.model is models.User
    user = second.User.insert({"username": "u", "password": "p"})
    teacher = models.Teacher.insert({"user": user, "name": "T"})
    course = models.Course.insert({"course_name": "C", "course_code": "c1", "teacher": teacher})
    models.Student.insert({"user": user, "name": "S", "birth_date": dt.date(2001, 1, 1)})
    models.Student.get(user=user).courses.add(course)
    assert [c.course_name for c in models.Student.get(user=user).courses.all()] == ["C"]
    assert sorted(collect(models)) == sorted(set(collect(models)))     # no stale duplicates
    db.close_all()
    second.close_all()


def collect(module) -> list[str]:
    return [model._meta.table_name for model in m.collect_models(module)]


def test_two_modules_with_the_same_class_names_never_collide(module_dir, tmp_path):
    auto_m2m = '''
from fluxon.database import models as Models

class Course(Models.Model):
    title = Models.CharField(max_length=50)

class Student(Models.Model):
    name = Models.CharField(max_length=50)
    courses = Models.ManyToManyField("Course", through="Enrollment")

class Enrollment(Models.Model):
    student = Models.ForeignKey("Student")
    course = Models.ForeignKey("Course")
    %s
'''
    one = write_module(module_dir, "school_one", auto_m2m % "grade = Models.IntegerField(default=0)")
    two = write_module(module_dir, "school_two", auto_m2m % "note = Models.TextField()")
    assert one.Enrollment.student.rel_model is one.Student
    assert two.Enrollment.student.rel_model is two.Student
    assert two.Student.courses.through_model is two.Enrollment
    db_one = SqliteDatabase(tmp_path / "one.sqlite3", models=one)
    db_two = SqliteDatabase(tmp_path / "two.sqlite3", models=two)
    db_one.create_tables()
    db_two.create_tables()
    assert db_one.Enrollment.model is one.Enrollment and db_two.Enrollment.model is two.Enrollment
    for db, module, extra in ((db_one, one, {"grade": 3}), (db_two, two, {"note": "ok"})):
        student = module.Student.create(name="s")
        course = module.Course.create(title="c")
        student.courses.add(course, **extra)
        assert [c.title for c in student.courses.all()] == ["c"]
    assert "note" not in db_one.Enrollment.model._meta.by_name
    db_one.close_all()
    db_two.close_all()
