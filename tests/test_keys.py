"""Deployment keys: pinned derivation, key files with mode 0600, client keypairs, and the key CLI."""

from __future__ import annotations

import base64
import logging
import os
import stat

import pytest
import zmq
import zmq.auth
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from zmq.utils import z85

from fluxon.cli import main
from fluxon.errors import ConfigurationError
from fluxon.keys import (
    PRIVATE_KEY_ENV,
    CurveKeyPair,
    decode_private_key,
    derive_keys,
    generate_client_keypair,
    generate_private_key,
    is_z85_key,
    load_client_keypair,
    load_private_key,
    read_public_key,
    save_client_keypair,
    write_private_key,
)

# bytes 0..31 in urlsafe base64; the values below pin the derivation (labels, salt, encoding).
KNOWN_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
KNOWN_BROKER_PUBLIC = b"JvvCqAA@w+*!LDhV!GenVB$t@A4OsK[m$x<-<&My"
KNOWN_BROKER_SECRET = b"faJxAPka/d:HK]J*5liV@53f}cU7rkUikcfnaVv="
KNOWN_WORKER_PUBLIC = b"9v{#4m9(RF7f7Nc?WBwsc:4sHr/dQ+iL#:BRddLh"
KNOWN_ADMIN_PUBLIC = b"i*t!j(B@%+q1bn--c9K0k5C3b>{2.yoDw<Iga+ZM"
KNOWN_HMAC_HEX = "d825507ba7cb981106f859f7de46f676be79483687eec0fb4db0394df64dcc84"


def test_known_vector_pins_the_derivation() -> None:
    keys = derive_keys(KNOWN_KEY)
    assert keys.broker.public == KNOWN_BROKER_PUBLIC
    assert keys.broker.secret == KNOWN_BROKER_SECRET
    assert keys.worker.public == KNOWN_WORKER_PUBLIC
    assert keys.admin.public == KNOWN_ADMIN_PUBLIC
    assert keys.session_hmac_key.hex() == KNOWN_HMAC_HEX


def test_derivation_is_hkdf_sha256_with_a_label_and_x25519() -> None:
    """Recompute the broker pair independently: HKDF -> Z85 secret, X25519 public."""
    raw = bytes(range(32))
    secret = HKDF(hashes.SHA256(), 32, b"fluxon deployment keys v1",
                  b"fluxon/v1/broker-curve-secret").derive(raw)
    public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    keys = derive_keys(raw)
    assert z85.decode(keys.broker.secret) == secret
    assert z85.decode(keys.broker.public) == public


def test_every_purpose_gets_a_different_key() -> None:
    keys = derive_keys(generate_private_key())
    secrets_ = {keys.broker.secret, keys.worker.secret, keys.admin.secret,
                z85.encode(keys.session_hmac_key)}
    assert len(secrets_) == 4
    assert derive_keys(generate_private_key()).broker != keys.broker


def test_generated_key_has_the_seed_format() -> None:
    key = generate_private_key()
    assert len(key) == 43 and "=" not in key
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    # the seed's own example key is accepted, with or without padding, as text or bytes
    seed_key = "RsxZd5wVVml7C0H_LrbIVTDJU9kR-NwS1UxWD2lTVdY"
    assert derive_keys(seed_key) == derive_keys(seed_key + "=") == derive_keys(seed_key.encode())


def test_repr_never_shows_secrets() -> None:
    keys = derive_keys(KNOWN_KEY)
    text = repr(keys) + str(keys) + repr(keys.broker)
    for secret in (keys.broker.secret, keys.worker.secret, keys.admin.secret):
        assert secret.decode() not in text
    assert keys.session_hmac_key.hex() not in text and repr(keys.session_hmac_key) not in text
    assert KNOWN_BROKER_PUBLIC.decode() in text


@pytest.mark.parametrize("bad", [
    "", "short", KNOWN_KEY[:-2], KNOWN_KEY + "AAAA", KNOWN_KEY.replace("A", "*"), "é" * 43,
    b"\xff" * 43, b"x" * 31,
])
def test_malformed_key_is_a_clear_error_that_never_echoes_it(bad: str | bytes) -> None:
    with pytest.raises(ConfigurationError) as info:
        decode_private_key(bad)
    assert "malformed" in str(info.value)
    shown = bad.decode("latin-1") if isinstance(bad, bytes) else bad
    if len(shown) > 3:
        assert shown not in str(info.value)
    exc = info.value  # the decoder's own error would quote the input: it must not be chained
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_load_private_key_precedence(tmp_path) -> None:
    file_key, env_key, router_key = (generate_private_key() for _ in range(3))
    path = tmp_path / "fluxon.key"
    write_private_key(path, file_key)
    env = {PRIVATE_KEY_ENV: env_key}
    assert load_private_key(str(path), env, router_key) == file_key
    assert load_private_key(None, env, router_key) == env_key
    assert load_private_key(None, {PRIVATE_KEY_ENV: "  "}, router_key) == router_key
    assert load_private_key(None, {}, None) is None


def test_load_private_key_errors_name_the_source_not_the_key(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_private_key(str(tmp_path / "missing.key"), {})
    bad = "not a valid key: a secret-looking string"
    with pytest.raises(ConfigurationError, match=PRIVATE_KEY_ENV) as info:
        load_private_key(None, {PRIVATE_KEY_ENV: bad})
    assert bad not in str(info.value)
    with pytest.raises(ConfigurationError, match="Router") as info:
        load_private_key(None, {}, bad)
    assert bad not in str(info.value)


def test_key_file_is_created_0600_and_never_overwritten_silently(tmp_path) -> None:
    path = tmp_path / "fluxon.key"
    first = generate_private_key()
    old_umask = os.umask(0)  # even with a permissive umask the file stays private
    try:
        write_private_key(path, first)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigurationError, match="already exists"):
        write_private_key(path, generate_private_key())
    assert load_private_key(str(path), {}) == first
    path.chmod(0o644)
    second = generate_private_key()
    write_private_key(path, second, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(str(path), {}) == second


def test_world_readable_key_file_is_logged(tmp_path, caplog) -> None:
    path = tmp_path / "fluxon.key"
    key = generate_private_key()
    write_private_key(path, key)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        assert load_private_key(str(path), {}) == key
    assert "chmod 600" in caplog.text and key not in caplog.text


def test_client_keypair_roundtrip_and_public_file(tmp_path) -> None:
    pair = generate_client_keypair()
    path = tmp_path / "alice.key"
    public_path = save_client_keypair(path, pair)
    assert public_path == tmp_path / "alice.key.pub"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_client_keypair(path) == pair
    assert read_public_key(public_path) == pair.public_text
    assert pair.secret.decode() not in public_path.read_text()
    # pyzmq reads the same files
    assert zmq.auth.load_certificate(str(path)) == (pair.public, pair.secret)
    assert zmq.auth.load_certificate(str(public_path)) == (pair.public, None)
    with pytest.raises(ConfigurationError, match="already exists"):
        save_client_keypair(path, generate_client_keypair())


def test_bare_public_key_file_and_bad_certificates(tmp_path) -> None:
    pair = generate_client_keypair()
    bare = tmp_path / "bob.pub"
    bare.write_text(pair.public_text + "\n")
    assert read_public_key(bare) == pair.public_text
    junk = tmp_path / "junk.pub"
    junk.write_text("hello\n")
    assert read_public_key(junk) is None
    with pytest.raises(ConfigurationError, match="not a CURVE secret certificate"):
        load_client_keypair(bare)
    other = generate_client_keypair()
    mixed = tmp_path / "mixed.key"
    mixed.write_text(f'curve\n    public-key = "{pair.public_text}"\n'
                     f'    secret-key = "{other.secret.decode()}"\n')
    with pytest.raises(ConfigurationError, match="does not match"):
        load_client_keypair(mixed)


def test_curve_keypair_validates_z85() -> None:
    assert is_z85_key(generate_client_keypair().public)
    assert not is_z85_key("#" * 40) and not is_z85_key("a" * 39) and not is_z85_key("é" * 40)
    with pytest.raises(ConfigurationError):
        CurveKeyPair(public=b"x" * 40, secret=b"not z85")


def test_cli_keygen_prints_a_valid_key() -> None:
    result = CliRunner().invoke(main, ["keygen"])
    assert result.exit_code == 0, result.output
    derive_keys(result.output.strip())


def test_cli_keygen_out_writes_0600_and_refuses_overwrite(tmp_path) -> None:
    path = tmp_path / "fluxon.key"
    runner = CliRunner()
    result = runner.invoke(main, ["keygen", "--out", str(path)])
    assert result.exit_code == 0, result.output
    key = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in result.output
    assert derive_keys(key).broker.public_text in result.output
    again = runner.invoke(main, ["keygen", "--out", str(path)])
    assert again.exit_code != 0 and "already exists" in again.output
    assert path.read_text().strip() == key
    assert runner.invoke(main, ["keygen", "--out", str(path), "--force"]).exit_code == 0
    assert path.read_text().strip() != key


def test_cli_pubkey_from_file_and_environment(tmp_path) -> None:
    path = tmp_path / "fluxon.key"
    write_private_key(path, KNOWN_KEY)
    runner = CliRunner()
    by_file = runner.invoke(main, ["pubkey", "--key-file", str(path)], env={PRIVATE_KEY_ENV: ""})
    assert by_file.exit_code == 0 and by_file.output.strip() == KNOWN_BROKER_PUBLIC.decode()
    by_env = runner.invoke(main, ["pubkey"], env={PRIVATE_KEY_ENV: KNOWN_KEY})
    assert by_env.exit_code == 0 and by_env.output.strip() == KNOWN_BROKER_PUBLIC.decode()
    worker = runner.invoke(main, ["pubkey", "--role", "worker"], env={PRIVATE_KEY_ENV: KNOWN_KEY})
    assert worker.output.strip() == KNOWN_WORKER_PUBLIC.decode()
    missing = runner.invoke(main, ["pubkey"], env={PRIVATE_KEY_ENV: ""})
    assert missing.exit_code != 0 and "no private key" in missing.output
    bad = runner.invoke(main, ["pubkey"], env={PRIVATE_KEY_ENV: "sekrit-sekrit-sekrit"})
    assert bad.exit_code != 0 and "malformed" in bad.output and "sekrit" not in bad.output


def test_cli_client_key_writes_secret_and_pub(tmp_path) -> None:
    path = tmp_path / "clients" / "alice"
    path.parent.mkdir()
    result = CliRunner().invoke(main, ["client-key", str(path)])
    assert result.exit_code == 0, result.output
    pair = load_client_keypair(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_public_key(str(path) + ".pub") == pair.public_text
    assert pair.public_text in result.output and pair.secret.decode() not in result.output
    again = CliRunner().invoke(main, ["client-key", str(path)])
    assert again.exit_code != 0 and load_client_keypair(path) == pair
