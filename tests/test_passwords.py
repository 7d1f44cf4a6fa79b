"""Password hashes (issue 10): OWASP scrypt parameters, old hashes upgraded at login, no user probing by time."""

from __future__ import annotations

import statistics
import time

import pytest

from examples.school import models, views
from fluxon.database import SqliteDatabase
from fluxon.database.passwords import (SCRYPT_N, SCRYPT_P, SCRYPT_R, hash_password, password_needs_update,
                                       verify_dummy_password, verify_password)
from fluxon.errors import Unauthorized
from fluxon.routing import Request

ADA = {"username": "ada", "password": "correct horse", "email": "ada@school.example"}


@pytest.fixture
def db(tmp_path):
    db = SqliteDatabase(tmp_path / "school.sqlite3", models=models)
    db.create_tables()
    yield db
    db.close_all()


def _stored(db) -> str:
    [(stored,)] = db.execute('SELECT "password" FROM "User"')
    return stored


def test_new_hashes_use_an_owasp_scrypt_setting_gh10() -> None:
    assert (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**14, 8, 5)  # 16 MiB per hash (docs/security.md)
    encoded = hash_password("pw")
    assert encoded.split("$")[1:4] == ["16384", "8", "5"]
    assert verify_password("pw", encoded) and not verify_password("other", encoded)
    assert not password_needs_update(encoded)
    assert password_needs_update(hash_password("pw", p=1))
    assert not password_needs_update("not a hash")


def test_an_older_hash_is_rehashed_on_the_next_successful_check_gh10(db) -> None:
    views.signup(Request("signup", ADA, db=db))
    old = hash_password("correct horse", p=1)  # what Fluxon stored before
    db.execute('UPDATE "User" SET "password" = ?', (old,))
    with pytest.raises(Unauthorized):
        views.login(Request("login", {"username": "ada", "password": "wrong"}, db=db))
    assert _stored(db) == old  # a failed check changes nothing
    views.login(Request("login", {"username": "ada", "password": "correct horse"}, db=db))
    upgraded = _stored(db)
    assert upgraded != old and not password_needs_update(upgraded) and verify_password("correct horse", upgraded)
    views.login(Request("login", {"username": "ada", "password": "correct horse"}, db=db))
    assert _stored(db) == upgraded  # current hashes are left alone


def test_login_takes_as_long_for_an_unknown_user_as_for_a_wrong_password_gh10(db) -> None:
    """Both do one scrypt of the current parameters; compared in CPU time of this thread (load-proof)."""
    views.signup(Request("signup", ADA, db=db))
    verify_dummy_password("warm up")  # the dummy hash is made once per process

    def cpu_time_of(username: str) -> float:
        started = time.thread_time()
        with pytest.raises(Unauthorized, match="wrong username or password"):
            views.login(Request("login", {"username": username, "password": "wrong"}, db=db))
        return time.thread_time() - started

    unknown = statistics.median(cpu_time_of("nobody") for _ in range(5))
    wrong = statistics.median(cpu_time_of("ada") for _ in range(5))
    assert 0.6 < unknown / wrong < 1.6, (unknown, wrong)
    assert verify_dummy_password("anything") is False


def test_fast_hashes_for_tests_are_scoped_and_still_verify() -> None:
    from fluxon.database.passwords import fast_hashes_for_tests
    with fast_hashes_for_tests():
        with fast_hashes_for_tests():
            fast = hash_password("pw")
        assert fast.split("$")[1:4] == ["1024", "8", "1"] and not password_needs_update(fast)
        assert verify_dummy_password("pw") is False
    assert hash_password("pw").split("$")[1:4] == ["16384", "8", "5"]
    assert verify_password("pw", fast) and password_needs_update(fast)
