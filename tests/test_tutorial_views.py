"""The school views on a real SQLite file: each validates its payload, passwords are hashed."""

from __future__ import annotations

import pytest

from examples.school import models, views
from fluxon.database import SqliteDatabase
from fluxon.errors import FluxonError, Unauthorized, ValidationError
from fluxon.routing import Request

ADA = {"username": "ada", "password": "correct horse", "email": "ada@school.example"}


@pytest.fixture
def call(tmp_path):
    db = SqliteDatabase(tmp_path / "school.sqlite3", models=models)
    db.create_tables()

    def call(route: str, payload=None, *, user_id=None):
        request = Request(route, payload, user_id=user_id, db=db)
        result = getattr(views, route)(request)
        return result, request.session_changes()
    call.db = db
    yield call
    db.close_all()


def test_signup_stores_only_a_scrypt_hash_and_login_binds_the_session(call):
    answer, _ = call("signup", ADA)
    assert answer["user_id"] == 1
    [(stored,)] = call.db.execute('SELECT "password" FROM "User"')
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    answer, changes = call("login", {"username": "ada", "password": "correct horse"})
    assert changes == b'{"login":1}'
    assert call("logout", user_id=1)[1] == b'{"logout":true}'


@pytest.mark.parametrize("route, payload, user_id, error, text", [
    ("signup", {**ADA, "password": "short"}, None, ValidationError, "password"),
    ("signup", {**ADA, "username": "a b"}, None, ValidationError, "username"),
    ("signup", {**ADA, "email": "not-an-address"}, None, ValidationError, "email"),
    ("signup", {**ADA, "is_admin": True}, None, ValidationError, "unknown field 'is_admin'"),
    ("signup", {"username": "ada"}, None, ValidationError, "missing field 'password'"),
    ("signup", ["ada", "pw"], None, ValidationError, "must be a dict"),
    ("signup", ADA, None, ValidationError, "is taken"),
    ("login", {"username": "ada", "password": "wrong"}, None, Unauthorized, "wrong username or password"),
    ("login", {"username": "nobody", "password": "x"}, None, Unauthorized, "wrong username or password"),
    ("login", {"username": "ada", "password": 123}, None, ValidationError, "password"),
    ("my_courses", None, None, Unauthorized, "logged-in"),
    ("enroll", {"course_code": "CS-1"}, None, Unauthorized, "logged-in"),
    ("create_course", {"course_name": "X", "course_code": "CS-1"}, 1, ValidationError, "teacher_name"),
    ("create_course", {"course_name": "X", "course_code": "'; DROP"}, 1, ValidationError, "course code"),
    ("enroll", {"course_code": "NOPE"}, 1, ValidationError, "no course"),
    ("whoami", {"extra": 1}, None, ValidationError, "unknown field"),
])
def test_each_view_refuses_bad_input_with_a_typed_error(call, route, payload, user_id, error, text):
    call("signup", ADA)
    with pytest.raises(FluxonError) as caught:
        call(route, payload, user_id=user_id)
    assert type(caught.value) is error
    assert text in caught.value.message


def test_teacher_creates_courses_and_student_lists_them(call):
    call("signup", ADA)
    call("signup", {**ADA, "username": "bob", "email": "bob@school.example"})
    call("create_course", {"course_name": "Distributed Systems", "course_code": "CS-1",
                           "teacher_name": "Ada Lovelace", "department": "Computing"}, user_id=1)
    call("create_course", {"course_name": "Linear Algebra", "course_code": "MA-1"}, user_id=1)
    with pytest.raises(ValidationError, match="first enrollment needs"):
        call("enroll", {"course_code": "CS-1"}, user_id=2)
    first, _ = call("enroll", {"course_code": "MA-1", "name": "Bob", "birth_date": "2004-05-06"}, user_id=2)
    again, _ = call("enroll", {"course_code": "MA-1"}, user_id=2)
    call("enroll", {"course_code": "CS-1"}, user_id=2)
    assert (first["already"], again["already"]) == (False, True)
    courses, _ = call("my_courses", user_id=2)
    assert courses == [
        {"course_code": "CS-1", "course_name": "Distributed Systems", "teacher": "Ada Lovelace"},
        {"course_code": "MA-1", "course_name": "Linear Algebra", "teacher": "Ada Lovelace"},
    ]
    assert call("my_courses", user_id=1)[0] == []
    assert call("whoami", user_id=2)[0]["user"]["username"] == "bob"
    assert call("whoami")[0] == {"user": None}
