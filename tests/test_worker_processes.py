"""`fluxon worker --processes N`: N supervised workers, a dead one restarted, all stopped together."""

from __future__ import annotations

import os
import re
import signal

from e2e_support import Cluster
from fluxon.client import ConnectionHandler
from support import pid_alive, wait_for


def started_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"started worker process \d+ \(pid (\d+)\)", log)]


def test_processes_are_supervised_and_stopped_together(procs):
    cluster = Cluster(procs)
    cluster.start_broker()
    parent = cluster.start_worker("--processes", "2", wait=False)
    wait_for(lambda: procs.log(parent).count("worker ready") == 2, 15, message="two workers ready")
    first, second = started_pids(procs.log(parent))
    with ConnectionHandler("127.0.0.1", cluster.port, timeout_s=5.0) as client:
        assert client.send_request("pid") in {first, second}
        procs_before = len(started_pids(procs.log(parent)))
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(started_pids(procs.log(parent))) > procs_before, 15, message="a restarted worker")
        replacement = started_pids(procs.log(parent))[-1]
        wait_for(lambda: procs.log(parent).count("worker ready") == 3, 15, message="the replacement ready")
        wait_for(lambda: client.send_request("pid") == replacement, 10, message="the replacement serving")
        assert {client.send_request("pid") for _ in range(10)} <= {second, replacement}
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(20) == 0
    assert not pid_alive(second) and not pid_alive(replacement)
