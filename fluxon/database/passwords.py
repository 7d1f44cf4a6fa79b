"""Password hashing with scrypt (hashlib), salted, in a versioned string format.

Format: ``scrypt$<n>$<r>$<p>$<salt, urlsafe base64>$<hash, urlsafe base64>``; the cost
parameters travel with the hash so they can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["hash_password", "verify_password", "is_password_hash", "SCRYPT_N", "SCRYPT_R", "SCRYPT_P"]

SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
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


def hash_password(password: str) -> str:
    """A new salted scrypt hash string for ``password``."""
    if not isinstance(password, str):
        raise TypeError("a password must be a string")
    salt = os.urandom(_SALT_BYTES)
    digest = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


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
