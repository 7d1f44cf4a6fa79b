"""The attack harness itself: it serves an innocent client, and its assertions do fail when they should."""

from __future__ import annotations

import os
import signal

import pytest

from harness import assert_rss_within, children
from support import wait_for


def test_harness_serves_the_innocent_client_and_catches_a_dead_worker(attack_cluster) -> None:
    cluster = attack_cluster(workers=1, worker_args=("--processes", "2"))
    assert cluster.rss_kb(cluster.broker) > 1000
    wait_for(lambda: len(children(cluster.workers[0].pid)) == 2, 15, message="two worker children")
    assert all(cluster.rss_kb(pid) > 1000 for pid in cluster.worker_pids())
    with cluster.innocent(payload=None) as innocent:
        innocent.wait_replies(5)
        cluster.assert_alive()
        innocent.assert_served(within_s=2.0)
        os.kill(cluster.worker_pids()[0], signal.SIGKILL)
        wait_for(lambda: cluster.worker_deaths() == 1, 10, message="the supervisor to see the death")
        with pytest.raises(AssertionError, match="1 worker process deaths"):
            cluster.assert_alive()
        cluster.assert_alive(allowed_worker_deaths=1)
    with pytest.raises(AssertionError, match="bound"):
        assert_rss_within(2048 * 1024, 1024 * 1024, 512 * 1024)
