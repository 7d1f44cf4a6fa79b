"""End-to-end security: a real broker and workers started through the CLI, real clients, real CURVE.

One secure cluster (broker with --allow-clients and --trusted-clients, one worker) serves most
tests; each refusal test checks that the broker keeps serving a legitimate client afterwards.
"""

from __future__ import annotations

import fractions
import os
import selectors
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from fluxon import protocol
from fluxon.client import ConnectionHandler
from fluxon.errors import BadRequest, ConnectionError, Unauthorized
from fluxon.keys import (
    CurveKeyPair,
    DeploymentKeys,
    derive_keys,
    generate_client_keypair,
    generate_private_key,
    save_client_keypair,
    write_private_key,
)
from fluxon.broker.control import send_control_command
from fluxon.security import configure_curve_client
from support import REPO_ROOT, ProcessGroup, fluxon_argv, free_port, process_group, wait_for

APP = "tests.apps.security_app:router"
WHISPER_ROUTE = "whisper_route_7f3a9c"
HEARTBEAT = "0.1"
REFUSED_TIMEOUT_S = 0.5


class TcpRelay:
    """A raw TCP relay that records every byte it forwards, in both directions."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.captured = bytearray()
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                if sock is self.listener:
                    inbound, _ = self.listener.accept()
                    outbound = socket.create_connection(self.target)
                    peers[inbound], peers[outbound] = outbound, inbound
                    self._selector.register(inbound, selectors.EVENT_READ)
                    self._selector.register(outbound, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    with self._lock:
                        self.captured += data
                    peers[sock].sendall(data)
                else:
                    for end in (sock, peers.pop(sock)):
                        peers.pop(end, None)
                        self._selector.unregister(end)
                        end.close()
        for sock in list(peers):
            sock.close()

    def bytes_seen(self) -> bytes:
        with self._lock:
            return bytes(self.captured)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@dataclass
class SecureCluster:
    procs: ProcessGroup
    root: Path
    private_key: str
    keys: DeploymentKeys
    key_file: Path
    allow_dir: Path
    trusted_dir: Path
    port: int
    backend_port: int
    control_port: int
    listed: CurveKeyPair
    trusted: CurveKeyPair
    broker: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None

    def start_broker(self, *extra: str) -> subprocess.Popen:
        self.broker = self.procs.start(fluxon_argv(
            "broker", "--bind", f"tcp://127.0.0.1:{self.port}",
            "--backend", f"tcp://127.0.0.1:{self.backend_port}",
            "--control", f"tcp://127.0.0.1:{self.control_port}",
            "--heartbeat-interval-s", HEARTBEAT, "--key-file", str(self.key_file),
            "--allow-clients", str(self.allow_dir), "--trusted-clients", str(self.trusted_dir), *extra),
            cwd=REPO_ROOT, name="broker")
        self.procs.wait_log(self.broker, "broker ready")
        return self.broker

    def start_worker(self, *key_args: str, wait: bool = True) -> subprocess.Popen:
        proc = self.procs.start(fluxon_argv(
            "worker", APP, "--connect", f"tcp://127.0.0.1:{self.backend_port}",
            "--heartbeat-interval-s", HEARTBEAT, *(key_args or ("--key-file", str(self.key_file)))),
            cwd=REPO_ROOT, name="worker")
        if wait:
            self.procs.wait_log(proc, "worker ready")
        return proc

    def client(self, pair: CurveKeyPair | None = None, *, port: int | None = None,
               server_key: bytes | None = None, timeout_s: float = 10.0) -> ConnectionHandler:
        return ConnectionHandler("127.0.0.1", port or self.port, server_key=server_key or self.keys.broker.public,
                                 client_key=pair or self.listed, timeout_s=timeout_s)

    def assert_serving(self) -> None:
        with self.client() as client:
            assert client.send_request(WHISPER_ROUTE, "still here") == "still here"


def _make_cluster(procs: ProcessGroup, root: Path, *broker_args: str) -> SecureCluster:
    private_key = generate_private_key()
    key_file = root / "deploy.key"
    write_private_key(key_file, private_key)
    allow_dir, trusted_dir, keys_dir = root / "allowed", root / "trusted", root / "client-keys"
    for folder in (allow_dir, trusted_dir, keys_dir):
        folder.mkdir()
    listed, trusted = generate_client_keypair(), generate_client_keypair()
    for name, pair in (("listed", listed), ("trusted", trusted)):
        save_client_keypair(keys_dir / name, pair)
        shutil.copy(keys_dir / f"{name}.pub", allow_dir / f"{name}.pub")
    shutil.copy(keys_dir / "trusted.pub", trusted_dir / "trusted.pub")
    cluster = SecureCluster(procs, root, private_key, derive_keys(private_key), key_file, allow_dir,
                            trusted_dir, free_port(), free_port(), free_port(), listed, trusted)
    cluster.start_broker(*broker_args)
    cluster.worker = cluster.start_worker()
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("secure-cluster")
    (root / "logs").mkdir()
    with process_group(root / "logs") as procs:
        yield _make_cluster(procs, root)


def test_frontend_traffic_is_encrypted_on_the_wire(cluster, procs) -> None:
    payload = "known plaintext 5b1e2f payload"
    relay = TcpRelay(cluster.port)
    try:
        with cluster.client(port=relay.port) as client:
            assert client.send_request(WHISPER_ROUTE, {"p": payload}) == {"p": payload}
        secure_bytes = relay.bytes_seen()
    finally:
        relay.close()
    assert len(secure_bytes) > 200  # the handshake and both messages went through the relay
    for needle in (payload.encode(), WHISPER_ROUTE.encode(), b"known plaintext"):
        assert needle not in secure_bytes

    # The same capture of a plain-mode broker shows both: the relay really sees the traffic.
    port, backend = free_port(), free_port()
    procs.start(fluxon_argv("broker", "--insecure", "--bind", f"tcp://127.0.0.1:{port}", "--backend",
                            f"tcp://127.0.0.1:{backend}", "--control", "none"), cwd=REPO_ROOT, name="plain-broker")
    worker = procs.start(fluxon_argv("worker", APP, "--insecure", "--connect", f"tcp://127.0.0.1:{backend}"),
                         cwd=REPO_ROOT, name="plain-worker")
    procs.wait_log(worker, "worker ready")
    relay = TcpRelay(port)
    try:
        with ConnectionHandler("127.0.0.1", relay.port, timeout_s=10.0) as client:
            assert client.send_request(WHISPER_ROUTE, {"p": payload}) == {"p": payload}
        plain_bytes = relay.bytes_seen()
    finally:
        relay.close()
    assert payload.encode() in plain_bytes and WHISPER_ROUTE.encode() in plain_bytes


def test_wrong_server_key_is_a_connection_error_and_the_broker_keeps_serving(cluster) -> None:
    impostor = derive_keys(generate_private_key()).broker.public
    with cluster.client(server_key=impostor, timeout_s=REFUSED_TIMEOUT_S) as client:
        with pytest.raises(ConnectionError):
            client.send_request(WHISPER_ROUTE, "x")
    cluster.assert_serving()


def test_unlisted_client_is_refused_until_its_key_is_added(cluster) -> None:
    stranger = generate_client_keypair()
    with cluster.client(stranger, timeout_s=REFUSED_TIMEOUT_S) as client:
        with pytest.raises(ConnectionError):
            client.send_request(WHISPER_ROUTE, "x")
    cluster.assert_serving()
    assert f"key={stranger.public_text}" in cluster.procs.log(cluster.broker)
    path = cluster.allow_dir / "stranger.pub"
    path.write_text(stranger.public_text + "\n")
    try:
        def admitted() -> bool:
            with cluster.client(stranger, timeout_s=1.0) as client:
                return client.send_request(WHISPER_ROUTE, "in") == "in"
        wait_for(admitted, 10, message="the added key to be admitted without a restart")
    finally:
        path.unlink()


def _handshake(cluster: SecureCluster, port: int, pair: CurveKeyPair, frames: list) -> int:
    """Connect to ``port`` with ``pair``, send ``frames``; the handshake outcome (a monitor event)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        configure_curve_client(sock, cluster.keys.broker.public, pair)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(frames)
        assert monitor.poll(10_000), "no handshake outcome"
        event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            assert not sock.poll(200), "a refused peer got an answer"
        return event
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)


def test_worker_without_the_private_key_cannot_register(cluster, tmp_path) -> None:
    other_key = tmp_path / "other.key"
    write_private_key(other_key, generate_private_key())
    intruder = cluster.start_worker("--key-file", str(other_key), wait=False)
    cluster.procs.wait_log(intruder, "reconnecting")  # it tried, and heard nothing back
    # Knowing the broker's public key (which is not secret) is not enough either: ZAP refuses the key.
    ready = protocol.encode_worker_ready(1, {"pid": 1, "host": "x", "concurrency": 1, "app": "evil",
                                             "idempotent": []})
    assert _handshake(cluster, cluster.backend_port, generate_client_keypair(), ready) \
        == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert "domain=fluxon.backend" in cluster.procs.log(cluster.broker)
    with cluster.client() as client:
        assert {client.send_request("kind", 1) for _ in range(6)} == {"int"}
    assert "worker ready" not in cluster.procs.log(intruder)
    status = send_control_command(f"tcp://127.0.0.1:{cluster.control_port}", "workers", keys=cluster.keys)
    assert str(intruder.pid) not in str(status) and str(cluster.worker.pid) in str(status)
    os.kill(intruder.pid, 9)


def test_control_socket_admits_only_the_admin_key(cluster) -> None:
    status = protocol.encode_control_command(1, "status", {})
    for pair in (generate_client_keypair(), cluster.keys.worker, cluster.listed):
        assert _handshake(cluster, cluster.control_port, pair, status) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert _handshake(cluster, cluster.control_port, cluster.keys.admin, status) \
        == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert "domain=fluxon.control" in cluster.procs.log(cluster.broker)
    result = send_control_command(f"tcp://127.0.0.1:{cluster.control_port}", "status", keys=cluster.keys)
    assert isinstance(result, dict)
    with pytest.raises(ConnectionError, match="handshake .* failed"):   # says so, long before 20 s
        send_control_command(f"tcp://127.0.0.1:{cluster.control_port}", "status", timeout_s=20,
                             keys=derive_keys(generate_private_key()))
    cluster.assert_serving()


class _Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_code_running_payloads_are_bad_requests_and_never_run(cluster, tmp_path) -> None:
    marker = tmp_path / "pwned"
    attacks = [
        _Reduce(os.system, f"touch {marker}"),
        _Reduce(subprocess.call, ["touch", str(marker)]),
        _Reduce(open, str(marker), "w"),
        {"nested": [_Reduce(os.system, f"touch {marker}")]},
    ]
    with cluster.client() as client:
        for attack in attacks:
            with pytest.raises(BadRequest, match="forbidden global"):
                client.send_request(WHISPER_ROUTE, attack)
        with pytest.raises(BadRequest, match="fractions.Fraction"):
            client.send_request("kind", fractions.Fraction(1, 3))
    assert not marker.exists()
    # A trusted key may send any object (and so could run code: docs/security.md says so).
    with cluster.client(cluster.trusted) as client:
        assert client.send_request("kind", fractions.Fraction(1, 3)) == "Fraction"
    cluster.assert_serving()


def test_sessions_and_logins_survive_kill_9_of_the_broker(procs, tmp_path) -> None:
    sessions_db = tmp_path / "sessions.sqlite3"
    cluster = _make_cluster(procs, tmp_path, "--sessions-db", str(sessions_db))
    with cluster.client() as client:
        with pytest.raises(Unauthorized):
            client.send_request("members_only")
        anonymous_sid = client.send_request("login", {"uid": 42, "data": {"cart": ["apple"]}})
        before = client.send_request("whoami")
        assert before["uid"] == 42 and before["data"] == {"cart": ["apple"]}
        assert before["sid"] != anonymous_sid  # login rotated the session id
        os.kill(cluster.broker.pid, 9)
        cluster.broker.wait(5)
        cluster.start_broker("--sessions-db", str(sessions_db))
        wait_for(lambda: _call(client, "whoami"), 15, message="the restarted broker to serve again")
        assert client.send_request("whoami") == before  # same token, same session, same login
        assert client.send_request("members_only") == "hello 42"
    # A new client process with the same key and no token gets the session back.
    with cluster.client() as again:
        assert again.send_request("whoami") == before
    # Another key does not.
    with cluster.client(cluster.trusted) as other:
        assert other.send_request("whoami")["uid"] is None


def _call(client: ConnectionHandler, route: str):
    try:
        return client.send_request(route, timeout=1.0)
    except Exception:
        return None


def test_private_key_never_appears_in_logs_or_argv(cluster, procs) -> None:
    cluster.assert_serving()
    for proc in (cluster.broker, cluster.worker):
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert cluster.private_key not in cmdline and cluster.private_key not in cluster.procs.log(proc)
        for pair in (cluster.keys.broker, cluster.keys.worker, cluster.keys.admin):
            assert pair.secret.decode() not in cluster.procs.log(proc)
    bad_key = "this-is-not-a-key-but-secret"
    broker = procs.start(fluxon_argv("broker", "--bind", f"tcp://127.0.0.1:{free_port()}", "--control", "none"),
                         env={"FLUXON_PRIVATE_KEY": bad_key}, cwd=REPO_ROOT, name="bad-key-broker")
    assert broker.wait(30) != 0
    output = procs.log(broker)
    assert "malformed" in output and bad_key not in output
