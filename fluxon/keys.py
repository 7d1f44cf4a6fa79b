"""Deployment keys: the one private key, the keys derived from it, and client keypairs.

A deployment has ONE secret, the private key (the seed's ``SERVER_SECURITY_KEY``):
32 random bytes in urlsafe base64 without padding, 43 characters, e.g.
``RsxZd5wVVml7C0H_LrbIVTDJU9kR-NwS1UxWD2lTVdY``. ``fluxon keygen`` makes one.

From it HKDF-SHA256 derives one 32-byte key per purpose, each with its own label
(``_LABELS``), so no derived key reveals another or the private key:

    label                                  use
    fluxon/v1/broker-curve-secret          CURVE secret of the broker (frontend, backend, control)
    fluxon/v1/worker-curve-secret          CURVE secret every worker presents to the backend
    fluxon/v1/admin-curve-secret           CURVE secret of the admin console (control socket)
    fluxon/v1/session-token-hmac           HMAC-SHA256 key that signs session tokens

A CURVE secret key is the 32 derived bytes; its public key is X25519 of it
(``zmq.curve_public``). Both travel in Z85 (40 characters), as pyzmq expects.

Client keypairs are ordinary random CURVE keypairs. ``save_client_keypair`` writes
the secret certificate (mode 0600) and a public certificate ``<path>.pub`` in the
ZeroMQ certificate format (the one pyzmq's ``zmq.auth.load_certificate`` and czmq
read); copy the ``.pub`` file into an ``--allow-clients`` folder to admit the client.

The private key never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import os
import secrets
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from zmq.utils import z85

from fluxon.errors import ConfigurationError

__all__ = [
    "PRIVATE_KEY_ENV",
    "PUBLIC_KEY_SUFFIX",
    "CurveKeyPair",
    "DeploymentKeys",
    "generate_private_key",
    "decode_private_key",
    "derive_keys",
    "load_private_key",
    "write_private_key",
    "generate_client_keypair",
    "save_client_keypair",
    "load_client_keypair",
    "read_public_key",
    "is_z85_key",
]

log = logging.getLogger("fluxon.security")

#: Environment variable that may hold the private key (after --key-file, before Router(private_key=)).
PRIVATE_KEY_ENV = "FLUXON_PRIVATE_KEY"
#: Suffix of the public certificate written next to a client's secret certificate.
PUBLIC_KEY_SUFFIX = ".pub"

_PRIVATE_KEY_BYTES = 32
_Z85_KEY_CHARS = 40
_HKDF_SALT = b"fluxon deployment keys v1"
_LABELS = {
    "broker": b"fluxon/v1/broker-curve-secret",
    "worker": b"fluxon/v1/worker-curve-secret",
    "admin": b"fluxon/v1/admin-curve-secret",
    "session_hmac": b"fluxon/v1/session-token-hmac",
}
_MALFORMED = ("the private key is malformed: expected 32 bytes in urlsafe base64 "
              "(43 characters, as `fluxon keygen` prints)")


@dataclass(frozen=True)
class CurveKeyPair:
    """A CURVE keypair in Z85 bytes, as pyzmq's ``curve_*key`` socket options want them."""

    public: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not is_z85_key(self.public) or not is_z85_key(self.secret):
            raise ConfigurationError("a CURVE key must be 40 Z85 characters")

    @property
    def public_text(self) -> str:
        """The public key as text (what an allowlist file and the ZAP User-Id hold)."""
        return self.public.decode("ascii")


@dataclass(frozen=True)
class DeploymentKeys:
    """Every key derived from one deployment private key; ``repr`` shows public keys only."""

    broker: CurveKeyPair
    worker: CurveKeyPair
    admin: CurveKeyPair
    session_hmac_key: bytes = field(repr=False)


def generate_private_key() -> str:
    """A new deployment private key: 32 random bytes, urlsafe base64 without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_PRIVATE_KEY_BYTES)).rstrip(b"=").decode("ascii")


def decode_private_key(private_key: str | bytes) -> bytes:
    """The 32 raw bytes of a private key given as text (padding optional) or as raw bytes.

    A malformed key raises :class:`ConfigurationError` whose message never contains the key.
    """
    if isinstance(private_key, bytes) and len(private_key) == _PRIVATE_KEY_BYTES:
        return private_key
    try:
        text = private_key.decode("ascii") if isinstance(private_key, bytes) else str(private_key)
        text = text.strip()
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise ConfigurationError(_MALFORMED) from None  # no chaining: the cause quotes the input
    if len(raw) != _PRIVATE_KEY_BYTES:
        raise ConfigurationError(_MALFORMED)
    return raw


def _hkdf(raw_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=label).derive(raw_key)


def _curve_pair_from_secret(secret_bytes: bytes) -> CurveKeyPair:
    secret = z85.encode(secret_bytes)
    return CurveKeyPair(public=zmq.curve_public(secret), secret=secret)


def derive_keys(private_key: str | bytes) -> DeploymentKeys:
    """Derive the broker, worker and admin CURVE keypairs and the session HMAC key (HKDF-SHA256)."""
    raw = decode_private_key(private_key)
    return DeploymentKeys(
        broker=_curve_pair_from_secret(_hkdf(raw, _LABELS["broker"])),
        worker=_curve_pair_from_secret(_hkdf(raw, _LABELS["worker"])),
        admin=_curve_pair_from_secret(_hkdf(raw, _LABELS["admin"])),
        session_hmac_key=_hkdf(raw, _LABELS["session_hmac"]),
    )


def load_private_key(key_file: str | os.PathLike | None = None,
                     environ: Mapping[str, str] = os.environ,
                     router_key: str | None = None) -> str | None:
    """The deployment private key, validated, or ``None`` when none is configured (plain mode).

    Precedence: ``key_file``, then ``$FLUXON_PRIVATE_KEY``, then the Router's ``private_key``.
    A key file readable by group or others is used but logged as a warning.
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="ascii").strip()
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigurationError(f"key file {str(path)!r} does not exist; "
                                     "create one with `fluxon keygen --out FILE`") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read key file {str(path)!r}: {type(exc).__name__}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("key file %s is accessible by group or others (mode %o); chmod 600 it",
                        path, stat.S_IMODE(mode))
        source = f"key file {str(path)!r}"
    elif environ.get(PRIVATE_KEY_ENV, "").strip():
        text, source = environ[PRIVATE_KEY_ENV].strip(), f"${PRIVATE_KEY_ENV}"
    elif router_key:
        text, source = router_key.strip(), "Router(private_key=...)"
    else:
        return None
    try:
        decode_private_key(text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc.message} (from {source})") from None
    return text


def _create_secret_file(path: Path, content: str, *, overwrite: bool) -> None:
    """Write ``content`` to a new file created with mode 0600 (never briefly world-readable).

    Missing folders on the way are created (``fluxon keygen --out school/deploy.key`` in a new project).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the folder {str(path.parent)!r}: {exc.strerror}") from None
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise ConfigurationError(f"{str(path)!r} already exists; refusing to overwrite it "
                                     "(pass --force / overwrite=True to replace it)")
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits we want; never adds any
        os.write(fd, content.encode("ascii"))
    finally:
        os.close(fd)


def write_private_key(path: str | os.PathLike, private_key: str, *, overwrite: bool = False) -> None:
    """Write a private key to ``path``, created with mode 0600; refuses to overwrite unless asked."""
    decode_private_key(private_key)
    _create_secret_file(Path(path), private_key.strip() + "\n", overwrite=overwrite)


def generate_client_keypair() -> CurveKeyPair:
    """A new random CURVE keypair for a client."""
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public=public, secret=secret)


def _certificate(pair: CurveKeyPair, *, with_secret: bool) -> str:
    kind = "**Secret**" if with_secret else "Public"
    lines = [f"#   ****  Generated on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
             " by fluxon client-key  ****",
             f"#   ZeroMQ CURVE {kind} Certificate", "", "metadata", "curve",
             f'    public-key = "{pair.public_text}"']
    if with_secret:
        lines.append(f'    secret-key = "{pair.secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def save_client_keypair(path: str | os.PathLike, pair: CurveKeyPair, *, overwrite: bool = False) -> Path:
    """Write the secret certificate to ``path`` (0600) and the public one to ``path + '.pub'``.

    Returns the path of the public certificate.
    """
    secret_path = Path(path)
    public_path = secret_path.with_name(secret_path.name + PUBLIC_KEY_SUFFIX)
    if public_path.exists() and not overwrite:
        raise ConfigurationError(f"{str(public_path)!r} already exists; refusing to overwrite it "
                                 "(pass --force / overwrite=True to replace it)")
    _create_secret_file(secret_path, _certificate(pair, with_secret=True), overwrite=overwrite)
    public_path.write_text(_certificate(pair, with_secret=False), encoding="ascii")
    return public_path


def _parse_key_file(path: Path) -> tuple[bytes | None, bytes | None]:
    """(public, secret) from a ZeroMQ certificate or from a file holding one bare Z85 public key."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read key file {str(path)!r}: {type(exc).__name__}") from None
    public = secret = None
    bare: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if is_z85_key(line):  # a bare key (Z85 may contain "=")
            bare.append(line)
            continue
        name, sep, value = line.partition("=")
        if sep and name.strip() == "public-key":
            public = value.strip().strip("'\"").encode("ascii")
        elif sep and name.strip() == "secret-key":
            secret = value.strip().strip("'\"").encode("ascii")
    if public is None and len(bare) == 1:
        public = bare[0].encode("ascii")
    return public, secret


def load_client_keypair(path: str | os.PathLike) -> CurveKeyPair:
    """Read a secret certificate written by :func:`save_client_keypair` (or pyzmq / czmq)."""
    public, secret = _parse_key_file(Path(path))
    if public is None or secret is None or not is_z85_key(public) or not is_z85_key(secret):
        raise ConfigurationError(f"{str(path)!r} is not a CURVE secret certificate "
                                 "(write one with `fluxon client-key PATH`)")
    if zmq.curve_public(secret) != public:
        raise ConfigurationError(f"{str(path)!r}: the public key does not match the secret key")
    return CurveKeyPair(public=public, secret=secret)


def read_public_key(path: str | os.PathLike) -> str | None:
    """The Z85 public key in a certificate or bare key file, or ``None`` if it holds none."""
    public, _ = _parse_key_file(Path(path))
    if public is None or not is_z85_key(public):
        return None
    return public.decode("ascii")


def is_z85_key(key: str | bytes) -> bool:
    """True if ``key`` is 40 Z85 characters (a 32-byte CURVE key)."""
    if isinstance(key, str):
        try:
            key = key.encode("ascii")
        except UnicodeEncodeError:
            return False
    if len(key) != _Z85_KEY_CHARS:
        return False
    try:
        z85.decode(key)
    except (ValueError, KeyError, struct.error):  # bad length, bad character, overflow
        return False
    return True
