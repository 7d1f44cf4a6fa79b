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

__all__ = ["hash_password", "verify_password", "is_password_hash", "password_needs_update",
           "verify_dummy_password", "SCRYPT_N", "SCRYPT_R", "SCRYPT_P"]

SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 5
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


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new salted scrypt hash string for ``password`` (other parameters: tests and migrations only)."""
    if not isinstance(password, str):
        raise TypeError("a password must be a string")
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
    return parsed is not None and parsed[:3] != (SCRYPT_N, SCRYPT_R, SCRYPT_P)


_dummy_hash: list[str] = []


def verify_dummy_password(password: str) -> bool:
    """Do the work of checking ``password`` against a hash nobody has; always False.

    A login for an unknown user calls this, so that it takes as long as a wrong password
    for a known one: the answer time must not tell which user names exist.
    """
    if not _dummy_hash:
        _dummy_hash.append(hash_password(os.urandom(16).hex()))
    verify_password(password if isinstance(password, str) else "", _dummy_hash[0])
    return False
