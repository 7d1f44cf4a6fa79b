"""The ZAP handler with real CURVE sockets over TCP: who may talk to which broker socket."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from fluxon.errors import ConfigurationError
from fluxon.keys import (
    CurveKeyPair,
    DeploymentKeys,
    derive_keys,
    generate_client_keypair,
    generate_private_key,
    save_client_keypair,
)
from fluxon.security import (
    BACKEND_DOMAIN,
    CONTROL_DOMAIN,
    FRONTEND_DOMAIN,
    KeyDirectory,
    configure_curve_client,
    configure_curve_server,
    start_authenticator,
)
from support import wait_for

REFUSED_WAIT_MS = 600  # how long a refused client waits for a reply that must not come


class Broker:
    """Three CURVE ROUTER sockets in one context guarded by the ZAP handler, as the broker has."""

    def __init__(self, keys: DeploymentKeys, allow_dir: Path | None) -> None:
        self.keys = keys
        self.context = zmq.Context()
        self.auth = start_authenticator(self.context, keys, allow_clients_dir=allow_dir)
        self.sockets: dict[str, zmq.Socket] = {}
        self.endpoints: dict[str, str] = {}
        for domain in (FRONTEND_DOMAIN, BACKEND_DOMAIN, CONTROL_DOMAIN):
            sock = self.context.socket(zmq.ROUTER)
            sock.linger = 0
            configure_curve_server(sock, keys.broker, domain)
            sock.bind("tcp://127.0.0.1:*")
            self.sockets[domain] = sock
            self.endpoints[domain] = sock.last_endpoint.decode()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(0)
        self.auth.stop()
        self.context.term()


@pytest.fixture
def deployment() -> DeploymentKeys:
    return derive_keys(generate_private_key())


@pytest.fixture
def client_context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def open_broker(deployment: DeploymentKeys) -> Iterator[Broker]:
    broker = Broker(deployment, None)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def allow_dir(tmp_path: Path) -> Path:
    path = tmp_path / "allowed"
    path.mkdir()
    return path


@pytest.fixture
def listed_broker(deployment: DeploymentKeys, allow_dir: Path) -> Iterator[Broker]:
    broker = Broker(deployment, allow_dir)
    broker.auth.allowlist.check_interval_s = 0.0  # re-check the folder on every handshake
    try:
        yield broker
    finally:
        broker.close()


def roundtrip(broker: Broker, domain: str, ctx: zmq.Context, client: CurveKeyPair,
              server_public: bytes | None = None, wait_ms: int = 5000) -> str | None:
    """Send one message to ``domain``; echo it; return the User-Id the broker saw, or None if refused."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        configure_curve_client(sock, server_public or broker.keys.broker.public, client)
        sock.connect(broker.endpoints[domain])
        sock.sndtimeo = wait_ms  # a refused handshake may leave no pipe to queue on: never block forever
        try:
            sock.send(b"ping")
        except zmq.Again:
            return None
        server = broker.sockets[domain]
        if not server.poll(wait_ms):
            return None
        routing_id, frame = server.recv_multipart(copy=False)
        user_id = frame.get("User-Id")
        assert frame.get("Peer-Address") == "127.0.0.1"
        server.send_multipart([routing_id.bytes, b"pong"])
        assert sock.poll(5000), "the reply never reached an authenticated client"
        assert sock.recv() == b"pong"
        return user_id
    finally:
        sock.close(0)


def test_right_keys_pass_and_user_id_is_the_client_key(open_broker, client_context) -> None:
    client = generate_client_keypair()
    assert roundtrip(open_broker, FRONTEND_DOMAIN, client_context, client) == client.public_text
    worker = open_broker.keys.worker
    assert roundtrip(open_broker, BACKEND_DOMAIN, client_context, worker) == worker.public_text
    admin = open_broker.keys.admin
    assert roundtrip(open_broker, CONTROL_DOMAIN, client_context, admin) == admin.public_text


def test_wrong_server_key_times_out_cleanly_and_others_are_served(open_broker, client_context) -> None:
    impostor = derive_keys(generate_private_key()).broker.public
    client = generate_client_keypair()
    assert roundtrip(open_broker, FRONTEND_DOMAIN, client_context, client,
                     server_public=impostor, wait_ms=REFUSED_WAIT_MS) is None
    assert roundtrip(open_broker, FRONTEND_DOMAIN, client_context, generate_client_keypair())


@pytest.mark.parametrize("domain, role", [
    (BACKEND_DOMAIN, "client"), (BACKEND_DOMAIN, "admin"),
    (CONTROL_DOMAIN, "client"), (CONTROL_DOMAIN, "worker"),
])
def test_backend_and_control_admit_only_their_derived_key(open_broker, client_context, caplog,
                                                          domain, role) -> None:
    key = generate_client_keypair() if role == "client" else getattr(open_broker.keys, role)
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        assert roundtrip(open_broker, domain, client_context, key, wait_ms=REFUSED_WAIT_MS) is None
        wait_for(lambda: "refused connection" in caplog.text, 5, message="the rejection log line")
    assert f"domain={domain}" in caplog.text and key.public_text in caplog.text
    for secret in (key.secret, open_broker.keys.broker.secret, open_broker.keys.worker.secret):
        assert secret.decode() not in caplog.text
    # the broker keeps serving the right key on the same socket
    right = open_broker.keys.worker if domain == BACKEND_DOMAIN else open_broker.keys.admin
    assert roundtrip(open_broker, domain, client_context, right) == right.public_text


def test_frontend_with_allowlist_refuses_unlisted_client(listed_broker, client_context, allow_dir,
                                                         caplog) -> None:
    listed, unlisted = generate_client_keypair(), generate_client_keypair()
    save_client_keypair(allow_dir.parent / "listed", listed)
    shutil.copy(allow_dir.parent / "listed.pub", allow_dir / "listed.pub")
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        assert roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, unlisted,
                         wait_ms=REFUSED_WAIT_MS) is None
        wait_for(lambda: unlisted.public_text in caplog.text, 5, message="the rejection log line")
    assert "allowlist" in caplog.text
    assert roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, listed) == listed.public_text


def test_allowlist_changes_take_effect_without_restart(listed_broker, client_context, allow_dir) -> None:
    client = generate_client_keypair()
    assert roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, client,
                     wait_ms=REFUSED_WAIT_MS) is None
    (allow_dir / "late.pub").write_text(client.public_text + "\n")
    wait_for(lambda: roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, client, wait_ms=1000),
             10, message="the added key to be admitted")
    (allow_dir / "late.pub").unlink()
    wait_for(lambda: client.public_text not in listed_broker.auth.allowlist, 5,
             message="the removed key to leave the allowlist")
    assert roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, client,
                     wait_ms=REFUSED_WAIT_MS) is None


def test_null_mechanism_is_refused_on_fluxon_domains_but_other_sockets_work(open_broker,
                                                                            client_context) -> None:
    guarded = open_broker.context.socket(zmq.ROUTER)
    plain = open_broker.context.socket(zmq.ROUTER)
    try:
        guarded.zap_domain = FRONTEND_DOMAIN.encode()
        guarded_ep = f"tcp://127.0.0.1:{guarded.bind_to_random_port('tcp://127.0.0.1')}"
        plain_ep = f"tcp://127.0.0.1:{plain.bind_to_random_port('tcp://127.0.0.1')}"
        for endpoint, server, expect in ((guarded_ep, guarded, False), (plain_ep, plain, True)):
            sock = client_context.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(endpoint)
            sock.send(b"hello")
            got = server.poll(REFUSED_WAIT_MS if not expect else 5000)
            sock.close(0)
            assert bool(got) is expect
    finally:
        guarded.close(0)
        plain.close(0)


def test_key_directory_reads_certificates_and_bare_keys(allow_dir, caplog) -> None:
    a, b = generate_client_keypair(), generate_client_keypair()
    save_client_keypair(allow_dir / "a", a)  # a secret cert in the folder still admits only its public key
    (allow_dir / "b.pub").write_text(b.public_text)
    (allow_dir / ".hidden").write_text(generate_client_keypair().public_text)
    (allow_dir / "README").write_text("not a key")
    (allow_dir / "sub").mkdir()
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        keys = KeyDirectory(allow_dir)
    assert keys.keys() == {a.public_text, b.public_text}
    assert a.public_text in keys and a.public in keys and "x" * 40 not in keys and 42 not in keys
    assert "README holds no CURVE public key" in caplog.text


def test_key_directory_sees_edits_in_place_and_survives_removal(tmp_path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    first, second = generate_client_keypair(), generate_client_keypair()
    path = folder / "k.pub"
    path.write_text(first.public_text)
    keys = KeyDirectory(folder, check_interval_s=0.0, rescan_interval_s=0.0)
    assert first.public_text in keys
    path.write_text(second.public_text)
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert second.public_text in keys and first.public_text not in keys
    shutil.rmtree(folder)
    assert second.public_text not in keys and len(keys) == 0
    folder.mkdir()
    path.write_text(first.public_text)
    assert first.public_text in keys


def test_missing_directory_and_bad_settings_are_configuration_errors(tmp_path, deployment) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        KeyDirectory(tmp_path / "nope")
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.ROUTER)
        with pytest.raises(ConfigurationError, match="unknown ZAP domain"):
            configure_curve_server(sock, deployment.broker, "fluxon.other")
        with pytest.raises(ConfigurationError, match="fluxon pubkey"):
            configure_curve_client(sock, "not a key", generate_client_keypair())
        sock.close(0)
        auth = start_authenticator(ctx, deployment)
        try:
            with pytest.raises(ConfigurationError, match="already has one"):
                start_authenticator(ctx, deployment)
        finally:
            auth.stop()
    finally:
        ctx.destroy(linger=0)


def test_a_failing_rule_refuses_the_connection_and_the_handler_survives(listed_broker, client_context,
                                                                        allow_dir, monkeypatch,
                                                                        caplog) -> None:
    client = generate_client_keypair()
    (allow_dir / "client.pub").write_text(client.public_text)

    def broken(self, key):
        raise OSError("disk on fire")

    with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, logger="fluxon.security"):
        patch.setattr(KeyDirectory, "__contains__", broken)
        assert roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, client,
                         wait_ms=REFUSED_WAIT_MS) is None
        wait_for(lambda: "ZAP handler failed" in caplog.text, 5, message="the failure log line")
    assert listed_broker.auth.is_alive()
    assert roundtrip(listed_broker, FRONTEND_DOMAIN, client_context, client) == client.public_text


def test_a_folder_others_can_write_to_is_logged(allow_dir, caplog) -> None:
    allow_dir.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        KeyDirectory(allow_dir)
    assert "writable by group or others" in caplog.text
    caplog.clear()
    allow_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        KeyDirectory(allow_dir)
    assert "writable" not in caplog.text
