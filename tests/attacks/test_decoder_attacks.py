"""Issue 10's decoder rows end to end: a real secure broker and worker, one attacker, one innocent client.

Each attack is sent by an anonymous client key as raw pickle bytes while an innocent
client (another anonymous key) sends requests in a loop, during the attack and for a
while after it. Every test checks that the attack gets its typed error within seconds,
that neither the broker nor the worker process dies (the same PIDs stay alive), that
every innocent request is answered within 2 s, and that the worker's RSS stays within
RSS_BOUND_KB of what it was before the attack. Heartbeats run at their default
(1 s, liveness 3), the setting the issue's attacks were tried against: a 62 MB message
takes a while to cross two CURVE hops on a loaded machine whatever the decoder does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from attacks import payloads
from fluxon import protocol
from fluxon.errors import BadRequest, FluxonError, ValidationError, decode_error
from harness import AttackCluster, assert_rss_within, make_attack_cluster, raw_client_socket
from support import process_group

APP = "tests.apps.hostile_app:router"
#: The worker may grow by this much over its pre-attack RSS (a 62 MB payload is held while refused).
RSS_BOUND_KB = 192 * 1024
ATTACK_DEADLINE_S = 10.0
#: The innocent client keeps going this long after the attack was answered.
AFTER_ATTACK_S = 1.0
_DEFAULT_HEARTBEAT = ("--heartbeat-interval-s", "1.0")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[AttackCluster]:
    """One secure broker and worker (``--concurrency 4``) for the module: each attack must leave it serving."""
    root = tmp_path_factory.mktemp("decoder-attacks")
    (root / "logs").mkdir()
    with process_group(root / "logs") as procs:
        yield make_attack_cluster(procs, root, *_DEFAULT_HEARTBEAT, app=APP,
                                  worker_args=(*_DEFAULT_HEARTBEAT, "--concurrency", "4"))


def _attack(cluster: AttackCluster, route: str, payload: bytes) -> tuple[FluxonError, float]:
    """Send ``payload`` as raw pickle bytes from a fresh anonymous key; the typed error and the time."""
    with raw_client_socket(cluster) as sock:
        started = time.monotonic()
        protocol.send_frames(sock, protocol.encode_client_request(1, route, payload, timeout_ms=30_000))
        if not sock.poll(int(ATTACK_DEADLINE_S * 1000)):
            raise AssertionError(f"no answer to the attack on {route!r} within {ATTACK_DEADLINE_S}s")
        reply = protocol.decode_client_reply(sock.recv_multipart())
    assert reply.status == protocol.STATUS_ERROR, "the attack was accepted"
    return decode_error(bytes(reply.body)), time.monotonic() - started


@pytest.mark.parametrize("route, build, error_type, limit", [
    ("echo", payloads.deep_tuple_key, BadRequest, "max_depth"),
    ("count", payloads.decimal_exponent_bomb, BadRequest, "max_decimal_exponent"),
    ("count", payloads.colliding_int_set, BadRequest, "max_hashed_keys"),
    ("echo", payloads.memo_expansion, BadRequest, "max_expansion"),
    ("async_echo", lambda: payloads.cheap_opcodes(62_000_000), BadRequest, "max_payload_bytes"),
    ("reject", lambda: payloads.deep_list(985), ValidationError, None),
    ("reject", lambda: payloads.deep_list(988), ValidationError, None),
], ids=["deep-tuple-key-sigsegv", "decimal-exponent", "hash-collision-set", "memo-expansion",
        "62MB-cheap-opcodes", "error-details-985-deep", "error-details-988-deep"])
def test_attack_is_refused_and_the_innocent_client_is_served_gh10(cluster, route, build, error_type,
                                                                  limit) -> None:
    payload = build()
    worker_pid = cluster.worker_pids()[0]
    baseline_kb = cluster.rss_kb(worker_pid)
    with cluster.innocent(payload=None) as innocent:
        error, took_s = _attack(cluster, route, payload)
        peak_kb, attacked_at = cluster.rss_kb(worker_pid), time.monotonic()
        while time.monotonic() - attacked_at < AFTER_ATTACK_S:
            peak_kb = max(peak_kb, cluster.rss_kb(worker_pid))
            time.sleep(0.05)
        innocent.wait_replies(5)
    assert type(error) is error_type, error.message
    assert took_s < ATTACK_DEADLINE_S
    if limit is not None:
        assert error.details["limit"] == limit and limit in error.message
    else:
        assert "omitted" in error.details  # the details were too deep to send; the request was answered
    cluster.assert_alive()
    assert cluster.worker_pids() == [worker_pid]
    innocent.assert_served(within_s=2.0)
    assert_rss_within(peak_kb, baseline_kb, RSS_BOUND_KB, "worker RSS")


def test_the_worker_logs_refusals_with_the_limit_and_client_key_gh10(cluster) -> None:
    _attack(cluster, "echo", payloads.deep_list(5000))
    worker = cluster.workers[0]
    cluster.procs.wait_log(worker, "max_depth")
    line = next(line for line in cluster.procs.log(worker).splitlines() if "max_depth" in line)
    assert "fluxon.security" in line and "client key" in line
