"""Password hashing with scrypt (hashlib), salted, in a versioned string format.

Format: ``scrypt$<n>$<r>$<p>$<salt, urlsafe base64>$<hash, urlsafe base64>``; the cost
parameters travel with the hash so they can be raised later without breaking old hashes,
and :func:`password_needs_update` says when a stored hash is below the current ones
(``AuthorizedUser.check_password`` then re-hashes it, as Django's ``must_update``).

The parameters are OWASP's scrypt setting n=2**14, r=8, p=5 (Django's choice too). Its
memory is 128 * n * r = 16 MiB per hash, whatever p (the p lanes run one after the other),
so a worker running ``--concurrency`` 16 logins at once needs 256 MiB for them; OWASP's
n=2**17, p=1 setting would need 2 GiB there. p=5 buys the work factor with CPU instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["hash_password", "verify_password", "is_password_hash", "password_needs_update",
           "verify_dummy_password", "fast_hashes_for_tests", "SCRYPT_N", "SCRYPT_R", "SCRYPT_P"]

SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 5
#: The parameters of new hashes: (SCRYPT_N, SCRYPT_R, SCRYPT_P), or _FAST_FOR_TESTS inside
#: fast_hashes_for_tests().
_current = (SCRYPT_N, SCRYPT_R, SCRYPT_P)
_FAST_FOR_TESTS = (2 ** 10, 8, 1)
_fast_users = 0
_fast_lock = threading.Lock()
_SALT_BYTES = 16
_HASH_BYTES = 32
_PREFIX = "scrypt"
_MAX_N = 2 ** 20  # refuse absurd cost parameters read from a stored hash


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 1024 * 1024, dklen=_HASH_BYTES)


def hash_password(password: str, *, n: int | None = None, r: int | None = None, p: int | None = None) -> str:
    """A new salted scrypt hash string for ``password`` (other parameters: tests and migrations only)."""
    if not isinstance(password, str):
        raise TypeError("a password must be a string")
    current_n, current_r, current_p = _current
    n, r, p = n or current_n, r or current_r, p or current_p
    salt = os.urandom(_SALT_BYTES)
    digest = _derive(password, salt, n, r, p)
    return f"{_PREFIX}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, TypeError):
        return None
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= 64 and 0 < p <= 16):
        return None
    if len(salt) < 8 or len(digest) != _HASH_BYTES:
        return None
    return n, r, p, salt, digest


def is_password_hash(value: object) -> bool:
    """True when ``value`` is a well-formed hash string produced by :func:`hash_password`."""
    return isinstance(value, str) and _parse(value) is not None


def verify_password(password: str, encoded: str | None) -> bool:
    """Check ``password`` against a stored hash in constant time; False for malformed hashes."""
    if not isinstance(password, str) or not isinstance(encoded, str):
        return False
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(_derive(password, salt, n, r, p), digest)


def password_needs_update(encoded: str | None) -> bool:
    """True when ``encoded`` is a valid hash made with other parameters than the current ones."""
    parsed = _parse(encoded) if isinstance(encoded, str) else None
    return parsed is not None and parsed[:3] != _current


@contextmanager
def fast_hashes_for_tests() -> Iterator[None]:
    """New hashes use cheap scrypt parameters (n=2**10, p=1) inside the block, in the whole process.

    For test servers only (:class:`fluxon.testing.TestServer` uses it), as Django's test
    settings use a fast hasher: a signup and a login then cost milliseconds, not a second
    on a loaded machine. Hashes made inside verify as usual afterwards (their parameters
    travel with them) and are re-hashed at their next successful check outside.
    """
    global _current, _fast_users
    with _fast_lock:
        _fast_users += 1
        _current = _FAST_FOR_TESTS
    try:
        yield
    finally:
        with _fast_lock:
            _fast_users -= 1
            if not _fast_users:
                _current = (SCRYPT_N, SCRYPT_R, SCRYPT_P)


_dummy_hash: dict[tuple[int, int, int], str] = {}


def verify_dummy_password(password: str) -> bool:
    """Do the work of checking ``password`` against a hash nobody has; always False.

    A login for an unknown user calls this, so that it takes as long as a wrong password
    for a known one: the answer time must not tell which user names exist.
    """
    params = _current
    dummy = _dummy_hash.get(params)
    if dummy is None:
        dummy = _dummy_hash[params] = hash_password(os.urandom(16).hex())
    verify_password(password if isinstance(password, str) else "", dummy)
    return False
