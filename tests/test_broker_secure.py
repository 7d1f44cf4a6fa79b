"""The broker in secure mode: CURVE on all sockets, sessions bound to client keys, changes applied before replies."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fluxon import protocol as p
from fluxon.errors import ConnectionError, InvalidSession
from fluxon.keys import derive_keys, generate_client_keypair, generate_private_key, write_private_key
from test_broker_support import FakeClient, FakeWorker, start_broker, zctx  # noqa: F401


@pytest.fixture
def secure(procs, tmp_path):
    """A secure broker with a --trusted-clients directory holding one client's key; (broker, keys, trusted)."""
    key = generate_private_key()
    key_file = tmp_path / "private.key"
    write_private_key(key_file, key)
    keys = derive_keys(key)
    trusted_dir = tmp_path / "trusted"
    trusted_dir.mkdir()
    trusted = generate_client_keypair()
    (trusted_dir / "ops.key").write_text(trusted.public.decode() + "\n")
    broker = start_broker(procs, "--key-file", str(key_file), "--trusted-clients", str(trusted_dir),
                          "--sessions-db", str(tmp_path / "sessions.db"), keys=keys,
                          env={"FLUXON_PRIVATE_KEY": ""})
    return broker, keys, trusted


def _client(zctx, broker, keys, pair=None) -> tuple[FakeClient, str]:
    pair = pair or generate_client_keypair()
    return FakeClient(zctx, broker.frontend, curve=(keys.broker.public, pair)), pair.public.decode()


def test_sessions_are_bound_to_client_keys_and_changes_apply_before_the_reply(secure, zctx) -> None:
    broker, keys, trusted = secure
    worker = FakeWorker(zctx, broker.backend, curve=(keys.broker.public, keys.worker))
    broker.wait_workers(1)
    client, client_key = _client(zctx, broker, keys)

    client.request(1)
    job = worker.recv_job()
    context = json.loads(job.context)
    assert context["key"] == client_key and context["uid"] is None and context["trusted"] is False
    assert context["peer"].startswith("127.0.0.1")
    worker.reply(job, b"hello", changes=b'{"login": 42, "data": {"cart": [1]}}')
    first = client.reply()
    assert first.body == b"hello" and first.token        # the new (logged-in) token

    client.request(2, token=first.token)
    job = worker.recv_job()
    context = json.loads(job.context)
    assert (context["uid"], context["data"]) == (42, {"cart": [1]})
    worker.reply(job, b"again")
    assert client.reply().token == b""                   # unchanged token: not resent

    thief, _ = _client(zctx, broker, keys)                 # the same token under another key
    thief.request(3, token=first.token)
    assert isinstance(thief.error(), InvalidSession)
    client.request(4, token=first.token[:-3] + b"AAA")     # tampered
    assert isinstance(client.error(), InvalidSession)

    ops, _ = _client(zctx, broker, keys, trusted)
    ops.request(5)
    job = worker.recv_job()
    assert json.loads(job.context)["trusted"] is True
    worker.reply(job, b"")
    ops.reply()
    assert broker.ctl("sessions")["count"] >= 2
    assert [row["user_id"] for row in broker.ctl("sessions")["sessions"]].count(42) == 1


def test_peers_without_the_right_keys_are_refused(secure, zctx) -> None:
    broker, keys, _ = secure
    impostor = derive_keys(generate_private_key())
    rogue = FakeWorker(zctx, broker.backend, curve=(keys.broker.public, impostor.worker))
    with pytest.raises(ConnectionError, match="refused this console's key"):   # only the admin key
        from fluxon.broker import send_control_command
        wrong_admin = dataclasses.replace(keys, admin=impostor.admin)
        send_control_command(broker.control, "status", keys=wrong_admin, timeout_s=20)
    assert broker.ctl("status")["workers"] == 0
    assert rogue.silent_for(0.2)
    worker = FakeWorker(zctx, broker.backend, curve=(keys.broker.public, keys.worker))
    broker.wait_workers(1)
    client, _ = _client(zctx, broker, keys)
    client.request(1)
    worker.reply(worker.recv_job(), b"ok")
    assert client.reply().body == b"ok"
