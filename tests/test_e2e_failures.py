"""Failures of real processes: a worker killed -9, a broker restarted, CURVE with right and wrong keys."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from e2e_support import Cluster
from fluxon.client import AsyncConnectionHandler, ConnectionHandler
from fluxon.errors import ConnectionError, WorkerLost
from fluxon.keys import derive_keys, generate_client_keypair, generate_private_key, write_private_key
from support import fluxon_argv, wait_for


def test_killed_worker_loses_its_requests_or_redispatches_idempotent_ones(procs, tmp_path):
    cluster = Cluster(procs)
    cluster.start_broker()
    victim = cluster.start_worker("--concurrency", "2")

    async def main():
        async with AsyncConnectionHandler("127.0.0.1", cluster.port, timeout_s=20.0) as client:
            lost = asyncio.ensure_future(client.send_request("slow", 30.0))
            again = asyncio.ensure_future(client.send_request("idem_slow", (30.0, str(tmp_path / "m"))))
            # both are running on the victim (its only worker); now a second worker joins
            await asyncio.to_thread(procs.wait_log, victim, "started idem_slow")
            await asyncio.to_thread(procs.wait_log, victim, "started slow")
            survivor = await asyncio.to_thread(cluster.start_worker)
            victim.send_signal(signal.SIGKILL)
            results = await asyncio.gather(lost, again, return_exceptions=True)
            after = await client.send_request("pid")
            return survivor.pid, results, after

    survivor_pid, (lost, again), after = asyncio.run(main())
    assert isinstance(lost, WorkerLost)
    assert again == survivor_pid  # re-run elsewhere, because the route is idempotent
    assert after == survivor_pid  # the remaining worker keeps serving


def test_broker_restart_is_survived_by_running_workers_and_client(procs):
    cluster = Cluster(procs)
    cluster.start_broker()
    worker = cluster.start_worker()
    with ConnectionHandler("127.0.0.1", cluster.port, timeout_s=2.0) as client:
        assert client.send_request("pid") == worker.pid
        cluster.broker.send_signal(signal.SIGKILL)
        cluster.broker.wait(5)
        cluster.start_broker()
        # The client's socket reconnects by itself; the worker re-announces itself to the new broker.
        assert wait_for(lambda: _call_ignoring_errors(client, "pid"), 15,
                        message="service after the broker restart") == worker.pid
    assert worker.poll() is None
    assert "reconnect" in procs.log(worker)


def _call_ignoring_errors(client, route):
    try:
        return client.send_request(route, timeout=1.0)
    except Exception:
        return None


def test_curve_mode_end_to_end_and_wrong_server_key(procs, tmp_path):
    key_file = tmp_path / "deploy.key"
    private_key = generate_private_key()
    write_private_key(key_file, private_key)
    cluster = Cluster(procs, key_args=("--key-file", str(key_file)))
    cluster.start_broker()
    worker = cluster.start_worker()
    server_key = derive_keys(private_key).broker.public
    with ConnectionHandler("127.0.0.1", cluster.port, server_key=server_key, timeout_s=5.0) as client:
        assert client.send_request("echo", {"secure": True}) == {"secure": True}
        assert client.client_public_key and client.secure
    wrong = generate_client_keypair().public  # a valid key, but not the broker's
    with ConnectionHandler("127.0.0.1", cluster.port, server_key=wrong, timeout_s=0.5) as client:
        with pytest.raises(ConnectionError, match="server_key"):
            client.send_request("echo", 1)
    # A worker without the private key cannot register; the real one keeps serving.
    intruder = cluster.start_worker("--insecure", wait=False)
    with ConnectionHandler("127.0.0.1", cluster.port, server_key=server_key, timeout_s=5.0) as client:
        assert {client.send_request("pid") for _ in range(8)} == {worker.pid}
    assert intruder.poll() is None and "worker ready" not in procs.log(intruder)


def test_client_key_file_passes_an_allowlist_and_ephemeral_keys_do_not(procs, tmp_path):
    key_file = tmp_path / "deploy.key"
    private_key = generate_private_key()
    write_private_key(key_file, private_key)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    client_key = allowed / "alice.key"   # `fluxon client-key` writes alice.key and alice.key.pub
    subprocess.run(fluxon_argv("client-key", str(client_key)), check=True, capture_output=True, timeout=30)
    (allowed / "alice.key").rename(tmp_path / "alice.key")   # only the public half stays in the allowlist
    cluster = Cluster(procs, key_args=("--key-file", str(key_file)))
    cluster.start_broker("--allow-clients", str(allowed))
    cluster.start_worker()
    server_key = derive_keys(private_key).broker.public_text
    with ConnectionHandler("127.0.0.1", cluster.port, server_key=server_key,
                           client_key=tmp_path / "alice.key", timeout_s=5.0) as client:
        assert client.send_request("echo", "alice") == "alice"
        assert client.client_public_key in (allowed / "alice.key.pub").read_text()
    with ConnectionHandler("127.0.0.1", cluster.port, server_key=server_key, timeout_s=0.5) as client:
        with pytest.raises(ConnectionError, match="refused this client's key .* allowed"):
            client.send_request("echo", "stranger")
