"""The broker's Python API: exports, config validation, an in-process broker on port 0 stopped from another thread."""

from __future__ import annotations

import threading

import pytest

import fluxon.broker
from fluxon.broker import Broker, BrokerConfig, send_control_command
from fluxon.broker.config import is_loopback_endpoint
from fluxon.errors import ConfigurationError, Timeout, Unavailable
from test_broker_support import FakeClient, FakeWorker, zctx  # noqa: F401


def test_exports_match_all() -> None:
    assert sorted(fluxon.broker.__all__) == ["Broker", "BrokerConfig", "BrokerLimits", "send_control_command"]
    for name in fluxon.broker.__all__:
        assert getattr(fluxon.broker, name).__module__.startswith("fluxon.broker")


def test_config_defaults_follow_the_contract() -> None:
    config = BrokerConfig()
    assert (config.frontend, config.backend, config.control) == (
        "tcp://127.0.0.1:8080", "tcp://127.0.0.1:8081", "tcp://127.0.0.1:8082")
    assert (config.keys, config.heartbeat_interval_s, config.heartbeat_liveness, config.max_queue,
            config.max_message_bytes, config.debug, config.insecure_bind_anywhere) == (
        None, 1.0, 3, 10_000, 64 * 1024 * 1024, False, False)


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:80", True), ("tcp://127.9.9.9:*", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:80", True), ("ipc:///tmp/x", True), ("inproc://x", True),
    ("tcp://0.0.0.0:80", False), ("tcp://*:80", False), ("tcp://10.0.0.1:80", False),
    ("tcp://eth0:80", False), ("udp://127.0.0.1:1", False),
])
def test_loopback_endpoints(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback


@pytest.mark.parametrize("changes, message", [
    ({"frontend": "tcp://*:8080"}, "binds only loopback"),
    ({"heartbeat_interval_s": 0}, "heartbeat"),
    ({"max_queue": -1}, "max_queue"),
    ({"allow_clients_dir": "/tmp"}, "need secure mode"),
])
def test_config_refuses_what_cannot_work(changes: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Broker(BrokerConfig(**changes))


def test_insecure_bind_anywhere_is_explicit() -> None:
    BrokerConfig(frontend="tcp://*:8080", insecure_bind_anywhere=True).validate()


def test_in_process_broker_on_port_0_stops_from_another_thread(zctx) -> None:
    broker = Broker(BrokerConfig(frontend="tcp://127.0.0.1:*", backend="tcp://127.0.0.1:*",
                                 control="tcp://127.0.0.1:*", stop_timeout_s=5))
    broker.start()
    assert all(ep and not ep.endswith(":*") for ep in
               (broker.frontend_endpoint, broker.backend_endpoint, broker.control_endpoint))
    thread = threading.Thread(target=broker.run)
    thread.start()
    try:
        assert broker.ready.wait(5)
        worker = FakeWorker(zctx, broker.backend_endpoint)
        client = FakeClient(zctx, broker.frontend_endpoint)
        client.request(1)
        job = worker.recv_job()
        assert send_control_command(broker.control_endpoint, "status")["in_flight"] == 1
        broker.stop()                              # graceful: the in-flight job may still finish
        client.request(2)
        assert isinstance(client.error(), Unavailable)
        worker.reply(job, b"done")
        assert client.reply().body == b"done"
        thread.join(5)
        assert not thread.is_alive()
        with pytest.raises(Timeout):
            send_control_command(broker.control_endpoint, "status", timeout_s=0.3)
    finally:
        broker.stop()
        thread.join(5)
