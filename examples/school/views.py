"""The school's views: each validates its payload and returns plain data (dicts, lists, str).

A view receives a :class:`fluxon.routing.Request`; ``request.payload`` (the seed's
``request.pyload``) is whatever the client sent, decoded by the worker's restricted
unpickler, so it is plain data but otherwise untrusted: every view checks it.

Passwords: ``User.password`` stores only the salted scrypt hash that ``set_password``
makes; the plain password is never stored, logged or returned.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from fluxon.database.passwords import verify_dummy_password
from fluxon.errors import DoesNotExist, IntegrityError, Unauthorized, ValidationError
from fluxon.routing import Request, login_required

from .models import Course, Student, Teacher, User

__all__ = ["signup", "login", "logout", "whoami", "create_course", "enroll", "my_courses"]

_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,100}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,63}\.[^@\s]{1,63}$")
_COURSE_CODE = re.compile(r"^[A-Za-z0-9-]{2,10}$")
_MIN_PASSWORD_CHARS = 8
_MAX_PASSWORD_CHARS = 256


# --------------------------------------------------------------------------- validation

def _text(pattern: re.Pattern[str] | None = None, *, min_chars: int = 1,
          max_chars: int = 100, what: str = "text") -> Callable[[str, Any], str]:
    """A checker for a string field: stripped, within bounds, matching ``pattern``."""
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string", details={"field": name})
        value = value.strip()
        if not min_chars <= len(value) <= max_chars:
            raise ValidationError(f"{name} must have {min_chars} to {max_chars} characters",
                                  details={"field": name})
        if pattern is not None and not pattern.match(value):
            raise ValidationError(f"{name} is not a valid {what}", details={"field": name})
        return value
    return check


def _password(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _MIN_PASSWORD_CHARS <= len(value) <= _MAX_PASSWORD_CHARS:
        raise ValidationError(f"{name} must be a string of {_MIN_PASSWORD_CHARS} to "
                              f"{_MAX_PASSWORD_CHARS} characters", details={"field": name})
    return value


def _any_password(name: str, value: Any) -> str:
    """A password as typed at login (no strength rule: old accounts may predate it)."""
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_PASSWORD_CHARS:
        raise ValidationError(f"{name} must be a non-empty string", details={"field": name})
    return value


def _date(name: str, value: Any) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValidationError(f"{name} must be a date (YYYY-MM-DD)", details={"field": name})


def _validated(payload: Any, required: Mapping[str, Callable[[str, Any], Any]],
               optional: Mapping[str, Callable[[str, Any], Any]] | None = None) -> dict[str, Any]:
    """The payload's fields, checked: a dict with every required key and no unknown one."""
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise ValidationError("the payload must be a dict", details={"type": type(payload).__name__})
    optional = optional or {}
    unknown = sorted(str(key) for key in payload if key not in required and key not in optional)
    if unknown:
        raise ValidationError(f"unknown field {unknown[0][:100]!r}", details={"field": unknown[0][:100]})
    missing = [key for key in required if key not in payload]
    if missing:
        raise ValidationError(f"missing field {missing[0]!r}", details={"field": missing[0]})
    checks = {**required, **optional}
    return {key: checks[key](key, value) for key, value in payload.items()}


_username = _text(_USERNAME, min_chars=3, what="username (letters, digits, _ . -)")
_email = _text(_EMAIL, min_chars=3, max_chars=130, what="e-mail address")
_name = _text(max_chars=100)
_department = _text(max_chars=50)
_course_code = _text(_COURSE_CODE, min_chars=2, max_chars=10, what="course code (letters, digits, -)")


# --------------------------------------------------------------------------- views

def signup(request: Request) -> dict[str, Any]:
    """Create a user from {"username", "password", "email"}; the password is stored hashed."""
    data = _validated(request.payload, {"username": _username, "password": _password,
                                        "email": _email})
    user = User(username=data["username"], email=data["email"])
    user.set_password(data["password"])
    try:
        user.save()
    except IntegrityError as exc:
        raise ValidationError(f"the username {data['username']!r} is taken",
                              details={"field": "username"}) from exc
    return {"status": "200", "message": "Signed up successfully", "user_id": user.pk}


def login(request: Request) -> dict[str, Any]:
    """Log the session in from {"username", "password"}; a wrong pair is Unauthorized."""
    data = _validated(request.payload, {"username": _text(max_chars=100), "password": _any_password})
    rows = User.check(User.username == data["username"], fetch=1)
    # One message and the same scrypt work for both cases (an unknown user is checked against a
    # dummy hash), so neither the answer nor its time tells which usernames exist.
    if not rows:
        verify_dummy_password(data["password"])
        raise Unauthorized("wrong username or password")
    if not rows[0].check_password(data["password"]):
        raise Unauthorized("wrong username or password")
    request.login(rows[0].pk)
    return {"status": "200", "message": f"Logged in as {rows[0].username}", "user_id": rows[0].pk}


def logout(request: Request) -> dict[str, Any]:
    """End the session's login (the broker issues a new session token)."""
    _validated(request.payload, {})
    was = request.user_id
    request.logout()
    return {"status": "200", "message": "Logged out" if was is not None else "Was not logged in"}


def whoami(request: Request) -> dict[str, Any]:
    """The logged-in user's public profile, or ``{"user": None}`` for an anonymous session."""
    _validated(request.payload, {})
    if request.user_id is None:
        return {"user": None}
    try:
        user = User.get(User.id == request.user_id)
    except DoesNotExist:
        return {"user": None}
    return {"user": {"id": user.pk, "username": user.username, "email": user.email}}


@login_required
def create_course(request: Request) -> dict[str, Any]:
    """Create a course taught by the caller, who becomes a Teacher on first use.

    Payload: {"course_name", "course_code"} plus, the first time, {"teacher_name",
    "department"}.
    """
    data = _validated(request.payload, {"course_name": _name, "course_code": _course_code},
                      {"teacher_name": _name, "department": _department})
    teacher = _require_teacher(request.user_id, data)
    if Course.exists(Course.course_code == data["course_code"]):
        raise ValidationError(f"course code {data['course_code']!r} is taken",
                              details={"field": "course_code"})
    course_id = Course.insert({Course.course_name: data["course_name"],
                               Course.course_code: data["course_code"],
                               Course.teacher: teacher.pk})
    return {"course_id": course_id, "course_code": data["course_code"],
            "course_name": data["course_name"], "teacher": teacher.name}


@login_required
def enroll(request: Request) -> dict[str, Any]:
    """Enroll the caller in a course; the caller becomes a Student on first use.

    Payload: {"course_code"} plus, the first time, {"name", "birth_date"} (YYYY-MM-DD).
    """
    data = _validated(request.payload, {"course_code": _course_code},
                      {"name": _name, "birth_date": _date})
    rows = Course.check(Course.course_code == data["course_code"], fetch=1)
    if not rows:
        raise ValidationError(f"no course {data['course_code']!r}", details={"field": "course_code"})
    course = rows[0]
    student = _require_student(request.user_id, data)
    if any(c.pk == course.pk for c in student.courses.all()):
        return {"enrolled": course.course_code, "already": True}
    student.courses.add(course)
    return {"enrolled": course.course_code, "already": False}


@login_required
def my_courses(request: Request) -> list[dict[str, Any]]:
    """The caller's courses (as a student), each with its teacher's name; [] if none."""
    _validated(request.payload, {})
    students = Student.check(Student.user == request.user_id, fetch=1)
    if not students:
        return []
    teachers: dict[Any, str] = {}
    result = []
    for course in students[0].courses.all():
        if course.teacher not in teachers:
            teacher = course.follow("teacher")
            teachers[course.teacher] = teacher.name if teacher is not None else "-"
        result.append({"course_code": course.course_code, "course_name": course.course_name,
                       "teacher": teachers[course.teacher]})
    return sorted(result, key=lambda row: row["course_code"])


def _require_teacher(user_id: Any, data: Mapping[str, Any]) -> Teacher:
    """The caller's Teacher row, created from ``teacher_name``/``department`` on first use."""
    rows = Teacher.check(Teacher.user == user_id, fetch=1)
    if rows:
        return rows[0]
    if "teacher_name" not in data or "department" not in data:
        raise ValidationError("your first course needs teacher_name and department",
                              details={"field": "teacher_name"})
    return Teacher.create(user=user_id, name=data["teacher_name"], department=data["department"])


def _require_student(user_id: Any, data: Mapping[str, Any]) -> Student:
    """The caller's Student row, created from ``name``/``birth_date`` on first use."""
    rows = Student.check(Student.user == user_id, fetch=1)
    if rows:
        return rows[0]
    if "name" not in data or "birth_date" not in data:
        raise ValidationError("your first enrollment needs name and birth_date",
                              details={"field": "name"})
    return Student.create(user=user_id, name=data["name"], birth_date=data["birth_date"])
