"""A scripted client session against the school application.

    python3 -m examples.school.client --host 127.0.0.1 --port 8080 --server-key "$(fluxon pubkey --key-file K)"

Settings may also come from the environment: SCHOOL_HOST, SCHOOL_PORT, SCHOOL_SERVER_KEY
(the broker's Z85 public key; without one the client speaks plain, unencrypted ZeroMQ, which
only a broker started with ``--insecure`` accepts).

The session: an anonymous ``whoami`` and ``my_courses`` (refused: login required), a teacher
signs up, fails to log in with a wrong password, logs in and creates two courses, logs out; a
student signs up, logs in, enrolls in both courses and lists them.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable
from typing import Any

from fluxon.connect import ConnectionHandler
from fluxon.errors import FluxonError

__all__ = ["run_session", "main"]


def _expect_error(out: Callable[[str], None], call: Callable[[], Any], label: str) -> FluxonError:
    """Run ``call``, which must fail with a typed Fluxon error; print and return the error."""
    try:
        result = call()
    except FluxonError as exc:
        out(f"{label}: refused as expected -> {type(exc).__name__} ({exc.code}): {exc.message}")
        return exc
    raise RuntimeError(f"{label}: expected an error, got {result!r}")


def run_session(conn: ConnectionHandler, *, suffix: str | None = None,
                out: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the scripted session on ``conn``; return what each step answered (for tests)."""
    suffix = suffix or uuid.uuid4().hex[:6]
    teacher, student = f"ada_{suffix}", f"bob_{suffix}"
    password = "correct horse battery"
    results: dict[str, Any] = {}

    def step(name: str, route: str, payload: Any = None) -> Any:
        answer = conn.send_request(route, payload)
        results[name] = answer
        out(f"{name}: {answer}")
        return answer

    step("whoami (anonymous)", "whoami")
    results["anonymous my_courses"] = _expect_error(
        out, lambda: conn.send_request("my_courses"), "my_courses before login")

    step("signup teacher", "signup", {"username": teacher, "password": password,
                                      "email": f"{teacher}@school.example"})
    results["wrong password"] = _expect_error(
        out, lambda: conn.send_request("login", {"username": teacher, "password": "not it"}),
        "login with a wrong password")
    step("login teacher", "login", {"username": teacher, "password": password})
    step("create course 1", "create_course", {"course_name": "Distributed Systems",
                                              "course_code": "CS-" + suffix[:4],
                                              "teacher_name": "Ada Lovelace",
                                              "department": "Computing"})
    step("create course 2", "create_course", {"course_name": "Linear Algebra",
                                              "course_code": "MA-" + suffix[:4]})
    step("logout teacher", "logout")

    step("signup student", "signup", {"username": student, "password": password,
                                      "email": f"{student}@school.example"})
    step("login student", "login", {"username": student, "password": password})
    for index, code in enumerate(("CS-" + suffix[:4], "MA-" + suffix[:4]), start=1):
        step(f"enroll {index}", "enroll", {"course_code": code, "name": "Bob Student",
                                           "birth_date": "2004-05-06"})
    courses = step("my courses", "my_courses")
    step("whoami", "whoami")
    out("")
    out(f"{student} is enrolled in:")
    for course in courses:
        out(f"  {course['course_code']:<8} {course['course_name']:<22} taught by {course['teacher']}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse host/port/server key from ``argv`` or the environment and run the session."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("SCHOOL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SCHOOL_PORT", "8080")))
    parser.add_argument("--server-key", default=os.environ.get("SCHOOL_SERVER_KEY") or None,
                        help="the broker's public key (`fluxon pubkey`); omit for an --insecure broker")
    parser.add_argument("--timeout-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        with ConnectionHandler(host=args.host, port=args.port, server_key=args.server_key,
                               timeout_s=args.timeout_s) as conn:
            run_session(conn)
    except FluxonError as exc:
        print(f"error: {type(exc).__name__} ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
