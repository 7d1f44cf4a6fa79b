"""Issue 10, the broker's rows: one anonymous attacker against a secure broker + worker (real processes).

Each test runs an innocent client during and after the attack and checks that the attack gets a
typed error (or nothing) within seconds, that no broker or worker process dies, that every
innocent reply arrives within 2 s, and that the broker's RSS stays within a stated bound.
"""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest
import zmq

from fluxon import protocol as p
from fluxon.errors import Overloaded, WorkerLost, decode_error
from fluxon.keys import generate_client_keypair
from fluxon.serialization import dumps
from harness import assert_rss_within, raw_client_socket
from support import wait_for

MIB = 1024

pytestmark = pytest.mark.attacks


def _deep_list(depth: int) -> bytes:
    """The pickle of a list nested ``depth`` deep, written by hand (pickling one recurses too deep)."""
    return b"\x80\x05" + b"]" * depth + b"a" * (depth - 1) + b"."


def _raw_reply(sock: zmq.Socket, timeout_s: float = 10.0) -> p.ClientReply:
    assert sock.poll(timeout_s * 1000), f"no reply within {timeout_s} s"
    return p.decode_client_reply(sock.recv_multipart())


def test_a_poison_request_is_redispatched_once_then_given_up(attack_cluster) -> None:
    cluster = attack_cluster(workers=1, worker_args=("--processes", "2"))
    wait_for(lambda: len(cluster.worker_pids()) == 2 and cluster.status()["workers"] == 2, 15,
             message="two worker processes registered")
    attacker = generate_client_keypair()
    with cluster.innocent(payload=None) as innocent:
        started = time.monotonic()
        with cluster.client(attacker, timeout_s=20) as client:
            with pytest.raises(WorkerLost) as lost:
                client.send_request("crash", None)
        assert time.monotonic() - started < 10
        assert lost.value.details.get("given_up") is True and "given up" in lost.value.message
        wait_for(lambda: cluster.status()["workers"] == 2, 15, message="both processes back")
        innocent.wait_replies(10)
    # The first run and one re-dispatch: two deaths, never a crash loop.
    wait_for(lambda: cluster.worker_deaths() >= 2, 5, message="the supervisor to log both deaths")
    time.sleep(0.5)  # a third death would show up by now (restart delay 0.5 s)
    cluster.assert_alive(allowed_worker_deaths=2)
    innocent.assert_served(within_s=2.0)
    assert cluster.status()["errors"]["refused_max_redispatch"] == 1
    log = cluster.broker_log()
    assert "limit max_redispatch" in log and attacker.public_text in log and "'crash'" in log


def test_deep_session_changes_are_refused_and_the_broker_goes_on(attack_cluster) -> None:
    cluster = attack_cluster()
    with cluster.innocent() as innocent:
        baseline = cluster.rss_kb(cluster.broker)
        with raw_client_socket(cluster) as sock:
            sock.send_multipart(p.encode_client_request(1, "store", _deep_list(980)))
            reply = _raw_reply(sock)
        assert reply.status == p.STATUS_ERROR
        assert "deeper than" in decode_error(bytes(reply.body)).message
        innocent.wait_replies(5)
    cluster.assert_alive()
    innocent.assert_served(within_s=2.0)
    assert_rss_within(cluster.rss_kb(cluster.broker), baseline, 32 * MIB, "broker RSS")
    assert cluster.status()["errors"]["refused_max_json_depth"] == 1


def test_a_deep_error_detail_is_forwarded_without_parsing_it(attack_cluster) -> None:
    cluster = attack_cluster()
    with cluster.innocent() as innocent:
        with raw_client_socket(cluster) as sock:
            sock.send_multipart(p.encode_client_request(1, "reject", _deep_list(985)))
            reply = _raw_reply(sock)
        assert reply.status == p.STATUS_ERROR
        innocent.wait_replies(5)
    cluster.assert_alive()
    innocent.assert_served(within_s=2.0)
    # The worker sends an error whose details are too deep without them (worker/execution.py), so
    # the broker's bounded parse reads its code; a deeper body would count as unparsed_error.
    assert "omitted" in decode_error(bytes(reply.body)).details
    assert cluster.status()["errors"]["validation_error"] == 1


def test_a_message_of_many_empty_frames_is_drained_and_refused(attack_cluster) -> None:
    cluster = attack_cluster("--max-frames", "8")
    frames = 30_000  # scaled down from 5M: the cap and the bounded drain show at any size past --max-frames
    with cluster.innocent() as innocent:
        baseline = cluster.rss_kb(cluster.broker)
        with raw_client_socket(cluster) as sock:
            sock.send_multipart(p.encode_client_request(1, "echo", dumps("x")) + [b""] * frames)
            sock.send_multipart(p.encode_client_request(2, "echo", dumps("after")))
            reply = _raw_reply(sock)  # the long message got nothing; the next one is served
        assert reply.request_id == 2 and reply.status == p.STATUS_OK
        innocent.wait_replies(5)
    cluster.assert_alive()
    innocent.assert_served(within_s=2.0)
    assert_rss_within(cluster.rss_kb(cluster.broker), baseline, 128 * MIB, "broker RSS")
    assert cluster.status()["errors"]["refused_max_frames"] == 1
    assert "limit max_frames" in cluster.broker_log()


def test_logout_in_a_loop_is_rate_limited_per_key(attack_cluster) -> None:
    cluster = attack_cluster("--rotations-per-minute", "20")
    refused = 0
    with cluster.innocent() as innocent:
        with cluster.client(timeout_s=5) as attacker:
            for _ in range(200):
                try:
                    attacker.send_request("logout")
                except Overloaded as exc:
                    assert exc.details["limit"] == "rotations_per_minute"
                    refused += 1
        innocent.wait_replies(5)
    cluster.assert_alive()
    innocent.assert_served(within_s=2.0)
    assert refused >= 170  # 20 (the bucket) and a few refilled meanwhile
    assert cluster.status()["errors"]["refused_rotations_per_minute"] == refused


def test_fresh_keys_at_the_session_cap_evict_the_least_recently_used_first(attack_cluster) -> None:
    cluster = attack_cluster("--max-sessions", "40", "--session-reserve", "0.25")
    with cluster.client(timeout_s=5) as legit:
        assert legit.send_request("store", {"cart": 3}) == "stored"
        for _ in range(60):  # fresh anonymous keys, one request each, while the legitimate one stays active
            with cluster.client(timeout_s=5) as stranger:
                stranger.send_request("echo", 1)
            assert legit.send_request("whoami")["data"] == {"value": {"cart": 3}}
        assert cluster.status()["sessions"] <= 40
        logged_in = 0
        for uid in range(40):  # logins past 75% of the cap are refused: the rest stays for new clients
            with cluster.client(timeout_s=5) as member:
                try:
                    member.send_request("login", uid)
                    logged_in += 1
                except Overloaded as exc:
                    assert exc.details["limit"] == "session_reserve"
            assert legit.send_request("whoami")["data"] == {"value": {"cart": 3}}
        assert logged_in == 30
        with cluster.client(timeout_s=5) as newcomer:
            assert newcomer.send_request("echo", "welcome") == "welcome"
        assert legit.send_request("whoami")["data"] == {"value": {"cart": 3}}
    cluster.assert_alive()
    assert cluster.status()["errors"]["refused_session_reserve"] == 10


def test_big_payloads_behind_a_busy_worker_are_bounded_by_bytes_and_per_key(attack_cluster) -> None:
    cluster = attack_cluster("--max-queue-bytes", str(24 * 1024 * 1024), "--queue-share", "0.5",
                             worker_args=("--concurrency", "2"))
    payload = dumps(b"x" * (4 * 1024 * 1024))
    with cluster.innocent() as innocent:
        baseline = cluster.rss_kb(cluster.broker)
        with raw_client_socket(cluster) as sock:
            sock.send_multipart(p.encode_client_request(1, "slow", dumps(3.0)))
            sock.send_multipart(p.encode_client_request(2, "slow", dumps(3.0)))
            time.sleep(0.3)  # both slots of the worker busy: the rest queues
            for request_id in range(3, 23):
                sock.send_multipart(p.encode_client_request(request_id, "echo", payload))
            refusals = []
            while len(refusals) < 17:
                reply = _raw_reply(sock)
                if reply.status == p.STATUS_ERROR:
                    error = decode_error(bytes(reply.body))
                    assert isinstance(error, Overloaded)
                    refusals.append(error.details["limit"])
            assert set(refusals) == {"queue_share"}  # 3 x 4 MiB held: half of 24 MiB is this key's share
            assert_rss_within(cluster.rss_kb(cluster.broker), baseline, 3 * 24 * MIB, "broker RSS")
        innocent.wait_replies(3, timeout_s=10)
    cluster.assert_alive()


def test_idle_connections_do_not_hold_the_broker(attack_cluster, tmp_path) -> None:
    cluster = attack_cluster("--handshake-timeout-ms", "500")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with open(f"/proc/{cluster.broker.pid}/limits") as proc_limits:
        line = next(text for text in proc_limits if text.startswith("Max open files"))
    assert int(line.split()[3]) == hard  # the broker raised its soft limit to the hard limit
    with cluster.innocent() as innocent:
        idle = [socket.create_connection(("127.0.0.1", cluster.port)) for _ in range(50)]
        try:
            def closed(sock: socket.socket) -> bool:
                sock.settimeout(0.05)
                try:
                    return sock.recv(64) == b"" or closed(sock)
                except TimeoutError:
                    return False
                except OSError:
                    return True
            wait_for(lambda: all(closed(s) for s in idle), 10, message="idle handshakes to be closed")
        finally:
            for sock in idle:
                sock.close()
        innocent.wait_replies(5)
    cluster.assert_alive()
    innocent.assert_served(within_s=2.0)


def test_the_session_file_is_private_whatever_the_umask(attack_cluster, tmp_path) -> None:
    old = os.umask(0)  # the most permissive umask: the modes come from the broker, not from it
    try:
        cluster = attack_cluster("--sessions-db", str(tmp_path / "sessions.sqlite3"))
    finally:
        os.umask(old)
    with cluster.client() as client:
        assert client.send_request("store", "secret") == "stored"
    files = [f for f in tmp_path.iterdir() if f.name.startswith("sessions.sqlite3")]
    assert {f.name for f in files} >= {"sessions.sqlite3", "sessions.sqlite3-wal"}
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path
